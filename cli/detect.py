"""`shipseg detect`: a scene -> ship polygons (GeoJSON by default), with progress for people or for the QGIS plugin."""

import contextlib
import json
import sys
import warnings
from pathlib import Path

import click
from tqdm import tqdm

from cli.group import is_ours
from samgeo_ship.atomic import atomic_files
from samgeo_ship.errors import NoValidPixels, ShipsegError
from samgeo_ship.inference.detect import DEFAULT_MODEL, detect_scene, open_scene
from samgeo_ship.models.bundle import read_card
from samgeo_ship.outputs import check_outputs
from samgeo_ship.raster import parse_bands
from samgeo_ship.vector.preview import SHIP_COLOUR, render_preview
from samgeo_ship.vector.writers import check_output, write_ships


@contextlib.contextmanager
def one_line_warnings():
    """Show shipseg's own warnings (e.g. resolution, undeclared fill) as one 'Warning: ...' line on stderr; those of
    the libraries below (GDAL's "no geotransform", numpy's "invalid value") are noise around a one-line error.

    Yields ``release()``: warnings are held until it is called (at the first progress report) or the block ends
    without error, so input refused before any work is done prints its error line alone. Each message is shown
    once (the scene statistics behind a warning may be computed again for the preview)."""
    held, shown = [], set()

    def show(message, category, *args, **kwargs):
        if is_ours(category) and str(message) not in shown:
            shown.add(str(message))
            if held is None:
                click.echo(f"Warning: {message}", err=True)
            else:
                held.append(message)

    def release():
        nonlocal held
        for message in held or ():
            click.echo(f"Warning: {message}", err=True)
        held = None

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        yield release
        release()


@contextlib.contextmanager
def progress_reporter(mode: str, on_start=lambda: None):
    """Yield ``update(tiles_done, tiles_total, ships)``: a tqdm bar (tiles, ships, time left) on stderr, one JSON
    object per line on stdout, or nothing. ``update.plan(info)`` reports the plan measured on the first batch
    (tiles in all, seconds per tile, estimated time; see detect_scene's ``on_plan``) as a ``plan`` event or a
    line above the bar, so a scene that would take days says so before it does. ``on_start()`` is called before
    the first report (one_line_warnings' release)."""
    if mode == "json":
        def update(done, total, ships):
            on_start()
            print(json.dumps({"event": "progress", "tiles_done": done, "tiles_total": total, "ships": ships}),
                  flush=True)
        update.plan = lambda info: print(json.dumps({"event": "plan", **info}), flush=True)
        yield update
        return
    if mode == "none":
        update = lambda done, total, ships: on_start()
        update.plan = lambda info: None
        yield update
        return
    bar = None

    def update(done, total, ships):
        nonlocal bar
        if bar is None:  # made at the first report, so a scene refused at once prints only its error
            on_start()
            bar = tqdm(unit=" tiles", dynamic_ncols=True, leave=False, file=sys.stderr)
        bar.total = total
        bar.n = done
        bar.set_postfix(ships=ships, refresh=False)
        bar.refresh()

    update.plan = lambda info: tqdm.write(f"{info['tiles_total']} tiles, about {_duration(info['eta_s'])} at "
                                         f"{info['seconds_per_tile']:.3g} s per tile", file=sys.stderr)
    try:
        yield update
    finally:
        if bar is not None:
            bar.close()


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:,.0f} h"


def write_preview(scene, model, bands, ships, preview: Path, nodata=None) -> None:
    """The quick-look PNG; a scene with no valid pixels has nothing to show (detect already warned)."""
    try:
        opened = open_scene(scene, read_card(model), parse_bands(bands), nodata)
    except NoValidPixels:
        return
    with opened:
        render_preview(opened, [(ships.geometry.values, SHIP_COLOUR)], preview)


def output_path(scene: Path, output) -> Path:
    """-o as given; a folder gets ``<scene stem>.ships.geojson`` inside; none: that name in the current folder."""
    name = f"{scene.stem}.ships.geojson"
    if output is None:
        return Path.cwd() / name
    output = Path(output)
    return output / name if output.is_dir() else output


@click.command("detect")
@click.argument("scene", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-m", "--model", default=str(DEFAULT_MODEL), show_default="the bundled default model",
              type=click.Path(dir_okay=False), help="Model bundle (.safetensors) made by `shipseg train`.")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Output .geojson (WGS84), .gpkg, .fgb or .parquet (scene CRS), or a folder "
                   "[default: ./<scene>.ships.geojson].")
@click.option("--bands", default=None, help="Bands by description or 1-based index [default: the model's bands].")
@click.option("--boxes", type=click.Path(dir_okay=False), help="Vector file of boxes: one ship per box (any CRS).")
@click.option("--points", type=click.Path(dir_okay=False), help="Vector file of points: one ship per point.")
@click.option("--tile-size", type=click.IntRange(min=8), default=None,
              help="Tile size in pixels of the model's pixel size [default: the model's]; other sizes change the "
                   "scale the model sees ships at.")
@click.option("--overlap", type=click.IntRange(min=0), default=None,
              help="Tile overlap (halo) in pixels of the model's pixel size [default: the model's].")
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(min=1), help="Tiles encoded at once.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--preview", type=click.Path(dir_okay=False, path_type=Path), help="Also write a quick-look PNG.")
@click.option("--progress", "progress_mode", type=click.Choice(["bar", "json", "none"]), default="bar",
              show_default=True, help="json: one JSON object per line on stdout (for the QGIS plugin).")
@click.option("--nodata", type=float, default=None, metavar="VALUE",
              help="Pixels of this value in every band are fill, not image (for a scene that declares no nodata).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary line.")
def detect(scene, model, output, bands, boxes, points, tile_size, overlap, batch_size, device, preview, progress_mode,
           nodata, quiet):
    """Find the ships in SCENE and write them as polygons with score, area, length, beam, heading and position.

    Example: shipseg detect scene.tif -m ships.safetensors -o ships.gpkg --preview quicklook.png
    """
    if quiet and progress_mode == "bar":
        progress_mode = "none"
    out = output_path(scene, output)
    try:
        check_output(out, inputs=[scene, model, boxes, points])
        if preview is not None and preview.suffix.lower() != ".png":
            raise ShipsegError(f"{preview}: the preview is written as PNG; name it *.png")
        check_outputs([out, preview], inputs=[scene, model, boxes, points])
        with one_line_warnings() as release, progress_reporter(progress_mode, release) as update:
            ships = detect_scene(scene, model, bands=parse_bands(bands), boxes=boxes, points=points,
                                 batch_size=batch_size, device=device, progress=update, tile_size=tile_size,
                                 overlap=overlap, nodata=nodata, on_plan=update.plan)
        with atomic_files(out, preview) as (out_tmp, preview_tmp):  # both outputs or neither
            write_ships(ships, out_tmp)
            if preview is not None:
                write_preview(scene, model, bands, ships, preview_tmp, nodata)
    except ShipsegError as exc:
        if progress_mode == "json":  # the plugin reads stdout only; the group still prints the line on stderr
            print(json.dumps({"event": "error", "message": str(exc)}), flush=True)
        raise
    if progress_mode == "json":
        print(json.dumps({"event": "done", "output": str(out), "ships": len(ships)}), flush=True)
    elif not quiet:
        click.echo(f"{out}: {len(ships)} ships")
