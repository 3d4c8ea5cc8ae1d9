"""One-shot personalisation (PerSAM-F): teach a frozen ShipSam to find ships alike to one or a few reference ships.

propose (similarity maps, peaks, suppression), proposer (OneShotProposer: the proposal strategy of bundles of kind
"oneshot", registered with samgeo_ship.models.bundle on import), persam (target features, mixing-weight fit,
similarity threshold), reference (reference tiles read as detection reads them), personalise (the whole run, to a
bundle)."""
