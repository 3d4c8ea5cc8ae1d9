"""`shipseg detect`: a scene -> ship polygons (GeoJSON by default), with progress for people or for the QGIS plugin."""

from pathlib import Path

import click

from samgeo_ship import ShipDetector, ShipsegError
from samgeo_ship.atomic import atomic_files
from samgeo_ship.device import PRECISIONS
from samgeo_ship.errors import NoValidPixels
from samgeo_ship.outputs import check_outputs
from samgeo_ship.vector.preview import SHIP_COLOUR, render_preview
from samgeo_ship.vector.writers import check_output, write_ships

from .group import one_line_warnings
from .progress import MODES, progress, tile_progress


def detect_with_preview(detector: ShipDetector, scene: Path, preview: Path | None, **run):
    """Detect, and draw the quick-look PNG from the same open scene (opened and normalised once). A scene with no
    valid pixels has nothing to show (detect warns), so it gets no preview."""
    if preview is None:
        return detector.detect(scene, **run)
    try:
        opened = detector.open(scene)
    except NoValidPixels:
        return detector.detect(scene, **run)
    with opened:
        ships = detector.detect(opened, **run)
        render_preview(opened, [(ships.geometry.values, SHIP_COLOUR)], preview)
    return ships


def output_path(scene: Path, output) -> Path:
    """-o as given; a folder gets ``<scene stem>.ships.geojson`` inside; none: that name in the current folder."""
    name = f"{scene.stem}.ships.geojson"
    if output is None:
        return Path.cwd() / name
    output = Path(output)
    return output / name if output.is_dir() else output


@click.command("detect")
@click.argument("scene", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-m", "--model", default=None, show_default="the bundled model that fits the scene",
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
@click.option("--batch-size", default=None, type=click.IntRange(min=1), show_default="chosen from the free memory",
              help="Tiles encoded at once.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
              help="The image encoder's arithmetic; auto: bf16 on a GPU, and on a CPU with bf16 in hardware for "
                   "vit_b-sized models and larger; else fp32. int8: CPU only.")
@click.option("--preview", type=click.Path(dir_okay=False, path_type=Path), help="Also write a quick-look PNG.")
@click.option("--progress", "progress_mode", type=click.Choice(MODES), default="bar",
              show_default=True, help="json: one JSON object per line on stdout (for the QGIS plugin).")
@click.option("--nodata", type=float, default=None, metavar="VALUE",
              help="Pixels of this value in every band are fill, not image (for a scene that declares no nodata).")
@click.option("--all-tiles", is_flag=True, help="Encode every tile, also those far from any water (by default they are "
              "skipped in scenes with green and near or short-wave infrared bands).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary line.")
def detect(scene, model, output, bands, boxes, points, tile_size, overlap, batch_size, device, precision, preview,
           progress_mode, nodata, all_tiles, quiet):
    """Find the ships in SCENE and write them as polygons with score, area, length, beam, heading and position.

    Example: shipseg detect scene.tif -m ships.safetensors -o ships.gpkg --preview quicklook.png
    """
    if quiet and progress_mode == "bar":
        progress_mode = "none"
    out = output_path(scene, output)
    inputs = [scene, model, boxes, points]
    with one_line_warnings() as release, progress(progress_mode, "tiles", release) as reporter:
        try:
            check_output(out, inputs=inputs)
            check_outputs({out: None, preview: {".png"}}, inputs=inputs)
            detector = ShipDetector.for_scene(scene, model, device=device, bands=bands, tile_size=tile_size,
                                              overlap=overlap, batch_size=batch_size, nodata=nodata,
                                              precision=precision, all_tiles=all_tiles)
            if detector.choice:  # picked from the zoo: said on stderr (stdout may be JSON) and as an event
                reporter.emit("model", model=detector.name, pixel_size_m=detector.card.pixel_size_m,
                              bands=list(detector.card.bands), message=detector.choice)
                if not quiet:
                    click.echo(detector.choice, err=True)
            with atomic_files(out, preview) as (out_tmp, preview_tmp):  # both outputs or neither
                ships = detect_with_preview(detector, scene, preview_tmp, boxes=boxes, points=points,
                                            progress=tile_progress(reporter), on_plan=reporter.plan)
                write_ships(ships, out_tmp)
        except ShipsegError as exc:
            reporter.emit("error", message=str(exc))  # the plugin reads stdout only; stderr gets the line too
            raise
        reporter.emit("done", output=str(out), ships=len(ships))
    if progress_mode != "json" and not quiet:
        if detector.tiles_skipped:
            click.echo(f"{detector.tiles_skipped} tiles far from any water were skipped (--all-tiles reads them)",
                       err=True)
        click.echo(f"{out}: {len(ships)} ships")
