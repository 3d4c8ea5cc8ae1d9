"""`shipseg batch`: detect ships in every scene of an archive, resumably, locally or on a Dask cluster."""

import sys

import click

from samgeo_ship.batch import MANIFEST, MERGED, run_batch
from samgeo_ship.vector.writers import FORMATS

from .progress import MODES, progress


@click.command("batch")
@click.argument("source", metavar="INPUT", type=click.Path())
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False),
              help="Folder for the per-scene outputs, ships.parquet and manifest.json.")
@click.option("-m", "--model", default=None, show_default="the bundled default model", type=click.Path(dir_okay=False),
              help="Model bundle (.safetensors).")
@click.option("--glob", "pattern", default="*.tif", show_default=True, help="Files to take from an INPUT folder "
              "(searched recursively).")
@click.option("--asset", default=None, help="STAC asset key to read (default: the asset with role 'data').")
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="geojson",
              show_default=True, help="Per-scene output format.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Local worker processes (1: in this process).")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT", help="Run on this Dask scheduler instead "
              "(OUTDIR, INPUT and the model must be readable on the workers).")
@click.option("--retries", default=2, show_default=True, type=click.IntRange(min=0),
              help="Extra attempts for a scene whose worker died.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--progress", "progress_mode", type=click.Choice(MODES), default="bar",
              show_default=True, help="json: one JSON object per line on stdout, per scene and at the end.")
@click.option("--all-tiles", is_flag=True, help="Encode every tile, also those far from any water (see detect).")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@click.option("--detector", default=None, hidden=True, help="module:function used instead of shipseg's detection.")
def batch(source, outdir, model, pattern, asset, fmt, workers, scheduler, retries, device, progress_mode, all_tiles,
          quiet, detector):
    """Find ships in every scene of INPUT: a folder, a text file of paths (one per line) or a STAC Item /
    ItemCollection / Catalog as local JSON. Writes OUTDIR/<scene id>.<format>, the merged OUTDIR/ships.parquet and
    OUTDIR/manifest.json; rerunning the same command does only what is missing or failed.

    Exit code 0 when every scene succeeded, 1 when any failed, 2 for bad INPUT, OUTDIR or model.

    Example: shipseg batch archive/ -o ships/ --workers 4
    """
    mode = "none" if quiet and progress_mode == "bar" else progress_mode
    with progress(mode, "scenes") as reporter:
        def report(state):
            reporter.show(state["done"] + state["failed"] + state["skipped"], state["total"], failed=state["failed"],
                          left=state["left"], ships=state["ships"])
            reporter.emit("progress", **state)
        try:
            summary = run_batch(source, outdir, model=model, fmt=fmt, glob=pattern, asset=asset, workers=workers,
                                scheduler=scheduler, retries=retries, device=device, detector=detector,
                                progress=None if quiet else report, all_tiles=all_tiles)
        except KeyboardInterrupt:
            click.echo(f"Interrupted: finished scenes are recorded in {outdir}/{MANIFEST}; run the same command "
                       "again to resume.", err=True)
            sys.exit(130)
        reporter.emit("done", done=summary.done, already_done=summary.already_done, failed=summary.failed,
                      skipped=summary.skipped, ships=summary.ships, merged=str(summary.outdir / MERGED),
                      seconds=round(summary.seconds, 2))
    if mode == "json":
        sys.exit(1 if summary.failed else 0)
    rows = [("done", len(summary.done) + len(summary.already_done),
             f"{len(summary.already_done)} from earlier runs" if summary.already_done else ""),
            ("failed", len(summary.failed), ""), ("skipped", len(summary.skipped), "")]
    click.echo(f"{'state':<8} {'scenes':>7}")
    for state, n, note in rows:
        click.echo(f"{state:<8} {n:>7}  {note}".rstrip())
    for title, reasons in (("failed", summary.failed), ("skipped", summary.skipped)):
        for scene_id, reason in reasons.items():
            click.echo(f"  {title} {scene_id}: {reason}")
    click.echo(f"ships: {summary.ships} ({summary.ships_new} new) in {summary.outdir / MERGED}; "
               f"time {summary.seconds:.1f} s")
    if summary.failed:
        sys.exit(1)
