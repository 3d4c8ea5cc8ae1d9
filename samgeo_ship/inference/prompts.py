"""User prompts: boxes or points from a vector file (any CRS) or an array in the scene CRS, each handed to the
tile whose core holds it (a box across a seam to each tile it reaches), in that tile's pixels."""

from __future__ import annotations

import math
from pathlib import Path

import geopandas as gpd
import numpy as np

from samgeo_ship.errors import fail
from samgeo_ship.inference.predictor import TilePrompts


def read_prompt_file(path, scene, kind: str) -> np.ndarray:
    """A vector file of prompts -> array in the scene CRS: ``kind="boxes"``: (N, 4) ``xmin, ymin, xmax, ymax`` (the
    bounds of each feature, usually a rectangle drawn in a GIS); ``kind="points"``: (N, 2) ``x, y`` (point features;
    each is a positive click on one ship)."""
    path = Path(path)
    if not path.exists():
        raise fail(path, "no such file")
    try:
        gdf = gpd.read_parquet(path) if path.suffix.lower() in {".parquet", ".geoparquet"} else gpd.read_file(path)
    except Exception as exc:  # pyogrio/pyarrow raise many types; all mean the same to the user
        raise fail(path, f"cannot read {kind} ({str(exc).strip().splitlines()[0] if str(exc) else exc!r})") from None
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    if len(gdf) == 0:
        raise fail(path, f"holds no {kind}")
    if gdf.crs is None:
        raise fail(path, f"the {kind} have no CRS (set one, e.g. ogr2ogr -a_srs EPSG:4326)")
    gdf = gdf.to_crs(scene.require_crs())
    if kind == "points":
        if not (gdf.geom_type == "Point").all():
            raise fail(path, "holds features that are not points (give one point per ship)")
        return np.column_stack([gdf.geometry.x, gdf.geometry.y])
    return gdf.geometry.bounds.to_numpy()


def assign_prompts(grid, scene, boxes: np.ndarray | None = None, points: np.ndarray | None = None,
                   source="prompts") -> dict[tuple[int, int], TilePrompts]:
    """Give each prompt (scene CRS) to the tile whose core holds its centre, converted to that tile's pixels.

    ``boxes``: (N, 4) ``xmin, ymin, xmax, ymax``; ``points``: (N, 2) ``x, y``. Returns {(row, col): TilePrompts}.
    Refuses prompts whose centre lies outside the scene. A box that reaches past that tile's window (a ship across
    a seam, longer than the halo) also goes to every other tile whose core it overlaps, cut at each tile's window:
    each tile segments the part of the ship it sees, and ``ShipMerger`` unions the parts of one prompt."""
    if (boxes is None) == (points is None):
        raise ValueError("give either boxes or points")
    coords = np.asarray(boxes if boxes is not None else points, float)
    coords = coords.reshape(-1, 4 if boxes is not None else 2)
    if boxes is not None:
        px = box_pixels(scene, coords)
        centres = (px[:, :2] + px[:, 2:]) / 2
    else:
        to_px = ~scene.transform
        px = centres = np.asarray([to_px @ tuple(c) for c in coords]).reshape(-1, 2)
    cols, rows = centres.T
    outside = (cols < 0) | (cols >= scene.width) | (rows < 0) | (rows >= scene.height)
    if outside.any():
        what = "boxes" if boxes is not None else "points"
        raise fail(source, f"{int(outside.sum())} of {len(coords)} {what} lie outside the scene "
                           f"{scene.path.name} (first: number {int(np.argmax(outside)) + 1})")
    per_tile: dict[tuple[int, int], list[int]] = {}
    for i, (c, r) in enumerate(zip(cols, rows)):
        home = (int(r // grid.core_size), int(c // grid.core_size))
        for key in (_box_tiles(grid, home, px[i]) if boxes is not None else [home]):
            per_tile.setdefault(key, []).append(i)
    result = {}
    for (r, c), ids in per_tile.items():
        ids = np.asarray(ids)
        window = grid.tile(r, c).window
        offset = np.array([window.col_off, window.row_off])
        if boxes is not None:
            tile_boxes = np.clip(px[ids] - np.tile(offset, 2), 0, grid.tile_size)
            result[(r, c)] = TilePrompts(ids, boxes=tile_boxes)
        else:
            pts = (px[ids] - offset)[:, None, :]
            result[(r, c)] = TilePrompts(ids, points=pts, labels=np.ones(pts.shape[:2], np.int64))
    return result


def box_pixels(scene, boxes: np.ndarray) -> np.ndarray:
    """(N, 4) boxes ``xmin, ymin, xmax, ymax`` in the scene CRS -> (N, 4) ``col0, row0, col1, row1`` scene pixels:
    the pixel envelope of each box's corners, right for any affine, rotated or flipped."""
    to_px = ~scene.transform
    corners = np.asarray([[to_px @ (x, y) for x in (b[0], b[2]) for y in (b[1], b[3])] for b in boxes])
    return np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1).reshape(-1, 4)


def _box_tiles(grid, home: tuple[int, int], box: np.ndarray) -> list[tuple[int, int]]:
    """The tiles a box (scene pixels ``col0, row0, col1, row1``) goes to: its home tile when the box fits in that
    tile's window, else every tile whose core it overlaps."""
    window = grid.tile(*home).window
    if window.col_off <= box[0] and box[2] <= window.col_off + window.width and \
            window.row_off <= box[1] and box[3] <= window.row_off + window.height:
        return [home]
    cs, (n_rows, n_cols) = grid.core_size, grid.shape

    def span(lo, hi, n):
        return range(min(max(int(lo // cs), 0), n - 1), min(max(math.ceil(hi / cs) - 1, int(lo // cs), 0), n - 1) + 1)

    return [(r, c) for r in span(box[1], box[3], n_rows) for c in span(box[0], box[2], n_cols)]
