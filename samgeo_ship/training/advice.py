"""Few-shot advice: what a training setup (encoder mode, model type, starting point) will do with the number of
ships and tiles it is given, as one-sentence warnings printed before training starts."""

from __future__ import annotations

from pathlib import Path

from samgeo_ship.models.bundle import read_card
from samgeo_ship.models.registry import CONFIGS
from samgeo_ship.training.data import open_datasets
from samgeo_ship.training.modes import default_mode

# Rough floors: a model from random initialisation needs about a thousand ships; a whole encoder (full) memorises a
# few dozen ships within epochs; LoRA adapters hold far fewer weights.
SCRATCH_SHIPS = 500
FULL_SHIPS = 200
LORA_SHIPS = 50
ONESHOT_SHIPS = 5
# Shipless tiles per tile with ships below which detection will have poor precision: the prompter learns what is not
# a ship from them (benchmarks/label_efficiency.py). More helps precision but can silence a few-shot prompter, so
# this is a floor to warn below, not a target.
EMPTY_PER_SHIP_TILE = 10
# ... and above this many drawn each epoch, a few-shot prompter learns to stay quiet; a fresh 10 per ship tile each
# epoch (--negative-ratio 10) over more epochs keeps both precision and recall. With many ships the same share of
# shipless tiles trains well, so the warning is for few ships only.
QUIET_PER_SHIP_TILE = 20


def advise(config, ships: int, tiles: int, validation_given: bool = False, empty_tiles: int | None = None) -> list[str]:
    """Warnings for a training run.

    Args:
        config: a TrainConfig (model_type, encoder, init, base_checkpoint, val_fraction, negatives and
            negative_ratio are read).
        ships, tiles: ship instances and tiles in the training datasets.
        validation_given: validation datasets were given (--val), so no tiles are held out.
        empty_tiles: how many of the tiles hold no ship (None: not checked)."""
    model_type = read_card(config.init).model_type if config.init else config.model_type
    mode = config.encoder or default_mode(model_type)
    scratch = not config.init and not config.base_checkpoint and not CONFIGS[model_type].official
    chosen = f"`--encoder {mode}`" if config.encoder else f"the default encoder mode for {model_type} ({mode})"
    fix = ("pass --encoder frozen (decoder and prompter only)" if config.init else
           "use --init BASE (e.g. --init default, the bundled model) with --encoder frozen (decoder and prompter "
           "only)")
    out = []
    if ships == 0:
        out.append("the training tiles hold no ships, so only the prompter learns (to stay quiet); check the labels "
                   "given to shipseg prepare")
    elif scratch and mode != "full":
        out.append(f"{chosen} keeps {model_type}'s randomly initialised encoder, which will never learn to see ships; "
                   f"{fix}")
    elif mode == "full" and ships < FULL_SHIPS:
        out.append(f"{chosen} with {ships} ships will overfit; {fix}")
    elif scratch and ships < SCRATCH_SHIPS:
        out.append(f"training {model_type} from random initialisation on {ships} ships will not generalise (the "
                   f"default model needed over 1000); {fix}")
    elif mode == "lora" and ships < LORA_SHIPS:
        out.append(f"{chosen} with {ships} ships is likely to overfit; --encoder frozen trains only the decoder and "
                   "prompter")
    if 0 < ships <= ONESHOT_SHIPS:
        out.append(f"with {ships} ships, `shipseg oneshot SCENE LABELS -m BASE -o OUT` personalises a model in "
                   "seconds without training SAM")
    ship_tiles = tiles - (empty_tiles or 0)
    drawn = (empty_tiles or 0) * config.negatives if config.negative_ratio is None else 0
    if empty_tiles is not None and 0 < ships < FULL_SHIPS and drawn > QUIET_PER_SHIP_TILE * ship_tiles:
        out.append(f"{round(drawn)} shipless tiles each epoch for {ship_tiles} tiles with ships: with so few ships the "
                   f"prompter learns to stay quiet; pass --negative-ratio {EMPTY_PER_SHIP_TILE} (a fresh "
                   f"{EMPTY_PER_SHIP_TILE} per tile with ships each epoch) and train for more epochs")
    if empty_tiles is not None and ships and empty_tiles < EMPTY_PER_SHIP_TILE * ship_tiles:
        out.append(f"{empty_tiles} shipless tiles for {ship_tiles} tiles with ships: the prompter learns what is not "
                   "a ship from shipless tiles, so expect false alarms; prepare more of the scene (all of it when "
                   "every ship in it is labelled, else a wider --labelled-area)")
    if not validation_given and (tiles < 2 or config.val_fraction == 0):
        out.append(f"with {tiles} tiles and --val-fraction {config.val_fraction:g} no tile is held out, so there is "
                   "no validation and no early stopping; pass --val DATASET")
    return out


def dataset_advice(config, datasets, validation_given: bool = False) -> list[str]:
    """``advise`` for the prepared ``datasets`` (directories) a run will train on."""
    opened = open_datasets([Path(d) for d in datasets])
    empty = sum(1 for d in opened for b in d.boxes.values() if len(b) == 0)
    return advise(config, sum(d.ships for d in opened), sum(len(d.tiles) for d in opened), validation_given, empty)
