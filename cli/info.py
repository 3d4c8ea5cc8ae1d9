"""`shipseg info`: print a model bundle's card."""

import json

import click

from samgeo_ship.models.bundle import verify_bundle
from samgeo_ship.models.official import is_official
from samgeo_ship.models.zoo import model_card, model_path


def _rows(value, prefix=""):
    """Flatten nested dicts into (dotted key, text) rows; lists of plain values join with commas."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _rows(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value):
        yield prefix, ", ".join(str(v) for v in value)
    elif isinstance(value, float):
        yield prefix, f"{value:.4g}"
    else:
        yield prefix, json.dumps(value) if isinstance(value, list) else str(value)


# The per-epoch history and per-dataset details are long; the table shows their size, --json shows them all.
_LONG = ("history", "datasets")


@click.command("info")
@click.argument("model", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the raw card as JSON.")
def info(model, as_json):
    """Print the card of the model bundle MODEL (or `default`): what it was trained on and how detection must use
    it. The card and the weights are checked against their hashes first; a bundle that fails is refused, not
    printed. An official SAM checkpoint (.pth, vit_b) prints the card built for it in memory."""
    card = model_card(model) if is_official(model) else verify_bundle(model_path(model))[0]
    if as_json:
        click.echo(card.to_json())
        return
    data = json.loads(card.to_json())
    training = data.get("training", {})
    for key in _LONG:
        if isinstance(training.get(key), list):
            training[key] = f"{len(training[key])} entries (see --json)"
    rows = list(_rows(data))
    width = max(len(k) for k, _ in rows)
    for key, text in rows:
        click.echo(f"{key:<{width}}  {text}")
