"""Tiles that hold no water: ships float, so a tile whose core lies far from any water cannot own a ship and is
never encoded.

The water test is a normalised difference index on bands the model may not read: NDWI (green vs near infrared,
McFeeters) and MNDWI (green vs short-wave infrared, Xu), whichever the scene has, the larger of the two where it
has both. The scene is read once, in strips of full-resolution rows, and reduced to a coarse grid of cells, so
memory follows the scene's width, not its area. A cell is water when a share of its pixels is; the water cells are
then grown by a margin, so that a ship moored at a quay (its hull is not water), several abreast, or under haze
(which pulls the water's index towards zero) still lies in a kept tile. Scenes without green and near or
short-wave infrared (RGB, or infrared alone) are not tested: every tile is kept."""

from __future__ import annotations

import math

import numpy as np
from rasterio.windows import Window

from samgeo_ship.bands import same_bands
from samgeo_ship.raster import Scene

# (water-bright band, water-dark band) of each index, by Sentinel-2 name (colour aliases match, see bands.py).
INDEXES = (("B03", "B08"), ("B03", "B11"))
WATER_INDEX = 0.0  # above: water. Clear water is 0.2-0.6; haze pulls it towards 0, land is below (vegetation -0.5)
CELL_M = 80.0  # side of a cell of the coarse water grid
WATER_SHARE = 0.25  # a cell is water when at least this share of its valid pixels is (isolated wet pixels are not)
# Water cells are grown by this much: a hull's centroid lies within half its length (the largest ships are ~400 m)
# of the water it floats on, several hulls abreast at a quay, more under haze (how it was chosen: benchmarks/README.md,
# "Tiles far from water").
MARGIN_M = 600.0
STRIP_CELLS = 32  # rows of cells read at once


def water_bands(descriptions) -> list[str] | None:
    """The bands to read for the water test (green first, then the dark bands) among a scene's band
    ``descriptions``, or None when the scene has no pair of them."""
    names = {str(d).lower() for d in descriptions if d}
    have = lambda band: any(same_bands([band], [n]) for n in names)  # noqa: E731
    pairs = [pair for pair in INDEXES if have(pair[0]) and have(pair[1])]
    if not pairs:
        return None
    return [pairs[0][0]] + [dark for _, dark in pairs]


def dry_tiles(scene: Scene, grid) -> frozenset | None:
    """The (row, col) of the tiles of ``grid`` whose core is farther than MARGIN_M from any water cell of the open
    ``scene`` (read through its water bands, whichever bands it was opened with), or None when the scene has no
    bands for the water test."""
    bands = water_bands(scene.descriptions)
    if bands is None:
        return None
    pixel_m = scene.ground_pixel_size_m
    cell = max(1, round(CELL_M / pixel_m))
    wet = _grow(water_cells(scene.view(bands), cell), math.ceil(MARGIN_M / pixel_m / cell))
    return frozenset(_dry(grid, wet, cell))


def water_cells(scene: Scene, cell: int) -> np.ndarray:
    """(ceil(H / cell), ceil(W / cell)) bool: cells where at least WATER_SHARE of the valid pixels are water."""
    rows, cols = -(-scene.height // cell), -(-scene.width // cell)
    out = np.zeros((rows, cols), bool)
    step = STRIP_CELLS * cell
    for r0 in range(0, rows * cell, step):
        data, valid = scene.read_raw(Window(0, r0, cols * cell, step))
        wet = water_pixels(data) & valid
        h = min(step, rows * cell - r0) // cell
        share = wet[: h * cell].reshape(h, cell, cols, cell).mean(axis=(1, 3))
        out[r0 // cell: r0 // cell + h] = share >= WATER_SHARE
    return out


def water_pixels(data: np.ndarray) -> np.ndarray:
    """(C, H, W) raw values, green first then the dark bands -> (H, W) bool, the index above WATER_INDEX."""
    green = data[0].astype(np.float32)
    index = np.full(green.shape, -1.0, np.float32)
    for dark in data[1:].astype(np.float32):
        total = green + dark
        np.maximum(index, np.divide(green - dark, total, out=np.full_like(total, -1.0), where=total > 0), out=index)
    return index > WATER_INDEX


def _grow(mask: np.ndarray, k: int) -> np.ndarray:
    """``mask`` dilated by a (2k+1) x (2k+1) square: a cell is set when one within k cells of it is."""
    out = mask.copy()
    for axis in (0, 1):
        src, n = out.copy(), out.shape[axis]
        for d in range(1, min(k, n - 1) + 1):
            lo = [slice(None)] * 2
            hi = [slice(None)] * 2
            lo[axis], hi[axis] = slice(0, n - d), slice(d, n)
            out[tuple(lo)] |= src[tuple(hi)]
            out[tuple(hi)] |= src[tuple(lo)]
    return out


def _dry(grid, wet: np.ndarray, cell: int):
    """(row, col) of each tile of ``grid`` with no wet cell touching its core."""
    counts = np.pad(wet.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    rows, cols = grid.shape
    for r in range(rows):
        for c in range(cols):
            core = grid.tile(r, c).core
            r0, c0 = int(core.row_off) // cell, int(core.col_off) // cell
            r1 = min(-(-int(core.row_off + core.height) // cell), wet.shape[0])
            c1 = min(-(-int(core.col_off + core.width) // cell), wet.shape[1])
            if counts[r1, c1] - counts[r0, c1] - counts[r1, c0] + counts[r0, c0] == 0:
                yield r, c
