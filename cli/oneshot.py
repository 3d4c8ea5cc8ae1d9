"""`shipseg oneshot`: a ShipSam bundle + one or a few reference ships in a scene -> a personalised bundle (PerSAM-F)."""

import click

from samgeo_ship.oneshot.proposer import OUTPUTS
from samgeo_ship.oneshot.persam import LR, STEPS
from samgeo_ship.oneshot.personalise import personalise
from samgeo_ship.bands import parse_bands


@click.command("oneshot")
@click.argument("scene", type=click.Path(dir_okay=False))
@click.argument("labels", type=click.Path(dir_okay=False))
@click.option("-m", "--model", "base", required=True, type=click.Path(dir_okay=False),
              help="The ShipSam bundle to personalise (e.g. default, the bundled model).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Bundle to write.")
@click.option("--max-ships", default=None, type=click.IntRange(min=1),
              help="Use only the first N ships of LABELS [all].")
@click.option("--bands", default=None, help="Bands by description or 1-based index [default: the model's bands].")
@click.option("--threshold", default=None, type=click.FloatRange(-1, 1),
              help="Cosine similarity a ship needs at detection [chosen from the reference tiles].")
@click.option("--outputs", default="all", show_default=True, type=click.Choice(list(OUTPUTS)),
              help="Decoder outputs the fitted weights mix: all (single + 3 multimask) or multimask (PerSAM-F's; "
                   "only for models whose multimask outputs were trained, e.g. an official SAM decoder).")
@click.option("--steps", default=STEPS, show_default=True, type=click.IntRange(min=0),
              help="Adam steps fitting the mixing weights.")
@click.option("--lr", default=LR, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--threads", default=None, type=click.IntRange(min=1), help="CPU threads [all cores].")
@click.pass_context
def oneshot(ctx, scene, labels, base, output, max_ships, bands, threshold, outputs, steps, lr, device, threads):
    """Personalise the model to the ship(s) outlined in LABELS on SCENE: SAM stays frozen; a target feature is
    pooled from each reference ship and the weights mixing the mask decoder's outputs are fitted. Detect with the
    written bundle as with any other (shipseg detect SCENE -m OUTPUT).

    Example: shipseg oneshot scene.tif one_ship.geojson -m default -o mine.safetensors
    """
    result = personalise(scene, labels, base, output, bands=parse_bands(bands), max_ships=max_ships, steps=steps,
                         lr=lr, threshold=threshold, outputs=outputs, device=device, threads=threads,
                         recipe=dict(ctx.params))
    s, o = result.similarity, result.card.oneshot
    click.echo(f"{output}: {o['reference_ships']} reference ships in {o['reference_tiles']} tiles, mix "
               f"{', '.join(f'{w:.2f}' for w in o['mix_weights'])}, reference mask IoU {result.fit.iou_init:.3f} -> "
               f"{result.fit.iou:.3f}, similarity threshold {s['threshold']:.3f} (ships {s['ship']:.3f}, background "
               f"{s['background']:.3f}), {result.seconds:.1f} s")
