"""`shipseg evaluate`: score a model against truth polygons on one scene (a table, JSON and a figure)."""

import json
from pathlib import Path

import click

from samgeo_ship import evaluate as evaluate_scene
from samgeo_ship.atomic import atomic_files
from samgeo_ship.outputs import check_outputs

from .group import one_line_warnings
from .progress import progress, tile_progress


@click.command("evaluate")
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("scene", type=click.Path(dir_okay=False))
@click.argument("truth", type=click.Path(dir_okay=False))
@click.option("--bands", default=None, help="Bands by description or 1-based index [default: the model's bands].")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the scores as JSON.")
@click.option("--figure", type=click.Path(dir_okay=False, path_type=Path),
              help="PNG of the scene with truth (green) and predictions (magenta).")
@click.option("--batch-size", default=None, type=click.IntRange(min=1), show_default="chosen from the free memory",
              help="Tiles encoded at once.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def evaluate(model, scene, truth, bands, json_path, figure, batch_size, device, quiet):
    """Detect ships in SCENE with MODEL and score them against the TRUTH polygons: precision, recall and F1 at
    IoU 0.5, mask IoU with the truth boxes as prompts (and the filled-box baseline), length and heading errors.

    Example: shipseg evaluate ships.safetensors scene.tif truth.geojson --json scores.json --figure scores.png
    """
    check_outputs({json_path: {".json"}, figure: {".png"}}, inputs=[model, scene, truth])
    with atomic_files(json_path, figure) as (json_tmp, figure_tmp):  # both outputs or neither
        with one_line_warnings() as release, progress("none" if quiet else "bar", "tiles", release) as reporter:
            result = evaluate_scene(model, scene, truth, bands=bands, batch_size=batch_size, device=device,
                                    progress=tile_progress(reporter), figure=figure_tmp)
        if json_path is not None:
            json_tmp.write_text(json.dumps(result.to_dict(), indent=1))
    click.echo(result.table())
