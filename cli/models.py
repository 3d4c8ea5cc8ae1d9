"""`shipseg models`: the bundled models and the official checkpoints in the weights cache, one row each."""

import click

from samgeo_ship.models import weights as W
from samgeo_ship.models.official import official_card
from samgeo_ship.models.zoo import bundled_cards


def _quality(card) -> str:
    """The card's measured figures, e.g. ``f1=0.949 on harbour_s2_16bit``; "-" when it has none."""
    figures = {k: v for k, v in card.quality.items() if k not in ("on", "real")}
    text = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items())
    on = card.quality.get("on")
    return f"{text} on {on}" if text and on else text or "-"


@click.command("models")
def models():
    """List the bundled models (detect picks among them by the scene's pixel size and bands when -m is not given)
    and the official SAM checkpoints in the weights cache (`shipseg weights download`): where each is, the pixel
    size and bands it is made for, its tile size and its measured figures."""
    rows = [("bundled", path.name, card) for path, card in bundled_cards()]
    # Cards built from the name, not the file: hashing gigabytes to list them would take minutes.
    rows += [("cache", name, official_card(name, W.cached_path(name))) for name in W.CHECKPOINTS
             if W.cached_path(name).is_file()]
    click.echo(f"{'source':<8} {'model':<24} {'pixel':>8}  {'bands':<16} {'tile':>5}  measured")
    for source, name, card in rows:
        pixel = "any" if card.pixel_size_m is None else f"{card.pixel_size_m:.3g} m"
        bands = ",".join(map(str, card.bands))
        click.echo(f"{source:<8} {name:<24} {pixel:>8}  {bands:<16} {card.tile_size:>5}  {_quality(card)}")
