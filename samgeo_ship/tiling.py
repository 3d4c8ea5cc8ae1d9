"""The tile grid: fixed-size windows with an overlap halo around cores that partition the scene exactly."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterator

from affine import Affine
from rasterio.windows import Window


@dataclass(frozen=True)
class Tile:
    """One tile of a scene.

    ``window`` is the ``size`` x ``size`` pixel window read for the model (it may extend past the scene edge; reads
    are boundless). ``core`` is the part of the scene this tile owns, in scene pixels: the cores of a grid cover
    every scene pixel exactly once. ``transform`` maps tile pixel (col, row) to scene CRS coordinates.
    """

    row: int
    col: int
    window: Window
    core: Window
    transform: Affine

    @property
    def id(self) -> str:
        return f"r{self.row:03d}_c{self.col:03d}"

    @property
    def size(self) -> int:
        return int(self.window.width)

    def core_slices(self) -> tuple[slice, slice]:
        """(rows, cols) slices of the core inside the tile's own pixel array."""
        r0 = int(self.core.row_off - self.window.row_off)
        c0 = int(self.core.col_off - self.window.col_off)
        return slice(r0, r0 + int(self.core.height)), slice(c0, c0 + int(self.core.width))


@dataclass(frozen=True)
class TileGrid:
    """A grid over a ``width`` x ``height`` px scene of ``tile_size`` px tiles with ``overlap`` px of halo on each
    side, so cores are ``tile_size - 2 * overlap`` px (the last row and column are clipped to the scene).

    ``skipped``: (row, col) of tiles left out of iteration and of ``len`` (tiles that cannot hold what is looked
    for, see ``without``); ``shape`` and ``tile`` still cover the whole grid."""

    width: int
    height: int
    tile_size: int
    overlap: int
    transform: Affine = Affine.identity()
    skipped: frozenset = frozenset()

    def __post_init__(self):
        if self.tile_size <= 0 or self.overlap < 0:
            raise ValueError("tile_size must be positive and overlap non-negative")
        if self.core_size < 1:
            raise ValueError(f"overlap {self.overlap} px leaves no core in a {self.tile_size} px tile")

    @classmethod
    def for_scene(cls, scene, tile_size: int, overlap_px: int | None = None, overlap_m: float | None = None):
        """Grid for a Scene; the halo is given in pixels, or in metres (converted with the scene's pixel size;
        for a geographic CRS, metres are converted at the scene centre)."""
        if overlap_m is not None:
            overlap_px = math.ceil(overlap_m / scene.ground_pixel_size_m)
        return cls(scene.width, scene.height, tile_size, overlap_px or 0, scene.transform)

    @property
    def core_size(self) -> int:
        return self.tile_size - 2 * self.overlap

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of tiles."""
        return math.ceil(self.height / self.core_size), math.ceil(self.width / self.core_size)

    def __len__(self) -> int:
        rows, cols = self.shape
        return rows * cols - len(self.skipped)

    def __iter__(self) -> Iterator[Tile]:
        rows, cols = self.shape
        for r in range(rows):
            for c in range(cols):
                if (r, c) not in self.skipped:
                    yield self.tile(r, c)

    def without(self, tiles) -> "TileGrid":
        """This grid with the (row, col) ``tiles`` also skipped."""
        rows, cols = self.shape
        more = {(r, c) for r, c in tiles if 0 <= r < rows and 0 <= c < cols}
        return replace(self, skipped=self.skipped | more)

    def tile(self, row: int, col: int) -> Tile:
        cs = self.core_size
        core = Window(col * cs, row * cs, min(cs, self.width - col * cs), min(cs, self.height - row * cs))
        window = Window(col * cs - self.overlap, row * cs - self.overlap, self.tile_size, self.tile_size)
        return Tile(row, col, window, core, self.transform @ Affine.translation(window.col_off, window.row_off))

