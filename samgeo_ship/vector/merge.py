"""Ships across tile seams: each tile keeps only the ships it owns (centroid in its core), then the duplicates and
parts that neighbouring tiles still share are unioned, and every ship gets an id that depends only on its position.

Why both steps: ownership alone is exact for a ship that fits inside the halo, because both tiles see it whole and
exactly one core holds its centroid. A ship longer than the halo is cut by both tiles' window edges, so each tile
owns a part; those parts overlap in the halo (or abut along the seam when the halo is 0) and are unioned here."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

MERGE_OVERLAP = 0.5  # IoU or intersection-over-smaller above which two detections are one ship


@dataclass
class Part:
    """A ship, or the part of one that a tile saw, in the scene CRS.

    ``truncated``: the mask touched the tile's window edge, so the ship may continue in the next tile.
    ``prompt``: index of the user prompt that produced it, -1 for the learned prompter."""

    geometry: object
    score: float
    truncated: bool = False
    prompt: int = -1


def owns(core_slices: tuple[slice, slice], mask: np.ndarray) -> bool:
    """True when the centroid of the (H, W) bool ``mask`` (pixel centres, tile pixels) lies in the tile's core.

    ``core_slices``: (rows, cols) of the core inside the tile, as ``Tile.core_slices()`` gives them. The core
    bounds are half-open, so a centroid exactly on a seam belongs to exactly one tile."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return False
    r, c = rows.mean() + 0.5, cols.mean() + 0.5
    rs, cs = core_slices
    return rs.start <= r < rs.stop and cs.start <= c < cs.stop


def touches_edge(mask: np.ndarray) -> bool:
    """True when a (H, W) bool mask reaches the outermost row or column of its tile (pixels outside the scene are
    never set, so this means cut by a seam, not by the scene edge)."""
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def largest_polygon(geom):
    """The largest Polygon of a (Multi)Polygon or collection: one ship is one polygon, fragments are noise."""
    if geom is None or geom.is_empty:
        return None
    if geom.geom_type == "Polygon":
        return geom
    polys = [g for g in getattr(geom, "geoms", []) if g.geom_type == "Polygon" and not g.is_empty]
    nested = [largest_polygon(g) for g in getattr(geom, "geoms", []) if g.geom_type != "Polygon"]
    polys += [g for g in nested if g is not None]
    return max(polys, key=lambda g: g.area) if polys else None


def merge_parts(parts: list[Part], pixel_size: float, overlap: float = MERGE_OVERLAP) -> list[Part]:
    """Union detections of one ship across neighbouring tiles.

    Two parts are one ship when their IoU or intersection-over-smaller exceeds ``overlap``, or when both were cut by
    a tile edge and they overlap or touch (within ``pixel_size``, CRS units; smoothing may open a hairline gap where a
    zero-halo seam cut a ship). Groups are closed transitively; a group keeps the union (a hairline gap closed
    by half a pixel), the max score and the lowest prompt index. Parts from user prompts are never merged: each prompt
    asks for its own ship. Returns the merged parts sorted as ``stable_order`` sorts them."""
    if not parts:
        return []
    geoms = np.array([p.geometry for p in parts], dtype=object)
    areas = shapely.area(geoms)
    parent = list(range(len(parts)))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    left, right = shapely.STRtree(geoms).query(geoms, predicate="dwithin", distance=pixel_size)
    for i, j in zip(left.tolist(), right.tolist()):
        if i >= j or parts[i].prompt >= 0 or parts[j].prompt >= 0:
            continue
        inter = shapely.intersection(geoms[i], geoms[j]).area
        union = areas[i] + areas[j] - inter
        same = (inter / union > overlap if union > 0 else False) or inter / max(min(areas[i], areas[j]), 1e-12) > overlap
        same = same or (parts[i].truncated and parts[j].truncated)  # dwithin already says they touch
        if same:
            parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(parts)):
        groups.setdefault(root(i), []).append(i)
    merged = []
    for members in groups.values():
        if len(members) == 1:
            merged.append(parts[members[0]])
            continue
        geom = shapely.union_all(geoms[members])
        if geom.geom_type != "Polygon":
            geom = geom.buffer(pixel_size / 2, join_style="mitre").buffer(-pixel_size / 2, join_style="mitre")
        merged.append(Part(largest_polygon(geom), max(parts[k].score for k in members),
                           any(parts[k].truncated for k in members), min(parts[k].prompt for k in members)))
    return [merged[k] for k in stable_order([m.geometry for m in merged], pixel_size)]


def stable_order(geoms, pixel_size: float) -> list[int]:
    """Indexes of ``geoms`` sorted north to south, then west to east, by centroid snapped to the pixel grid, so
    ids do not change with tile size, batch size or thread timing."""
    cents = shapely.centroid(np.asarray(geoms, dtype=object))
    x, y = shapely.get_x(cents), shapely.get_y(cents)
    keys = [(-round(yy / pixel_size), round(xx / pixel_size), k) for k, (xx, yy) in enumerate(zip(x, y))]
    return [k for *_, k in sorted(keys)]
