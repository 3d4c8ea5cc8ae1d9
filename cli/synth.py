"""`shipseg synth`: write a synthetic harbour scene and the exact truth of its ships."""

import re
from pathlib import Path

import click

from samgeo_ship.atomic import atomic_files
from samgeo_ship.errors import fail
from samgeo_ship.outputs import check_outputs
from samgeo_ship.synthetic import SynthSpec, plan_scene, write_raster, write_truth
from samgeo_ship.synthetic_aerial import plan_aerial
from samgeo_ship.synthetic_aerial_paint import write_aerial_raster

from .progress import progress


def _size(out: Path, text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise fail(out, f"--size {text!r} is not WIDTHxHEIGHT in pixels, e.g. 1024x1024")
    return int(match[1]), int(match[2])


@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--truth", type=click.Path(dir_okay=False, path_type=Path), help="Truth GeoJSON [default: OUT.geojson].")
@click.option("--size", default="1024x1024", show_default=True, help="Scene size WIDTHxHEIGHT in px.")
@click.option("--kind", type=click.Choice(["harbour", "aerial"]), default="harbour", show_default=True,
              help="harbour: a Sentinel-2-like port at 10 m; aerial: an 8-bit RGB aerial or satellite image at "
                   "0.15-4 m (hulls with decks and superstructure, wakes, marinas, land clutter).")
@click.option("--pixel-size", type=float, help="Pixel size in metres [default: 10 harbour, 0.5 aerial].")
@click.option("--crs", default=None, help="Scene CRS, e.g. EPSG:4326 [default: the UTM zone of --center].")
@click.option("--center", nargs=2, type=float, default=(5.35, 43.28), show_default=True, help="Centre LON LAT.")
@click.option("--bands", type=click.Choice(["s2", "rgb8"]),
              help="s2: B04,B03,B02,B08 uint16; rgb8: RGB uint8 [default: s2 harbour, rgb8 aerial].")
@click.option("--ships", default=40, show_default=True, type=click.IntRange(min=0), help="Number of ships.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Random seed; same seed, same bytes.")
@click.option("--seam-every", default=512, show_default=True, type=click.IntRange(min=1),
              help="Tile seam spacing in px; a few ships are centred on seams.")
@click.option("--nodata-fraction", default=0.08, show_default=True, type=float,
              help="Share of the scene that is nodata (0 to 0.5).")
@click.option("--overwrite", is_flag=True, help="Replace OUT and the truth file if they exist.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def _synth(out, truth, kind, size, pixel_size, crs, center, bands, ships, seed, seam_every, nodata_fraction, overwrite,
           quiet):
    """Write a synthetic harbour scene OUT (tiled GeoTIFF) and its ships as GeoJSON polygons in WGS84.

    Example: shipseg synth scene.tif --size 2048x2048 --bands s2 --ships 80 --seed 1;
    shipseg synth ortho.tif --kind aerial --pixel-size 0.5 --size 1024x1024 --ships 30
    """
    aerial = kind == "aerial"
    pixel_size = pixel_size if pixel_size is not None else (0.5 if aerial else 10.0)
    bands = bands or ("rgb8" if aerial else "s2")
    if aerial and bands != "rgb8":
        raise fail(out, "an aerial scene has rgb8 bands only")
    truth = truth or out.with_suffix(".geojson")
    width, height = _size(out, size)
    for path in (out, truth):
        if path.exists() and not overwrite:
            raise fail(path, "already exists; pass --overwrite to replace it")
    check_outputs({out: {".tif", ".tiff"}, truth: {".geojson", ".json"}})
    spec = SynthSpec(width, height, pixel_size_m=pixel_size, crs=crs, bands=bands, n_ships=ships, seed=seed,
                     seam_every_px=seam_every, nodata_fraction=nodata_fraction, center_lonlat=tuple(center))
    plan = (plan_aerial if aerial else plan_scene)(spec, out)  # checks the spec before anything is written
    result = plan.truth if aerial else plan
    with atomic_files(out, truth) as (out_tmp, truth_tmp):  # the scene and its truth, or neither
        if aerial:
            write_aerial_raster(plan, out_tmp)
        else:
            with progress("none" if quiet else "bar", "blocks") as reporter:
                write_raster(result, out_tmp, reporter.show)
        write_truth(result, truth_tmp)
    click.echo(f"{out}: {width}x{height} px {bands} in EPSG:{result.crs.to_epsg()}; "
               f"{truth}: {result.n_ships} ships")


synth = click.command("synth")(_synth)
