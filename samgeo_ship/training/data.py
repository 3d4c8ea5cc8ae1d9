"""Prepared datasets (``shipseg prepare``) as training samples: tile chips resized to the model's input size,
with their ship instances as masks and boxes; the train/validation split."""

from __future__ import annotations

import json
import operator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
import torch
import torch.nn.functional as F

from samgeo_ship.dataset import FORMAT
from samgeo_ship.errors import ShipsegError, fail
from samgeo_ship.models.shipsam import model_input
from samgeo_ship.raster import same_bands
from samgeo_ship.training.augment import apply_variant, variant_boxes

# Datasets whose pixel sizes differ by more than this would teach the model ships of several apparent sizes,
# which detection (one pixel size per bundle) cannot reproduce. Sentinel-2 delivered in Web Mercator alone spans
# 5.8-9.4 m ground pixels across the sen2ships ports (10 Web Mercator units shrink with cos(latitude)), so the
# bound is a factor of two; the card records the median.
PIXEL_SIZE_TOLERANCE = 1.0


@dataclass(frozen=True)
class Dataset:
    """One prepared dataset directory: its card (dataset.json), tile ids and per-tile instance boxes."""

    path: Path
    card: dict
    tiles: tuple[str, ...]
    boxes: dict  # tile id -> (N, 4) float32 boxes in tile pixels, row k-1 for instance k

    @property
    def ships(self) -> int:
        return int(sum(len(b) for b in self.boxes.values()))


@dataclass(frozen=True)
class TileRef:
    """One tile of one dataset."""

    dataset: Dataset
    tile: str

    @property
    def name(self) -> str:
        return f"{self.dataset.path.name}/{self.tile}"


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


def open_dataset(path) -> Dataset:
    """Read a dataset directory's card and instance index; ShipsegError if it is not a shipseg dataset."""
    path = Path(path)
    if not path.exists():
        raise fail(path, "no such dataset directory")
    if not path.is_dir():
        raise fail(path, "is a file, not a dataset directory made by shipseg prepare")
    card_path = path / "dataset.json"
    if not card_path.exists() or not (path / "images").is_dir() or not (path / "instances.parquet").exists():
        raise fail(path, "is not a shipseg dataset (no dataset.json, images/ and instances.parquet; "
                   "make one with shipseg prepare)")
    try:
        card = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise fail(card_path, f"is not valid JSON ({exc})") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise fail(card_path, f"is not a {FORMAT} dataset card")
    tiles = tuple(sorted(p.stem for p in (path / "images").glob("*.tif")))
    if not tiles:
        raise fail(path, "holds no tiles in images/")
    index = pd.read_parquet(path / "instances.parquet", columns=["tile", "instance", "box_x0", "box_y0",
                                                                   "box_x1", "box_y1"])
    boxes = {t: np.zeros((0, 4), np.float32) for t in tiles}
    for tile, rows in index.sort_values(["tile", "instance"]).groupby("tile"):
        boxes[tile] = rows[["box_x0", "box_y0", "box_x1", "box_y1"]].to_numpy(np.float32)
    return Dataset(path, card, tiles, boxes)


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


def read_chip(ref: TileRef) -> np.ndarray:
    """(C, T, T) uint8 chip of a tile."""
    with rasterio.open(ref.dataset.path / "images" / f"{ref.tile}.tif") as src:
        return src.read()


def read_instances(ref: TileRef) -> np.ndarray:
    """(N, T, T) bool instance masks of a tile (instance k is row k-1)."""
    n = len(ref.dataset.boxes[ref.tile])
    path = ref.dataset.path / "masks" / f"{ref.tile}.tif"
    if not path.exists():
        raise fail(path, "is missing, but instances.parquet lists ships on this tile")
    with rasterio.open(path) as src:
        raster = src.read(1)
    return raster[None] == np.arange(1, n + 1, dtype=raster.dtype)[:, None, None]


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
