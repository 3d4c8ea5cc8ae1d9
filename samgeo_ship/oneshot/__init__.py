"""One-shot personalisation (PerSAM-F): teach a frozen ShipSam to find ships alike to one or a few reference ships.

propose (similarity maps, peaks, suppression), model (OneShotSam: the proposer detection plugs in through the bundle
card's ``kind``), persam (target features, mixing-weight fit, similarity threshold), reference (reference tiles read
as detection reads them), personalise (the whole run, to a bundle)."""
