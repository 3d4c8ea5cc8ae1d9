"""Box prompts larger than a tile, for a model that sees any resolution (an official SAM checkpoint): each is
segmented whole in a square window of its own, read decimated to the tile size, instead of being cut at the seams
into parts that no tile sees whole. Boxes that fit a tile stay with the grid (``assign_prompts``)."""

from __future__ import annotations

import math

import numpy as np
from affine import Affine
from rasterio.windows import Window

from samgeo_ship.inference.predictor import TilePrompts
from samgeo_ship.inference.prompts import box_pixels
from samgeo_ship.tiling import Tile

CONTEXT = 0.1  # ground around a large box, on each side, as a fraction of its longer side
WINDOW_ROW = -1  # the row of the box windows' keys in the prompts dict: grid tiles have rows >= 0


def split_large_boxes(grid, scene, boxes: np.ndarray, prompts: dict) -> tuple[dict, list[Tile]]:
    """``prompts`` (from ``assign_prompts(grid, scene, boxes=boxes)``) with every box longer than a tile taken out
    of the grid tiles and given a window of its own. Returns (the prompts, now also keyed by each window's
    (row, col)) and the windows, as Tiles whose ``window`` is in scene pixels and whose ``transform`` maps the
    decimated ``grid.tile_size`` px image read from it (``read_windows``) to the scene CRS."""
    px = box_pixels(scene, boxes)
    large = np.nonzero(np.maximum(px[:, 2] - px[:, 0], px[:, 3] - px[:, 1]) > grid.tile_size)[0]
    if len(large) == 0:
        return prompts, []
    kept = {}
    for key, tile_prompts in prompts.items():
        keep = ~np.isin(tile_prompts.ids, large)
        if keep.any():
            kept[key] = TilePrompts(tile_prompts.ids[keep], boxes=tile_prompts.boxes[keep])
    windows = []
    for k, i in enumerate(large):
        tile, box = _box_window(scene.transform, px[i], grid.tile_size, k)
        kept[(tile.row, tile.col)] = TilePrompts(np.array([i]), boxes=box[None])
        windows.append(tile)
    return kept, windows


def _box_window(transform: Affine, box: np.ndarray, size: int, k: int) -> tuple[Tile, np.ndarray]:
    """The square window around ``box`` (scene pixels) with CONTEXT on every side, and the box in the pixels of
    that window read at ``size`` px."""
    side = math.ceil(max(box[2] - box[0], box[3] - box[1]) * (1 + 2 * CONTEXT))
    c0, r0 = math.floor((box[0] + box[2] - side) / 2), math.floor((box[1] + box[3] - side) / 2)
    window = Window(c0, r0, side, side)
    scale = side / size  # scene pixels per window pixel
    tile = Tile(WINDOW_ROW, k, window, window, transform @ Affine.translation(c0, r0) @ Affine.scale(scale))
    return tile, (box - np.array([c0, r0, c0, r0])) / scale


def read_windows(scene, windows: list[Tile], size: int):
    """(tile, (C, size, size) image, valid) per box window, as ``stream.read_tiles`` yields grid tiles; image None
    for a window without a valid pixel."""
    for tile in windows:
        image, valid = scene.read_decimated(tile.window, size)
        yield (tile, image, valid) if valid.any() else (tile, None, None)
