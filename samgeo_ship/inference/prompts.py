"""User prompts: boxes or points from a vector file (any CRS) or an array in the scene CRS, each handed to the one
tile whose core holds it, in that tile's pixels."""

from __future__ import annotations

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
    Refuses prompts whose centre lies outside the scene. A box larger than a tile is cut at the tile's edge."""
    if (boxes is None) == (points is None):
        raise ValueError("give either boxes or points")
    coords = np.asarray(boxes if boxes is not None else points, float)
    coords = coords.reshape(-1, 4 if boxes is not None else 2)
    centres = (coords[:, :2] + coords[:, 2:]) / 2 if boxes is not None else coords
    to_px = ~scene.transform
    cols, rows = np.array([to_px @ tuple(c) for c in centres]).reshape(-1, 2).T
    outside = (cols < 0) | (cols >= scene.width) | (rows < 0) | (rows >= scene.height)
    if outside.any():
        what = "boxes" if boxes is not None else "points"
        raise fail(source, f"{int(outside.sum())} of {len(coords)} {what} lie outside the scene "
                           f"{scene.path.name} (first: number {int(np.argmax(outside)) + 1})")
    cs = grid.core_size
    out: dict[tuple[int, int], list[int]] = {}
    for i, (c, r) in enumerate(zip(cols, rows)):
        out.setdefault((int(r // cs), int(c // cs)), []).append(i)
    result = {}
    for (r, c), ids in out.items():
        inv = ~grid.tile(r, c).transform  # scene CRS -> this tile's pixels
        ids = np.asarray(ids)
        if boxes is not None:
            corners = [[inv @ (x, y) for x in (b[0], b[2]) for y in (b[1], b[3])] for b in coords[ids]]
            corners = np.asarray(corners)  # (n, 4, 2): any affine, rotated or flipped, gives the right box
            tile_boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
            result[(r, c)] = TilePrompts(ids, boxes=tile_boxes)
        else:
            pts = np.asarray([inv @ tuple(p) for p in coords[ids]])[:, None, :]
            result[(r, c)] = TilePrompts(ids, points=pts, labels=np.ones(pts.shape[:2], np.int64))
    return result
