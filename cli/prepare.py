"""`shipseg prepare`: a scene and its ship labels -> a tiled training dataset."""

import click

from samgeo_ship import prepare_dataset

from .group import one_line_warnings
from .progress import progress


@click.command("prepare")
@click.argument("scene", type=click.Path(dir_okay=False))
@click.argument("labels", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Dataset directory to write.")
@click.option("--bands", default=None, help="Bands by description or 1-based index, e.g. B04,B03,B02 or 3,2,1.")
@click.option("--tile-size", default=512, show_default=True, type=click.IntRange(min=16), help="Tile size in px.")
@click.option("--overlap", default=32, show_default=True, type=click.IntRange(min=0), help="Halo per side in px.")
@click.option("--labelled-area", type=click.Path(dir_okay=False), default=None,
              help="Polygons (any vector format, any CRS) inside which every ship is labelled: the rest of the scene "
                   "becomes nodata, so its unlabelled ships are not taught as background. For a partly labelled "
                   "scene, e.g. 20 ships labelled in one basin.")
@click.option("--nodata", type=float, default=None, metavar="VALUE",
              help="Pixels of this value in every band are fill, not image (for a scene that declares no nodata).")
@click.option("--min-span", type=click.FloatRange(min=0), default=0.0, show_default=True, metavar="VALUE",
              help="Narrowest stretch, in the raster's units (e.g. 80 for 8-bit imagery): a chip of open water alone "
                   "is otherwise stretched until its ripples look like boats. Models trained on the dataset keep it.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it is a dataset made by shipseg prepare.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def prepare(scene, labels, output, bands, tile_size, overlap, labelled_area, nodata, min_span, overwrite, quiet):
    """Tile SCENE and rasterise the ships in LABELS (GeoJSON, GeoPackage, Shapefile, GeoParquet or COCO JSON)
    into a training dataset.

    Example: shipseg prepare scene.tif ships.geojson -o dataset/ --bands B04,B03,B02
    """
    with one_line_warnings() as release, progress("none" if quiet else "bar", "tiles", release) as reporter:
        summary = prepare_dataset(scene, labels, output, bands=bands, tile_size=tile_size, overlap=overlap,
                                  overwrite=overwrite, progress=reporter.show, labelled_area=labelled_area,
                                  nodata=nodata, min_span=min_span)
    dropped = ", ".join(f"{n} {reason}" for reason, n in summary.dropped.items()) or "none"
    area = f", {summary.tiles_outside_area} outside the labelled area" if labelled_area else ""
    click.echo(f"{output}: {summary.tiles} tiles ({summary.tiles_skipped_nodata} skipped as nodata{area}), "
               f"{summary.ships} ships ({summary.ships_in_tiles} in tiles, {summary.truncated_instances} truncated "
               f"tile instances), {sum(summary.dropped.values())} labels dropped ({dropped}), "
               f"{summary.repaired} repaired")
