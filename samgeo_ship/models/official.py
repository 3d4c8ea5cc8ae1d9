"""Meta's SAM checkpoints used as they are: a ``.pth`` file or the name of a cached one (vit_b, vit_l, vit_h) loaded
as a model that segments the user's prompts at any resolution. It has no ship prompter, so it cannot find ships on
its own; ``shipseg train --model-type vit_b`` (from these weights) or ``shipseg oneshot`` make a detector."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from samgeo_ship.errors import fail
from samgeo_ship.models import weights
from samgeo_ship.models.bundle import BundleCard
from samgeo_ship.models.registry import CONFIGS, SamConfig, detect_model_type, read_checkpoint, sam_from_state
from samgeo_ship.models.shipsam import ShipSam, filled_boxes

KIND = "sam"  # BundleCard.kind of an official model: prompts only, no prompter
SUFFIXES = (".pth", ".pt")
# Tile halo in scene pixels: a box near a seam usually fits its home tile's window whole.
OVERLAP_PX = 128
# A box-prompted mask keeps only what lies within its box grown by this fraction of the box's size on each side
# (plus BOX_PAD model pixels): the user's box says where the ship is, and SAM's mask may spill along a quay or a wake.
BOX_MARGIN = 0.1
BOX_PAD = 2.0
_OUTSIDE = -1e4  # mask logit given to the pixels outside a prompt's box


def is_official(model) -> bool:
    """Whether ``model`` (what -m gives) names an official checkpoint: a cache name or a ``.pth``/``.pt`` file."""
    return model is not None and (str(model) in weights.CHECKPOINTS or Path(str(model)).suffix.lower() in SUFFIXES)


def official_path(model) -> Path:
    """The file of an official model: a cache name resolved in the weights cache, a path as it is."""
    name = str(model)
    if name not in weights.CHECKPOINTS:
        return Path(name)
    path = weights.cached_path(name)
    if not path.is_file():
        raise fail(name, f"is not in the weights cache ({path.parent}); run `shipseg weights download {name}`")
    return path


def known_checkpoint(path: Path) -> weights.Checkpoint | None:
    """The published checkpoint ``path`` claims to be, by its file name or its exact size; None for another file."""
    size = path.stat().st_size
    return next((c for c in weights.CHECKPOINTS.values() if c.filename == path.name or c.size_bytes == size), None)


def read_official_card(path) -> BundleCard:
    """The card of an official checkpoint file, the file checked as ``load_official`` checks it (no model built)."""
    return _checked(path)[1]


def load_official(path, device="cpu") -> tuple["OfficialSam", BundleCard]:
    """An official checkpoint loaded strictly, never unpickled. A file that claims to be a published checkpoint (its
    name or size) must have that checkpoint's SHA-256; any other ``.pth`` must fit vit_b, vit_l or vit_h exactly."""
    state, card = _checked(path)
    config = CONFIGS[card.model_type]
    model = OfficialSam(sam_from_state(config, state), config, card.base_model, card.model_type)
    return model.eval().to(device), card


def _checked(path) -> tuple[dict, BundleCard]:
    """(the state_dict, the card) of an official checkpoint file, its hash and its shapes checked."""
    path = Path(path)
    if not path.is_file():
        raise fail(path, "no such model file")
    known = known_checkpoint(path)
    if known is not None:
        weights.verify(path)
    state = read_checkpoint(path)
    model_type = detect_model_type(state)
    if model_type not in weights.CHECKPOINTS:
        raise fail(path, "is not a SAM checkpoint: its tensors fit none of vit_b, vit_l and vit_h exactly (a model "
                         "made by shipseg is a .safetensors bundle)")
    card = official_card(model_type, path)
    card.base_sha256 = known.sha256 if known is not None else None
    return state, card


def official_card(model_type: str, path: Path) -> BundleCard:
    """The card of an official model, built in memory: any 3 bands (SAM was trained on 8-bit RGB photos, so the
    first three, red green blue, by default), any resolution (no pixel size: tiles are read at the scene's own
    pixels), tiles of the model's input size, the scene's percentile stretch."""
    config = CONFIGS[model_type]
    return BundleCard(model_type=model_type, bands=["red", "green", "blue"], pixel_size_m=None,
                      tile_size=config.img_size, overlap=OVERLAP_PX, base_model=path.name, trained=[],
                      stored=["sam"], kind=KIND, config=dataclasses.asdict(config))


def no_prompter(source, model_type: str):
    """The error for a run that asks an official model to find ships without prompts."""
    return fail(source, f"is an official SAM model ({model_type}): it has no ship prompter, so it only segments the "
                        f"ships you point at; give --boxes or --points, or make a ship detector with "
                        f"`shipseg train --model-type {model_type}` (from these weights and your labelled ships) or "
                        f"`shipseg oneshot` (from a few outlined ships)")


class NoProposer(nn.Module):
    """The proposer of a model that has none (no weights): asked for ships, it says which commands make one."""

    part = "no_proposer"
    unused_parts: tuple[str, ...] = ()

    def __init__(self, source: str, model_type: str):
        super().__init__()
        self.source, self.model_type = source, model_type

    def proposals(self, *args, **kwargs):
        raise no_prompter(self.source, self.model_type)


class OfficialSam(ShipSam):
    """SAM with Meta's weights and no ship prompter. A box-prompted mask is cut to its box (grown by BOX_MARGIN)."""

    def __init__(self, sam, config: SamConfig, source: str, model_type: str):
        super().__init__(sam, config, NoProposer(source, model_type))

    def decode(self, embedding, boxes=None, points=None, masks=None):
        logits, iou = super().decode(embedding, boxes=boxes, points=points, masks=masks)
        if boxes is not None:
            centre, half = (boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]) / 2
            half = half * (1 + 2 * BOX_MARGIN) + BOX_PAD
            inside = filled_boxes(torch.cat([centre - half, centre + half], dim=1).float(), self.img_size)
            logits = logits.masked_fill(~inside, _OUTSIDE)
        return logits, iou
