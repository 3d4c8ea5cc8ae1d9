"""Prepared datasets (``shipseg prepare``, read by samgeo_ship.dataset) as training samples: tile chips resized to the
model's input size, with their ship instances as masks and boxes; datasets trained together; the train/validation
split."""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from samgeo_ship.dataset import Dataset, TileRef, open_dataset, read_chip, read_instances
from samgeo_ship.errors import ShipsegError, fail
from samgeo_ship.models.shipsam import model_input
from samgeo_ship.bands import same_bands
from samgeo_ship.training.augment import apply_variant, variant_boxes

# Datasets whose pixel sizes differ by more than this would teach the model ships of several apparent sizes,
# which detection (one pixel size per bundle) cannot reproduce. Sentinel-2 delivered in Web Mercator alone spans
# 5.8-9.4 m ground pixels across the sen2ships ports (10 Web Mercator units shrink with cos(latitude)), so the
# bound is a factor of two; the card records the median.
PIXEL_SIZE_TOLERANCE = 1.0


@dataclass
class Sample:
    """One tile in one augmentation variant, at model input size S.

    chip: (C, T, T) uint8, the tile as stored (before augmentation; hashed for the embedding cache).
    image: (3, S, S) float32 in SAM's 0-255 range, augmented and resized.
    masks: (N, S, S) bool instance masks; boxes: (N, 4) float32 ``x0, y0, x1, y1`` in input pixels."""

    ref: TileRef
    variant: int
    chip: np.ndarray
    image: torch.Tensor
    masks: torch.Tensor
    boxes: torch.Tensor


def open_datasets(paths) -> list[Dataset]:
    """Open every dataset and check they agree on what a bundle records (bands, tile size, pixel size)."""
    datasets = [open_dataset(p) for p in paths]
    if not datasets:
        raise ShipsegError("no dataset given; pass one or more directories made by shipseg prepare")
    first = datasets[0]
    if len(first.card["bands"]) not in (1, 3):
        raise fail(first.path, f"has {len(first.card['bands'])} bands ({','.join(first.card['bands'])}), but SAM "
                   "takes 3 (or 1); prepare it again with --bands, e.g. --bands B04,B03,B02")
    for ds in datasets[1:]:
        for key, same in (("bands", same_bands), ("tile_size", operator.eq)):
            if not same(ds.card[key], first.card[key]):
                raise fail(ds.path, f"has {key} {ds.card[key]} but {first.path} has {first.card[key]}; "
                           "datasets trained together must be prepared alike")
        a, b = ds.card.get("pixel_size_m"), first.card.get("pixel_size_m")
        if a and b and abs(a - b) > PIXEL_SIZE_TOLERANCE * min(a, b):
            raise fail(ds.path, f"has {a:g} m pixels but {first.path} has {b:g} m; resample the scenes to one "
                       "pixel size before training together")
    return datasets


def split_tiles(train: list[Dataset], val: list[Dataset], val_fraction: float, seed: int):
    """(train refs, val refs). With ``val`` datasets, all their tiles validate; else a seeded ``val_fraction``
    of the tiles of ``train`` (at least one when the fraction is > 0 and there are two tiles or more)."""
    refs = [TileRef(ds, t) for ds in train for t in ds.tiles]
    if val:
        return refs, [TileRef(ds, t) for ds in val for t in ds.tiles]
    n_val = int(round(val_fraction * len(refs)))
    if val_fraction > 0 and len(refs) > 1:
        n_val = min(max(n_val, 1), len(refs) - 1)
    order = np.random.default_rng([seed, 7919]).permutation(len(refs))
    val_idx = set(order[:n_val].tolist())
    return ([r for i, r in enumerate(refs) if i not in val_idx],
            [r for i, r in enumerate(refs) if i in val_idx])


def chip_to_image(chip: np.ndarray, img_size: int) -> torch.Tensor:
    """(C, T, T) uint8 chip -> (3, S, S) float32 in 0-255 (see models.shipsam.model_input)."""
    return model_input(torch.from_numpy(np.ascontiguousarray(chip)).float()[None], img_size)[0]


def load_sample(ref: TileRef, img_size: int, variant: int = 0) -> Sample:
    """Read a tile and bring it to the model's input size S in augmentation ``variant`` (0 = as stored)."""
    chip = read_chip(ref)
    size = chip.shape[-1]
    boxes = ref.dataset.boxes[ref.tile]
    image = chip_to_image(apply_variant(chip, variant), img_size)
    masks = torch.zeros((0, img_size, img_size), dtype=torch.bool)
    if len(boxes):
        inst = torch.from_numpy(apply_variant(read_instances(ref), variant))
        masks = F.interpolate(inst[None].to(torch.uint8), size=(img_size, img_size), mode="nearest")[0].bool()
    scaled = variant_boxes(boxes, size, variant) * (img_size / size)
    return Sample(ref, variant, chip, image, masks, torch.from_numpy(scaled))
