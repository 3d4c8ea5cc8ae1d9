"""`shipseg calibrate`: choose a model's detection score threshold on labelled validation scenes."""

import click

from samgeo_ship import calibrate as run_calibration
from samgeo_ship.errors import fail
from samgeo_ship.models.zoo import model_path
from samgeo_ship.outputs import check_outputs

from .group import one_line_warnings
from .progress import progress, tile_progress


@click.command("calibrate")
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("scene", type=click.Path(dir_okay=False))
@click.argument("truth", type=click.Path(dir_okay=False))
@click.argument("more", nargs=-1, metavar="[SCENE TRUTH]...", type=click.Path(dir_okay=False))
@click.option("--bands", default=None, help="Bands by description or 1-based index [default: the model's bands].")
@click.option("--contrast-band", default=None, metavar="BAND",
              help="Also choose the least contrast of a ship against the water around it in this band (near "
                   "infrared: B08 for Sentinel-2); detection then drops ships below it. Every scene needs the band.")
@click.option("--dry-run", is_flag=True, help="Print the sweep; leave MODEL unchanged.")
@click.option("--batch-size", default=None, type=click.IntRange(min=1), show_default="chosen from the free memory",
              help="Tiles encoded at once.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def calibrate(model, scene, truth, more, bands, contrast_band, dry_run, batch_size, device, quiet):
    """Set MODEL's detection score threshold to the one with the best F1 at IoU 0.5 on SCENE against TRUTH (with
    more SCENE TRUTH pairs: the F1 of all their ships pooled).

    Training picks a threshold from the prompter's ship centres on validation tiles; this one is measured on what
    detect returns (masks, seams, merging). Use labelled scenes the model did not train on, and not the scenes
    you will report scores on. With --contrast-band B08 the minimum contrast of a ship against the water around it
    in near infrared is chosen with the threshold (0: no test), the classical detectors' clutter test that drops
    false alarms on hazy water. Example: shipseg calibrate ships.safetensors val_a.tif val_a.geojson val_b.tif
    val_b.geojson
    """
    if len(more) % 2:
        raise fail(more[-1], "scenes and truths come in pairs (SCENE TRUTH): no truth file follows this scene")
    if not dry_run:  # MODEL is rewritten in place: refused now if it cannot be, not after the sweep
        check_outputs([model_path(model)])
    with one_line_warnings() as release, progress("none" if quiet else "bar", "tiles", release) as reporter:
        result = run_calibration(model, scene, truth, bands=bands, batch_size=batch_size, device=device,
                                 progress=tile_progress(reporter), write=not dry_run,
                                 more=list(zip(more[::2], more[1::2])), contrast_band=contrast_band)
    click.echo(result.table())
    if result.found_none:
        click.echo(f"{model}: no ship of the scene{'s' if more else ''} found at any threshold, so none is chosen; "
                   f"the score threshold stays at {result.previous:g} (model unchanged)")
        return
    verb = "would change" if dry_run else "changed"
    click.echo(f"{model}: score threshold {verb} from {result.previous:g} to {result.threshold:g} "
               f"(F1 {result.best.f1:.3f}, precision {result.best.precision:.3f}, recall {result.best.recall:.3f})"
               + (f"; least {contrast_band} contrast {result.contrast['min']:g}" if contrast_band else ""))
