"""The type and range of every field of a bundle card, checked before anything is built from it: a card is read from
a file, and a wrong type ends in a traceback, an absurd size in an allocation of terabytes."""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, Mapping

from samgeo_ship.models.registry import CONFIGS, SamConfig

MAX_TILE_SIZE = 2048  # scene pixels per tile side; up to 4x more after resampling, so a tile stays under a GB
MAX_BANDS = 16
MAX_LORA_RANK = 256
MAX_PROMPTER_PIXELS = 256
MAX_PROPOSER_WIDTH = 512
REGION_SCORES = ("max", "mean")  # how a native proposer scores its own ship regions (models.native.regions)


class CardProblem(ValueError):
    """One sentence on what is wrong with one card field."""


def _int(value, name, low, high):
    if isinstance(value, bool) or not isinstance(value, int):
        raise CardProblem(f"{name} is {value!r}, not a whole number")
    if not low <= value <= high:
        raise CardProblem(f"{name} is {value}, outside {low}..{high}")
    return value


def _number(value, name, low=-math.inf, high=math.inf, low_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CardProblem(f"{name} is {value!r}, not a finite number")
    if not (low < value if low_open else low <= value) or value > high:
        raise CardProblem(f"{name} is {value:g}, outside {low:g}..{high:g}")
    return value


def _typed(value, name, types, what):
    if not isinstance(value, types):
        raise CardProblem(f"{name} is {type(value).__name__} {json_short(value)}, not {what}")
    return value


def _strings(value, name, high=64):
    _typed(value, name, list, "a list")
    if len(value) > high or not all(isinstance(v, str) for v in value):
        raise CardProblem(f"{name} must be a list of at most {high} names")
    return value


def json_short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _normalisation(value, n_bands):
    _typed(value, "normalisation", dict, "an object")
    if "percentiles" in value:
        p = _typed(value["percentiles"], "normalisation.percentiles", list, "a list")
        if len(p) != 2 or not 0 <= _number(p[0], "a percentile") < _number(p[1], "a percentile") <= 100:
            raise CardProblem("normalisation.percentiles must be two increasing numbers in 0..100")
    if "min_span" in value:
        _number(value["min_span"], "normalisation.min_span", low=0)
    for key in ("low", "high"):
        if key in value:
            values = _typed(value[key], f"normalisation.{key}", list, "a list")
            if len(values) != n_bands:
                raise CardProblem(f"normalisation.{key} has {len(values)} values for {n_bands} bands")
            for v in values:
                _number(v, f"normalisation.{key}")


def _thresholds(value):
    _typed(value, "thresholds", dict, "an object")
    for key, v in value.items():
        _number(v, f"thresholds.{key}", *((0, 1) if key in ("score", "nms_iou") else ()))


def _lora(value):
    _typed(value, "lora", dict, "an object")
    if value:
        _int(value.get("rank"), "lora.rank", 1, MAX_LORA_RANK)
        _number(value.get("alpha"), "lora.alpha")


def _contrast(value):
    _typed(value, "contrast", dict, "an object")
    if value:
        _typed(value.get("band"), "contrast.band", str, "a band name")
        _number(value.get("min"), "contrast.min")


def _proposer(value):
    _typed(value, "proposer", dict, "an object")
    if "width" in value:
        _int(value["width"], "proposer.width", 1, MAX_PROPOSER_WIDTH)
    if value.get("mask_threshold") is not None:
        _number(value["mask_threshold"], "proposer.mask_threshold", 0, 1)
    if value.get("region_score", "max") not in REGION_SCORES:
        raise CardProblem(f"proposer.region_score is {json_short(value['region_score'])}, not one of "
                          f"{', '.join(REGION_SCORES)}")


def check_card(data, required=("model_type", "bands", "pixel_size_m", "tile_size", "overlap")) -> dict:
    """Raise CardProblem unless ``data`` (a parsed card) has every field of the right type and in range; the model
    ``config`` is checked against the registry by check_config."""
    _typed(data, "the card", dict, "an object")
    missing = [k for k in required if k not in data]
    if missing:
        raise CardProblem(f"lacks {', '.join(missing)}")
    _typed(data["model_type"], "model_type", str, "a name")
    bands = _typed(data["bands"], "bands", list, "a list")
    if not 1 <= len(bands) <= MAX_BANDS or not all(isinstance(b, (str, int)) and not isinstance(b, bool)
                                                   for b in bands):
        raise CardProblem(f"bands must list 1 to {MAX_BANDS} band names or numbers")
    _number(data["pixel_size_m"], "pixel_size_m", 0, 1e5, low_open=True)
    tile = _int(data["tile_size"], "tile_size", 8, MAX_TILE_SIZE)
    _int(data["overlap"], "overlap", 0, (tile - 1) // 2)
    checks = {
        "normalisation": lambda v: _normalisation(v, len(bands)), "thresholds": _thresholds, "lora": _lora,
        "contrast": _contrast, "box_prior": lambda v: _number(v, "box_prior"),
        "prompter_pixels": lambda v: _int(v, "prompter_pixels", 0, MAX_PROMPTER_PIXELS),
        "proposer": _proposer, "trained": lambda v: _strings(v, "trained"), "stored": lambda v: _strings(v, "stored"),
        "base_sha256": lambda v: v is None or _typed(v, "base_sha256", str, "a hash"),
        **{k: (lambda v, k=k: _typed(v, k, dict, "an object"))
           for k in ("training", "validation", "config", "oneshot", "quality")},
        **{k: (lambda v, k=k: _typed(v, k, str, "text"))
           for k in ("base_model", "encoder_mode", "weights_sha256", "card_sha256", "shipseg_version", "format",
                     "kind")},
    }
    for key, check in checks.items():
        if key in data:
            check(data[key])
    return data


def config_limits() -> Dict[str, int]:
    """The largest value each whole-number SamConfig field may take in a card: twice the registry's largest (the
    official vit_h), so a config read from a file can never ask for more memory than a model twice vit_h's."""
    names = [f.name for f in dataclasses.fields(SamConfig) if f.type in ("int", int)]
    return {name: 2 * max(getattr(c, name) for c in CONFIGS.values()) for name in names}


def check_config(config) -> SamConfig:
    """A SamConfig from a card's ``config`` object, after checking every field's type and range against the
    registry (see config_limits). Raises ValueError with one sentence on the first problem."""
    if not isinstance(config, Mapping):
        raise ValueError(f"config is a {type(config).__name__}, not an object")
    fields = {f.name for f in dataclasses.fields(SamConfig)}
    unknown = sorted(set(config) - fields)
    if unknown:
        raise ValueError(f"config has unknown fields ({', '.join(unknown)})")
    limits = config_limits()
    for name, value in config.items():
        if name in limits and (isinstance(value, bool) or not isinstance(value, int) or
                               not 1 <= value <= limits[name]):
            raise ValueError(f"config.{name} is {value!r}, not a whole number in 1..{limits[name]}")
    attn = config.get("encoder_global_attn_indexes", ())
    if not isinstance(attn, (list, tuple)) or not all(isinstance(i, int) and not isinstance(i, bool) for i in attn):
        raise ValueError("config.encoder_global_attn_indexes must be a list of whole numbers")
    if not isinstance(config.get("checkpoint"), (str, type(None))):
        raise ValueError("config.checkpoint must be a file name or null")
    try:
        return SamConfig(**{**config, "encoder_global_attn_indexes": tuple(attn)})
    except TypeError as exc:  # a required field is missing
        raise ValueError(f"config is incomplete ({exc})") from None
