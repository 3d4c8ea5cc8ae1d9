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
# Intersection-over-smaller above which the weaker of two learned-prompter ships is a duplicate, chosen on the
# synthetic validation harbours (benchmarks/README.md): lower values gained nothing more.
SUPPRESS_OVERLAP = 0.2


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


class ShipMerger:
    """Groups parts into ships as tiles arrive, so the number of distinct ships found so far is known at any time
    (``len``), and the last count is the number of ships ``ships()`` returns.

    Two parts are one ship when their IoU or intersection-over-smaller exceeds ``overlap``, or when both were cut by
    a tile edge and they overlap or touch (within ``pixel_size``, CRS units; smoothing may open a hairline gap where a
    zero-halo seam cut a ship). Groups are closed transitively, so they do not depend on the order parts arrive in; a
    group keeps the union (a hairline gap closed by half a pixel), the max score and the lowest prompt index. A user
    prompt asks for its own ship: its parts (a box across a seam is segmented in each tile it reaches) are one ship,
    never merged with other parts.

    Candidates are found in a hash of ``cell`` sized squares (CRS units; default 64 pixels), so adding a part costs
    the same early and late in a scene of any size."""

    def __init__(self, pixel_size: float, overlap: float = MERGE_OVERLAP, cell: float | None = None):
        self.pixel_size = float(pixel_size)
        self.overlap = overlap
        self._cell = float(cell) if cell else 64 * self.pixel_size
        self._parts: list[Part] = []
        self._areas: list[float] = []
        self._parent: list[int] = []
        self._cells: dict[tuple[int, int], list[int]] = {}
        self._prompts: dict[int, int] = {}  # prompt index -> its first part
        self._ships = 0

    def __len__(self) -> int:
        return self._ships

    def add(self, parts) -> None:
        for part in parts:
            self._add(part)

    def _add(self, part: Part) -> None:
        j = len(self._parts)
        self._parts.append(part)
        self._areas.append(part.geometry.area)
        self._parent.append(j)
        self._ships += 1
        if part.prompt >= 0:
            self._union(self._prompts.setdefault(part.prompt, j), j)
            return
        x0, y0, x1, y1 = part.geometry.bounds
        keys = self._keys(x0, y0, x1, y1)
        d = self.pixel_size
        near = sorted({i for k in self._keys(x0 - d, y0 - d, x1 + d, y1 + d) for i in self._cells.get(k, ())})
        if near:
            geoms = np.array([self._parts[i].geometry for i in near], dtype=object)
            for i in np.asarray(near)[shapely.dwithin(geoms, part.geometry, d)].tolist():
                if self._same(i, j):
                    self._union(i, j)
        for k in keys:
            self._cells.setdefault(k, []).append(j)

    def _keys(self, x0, y0, x1, y1):
        c = self._cell
        cols, rows = range(int(x0 // c), int(x1 // c) + 1), range(int(y0 // c), int(y1 // c) + 1)
        return [(gx, gy) for gx in cols for gy in rows]

    def _same(self, i: int, j: int) -> bool:
        """Parts ``i`` and ``j`` lie within ``pixel_size`` of each other; are they one ship?"""
        a, b = self._parts[i], self._parts[j]
        if a.truncated and b.truncated:
            return True
        inter = shapely.intersection(a.geometry, b.geometry).area
        union = self._areas[i] + self._areas[j] - inter
        return (union > 0 and inter / union > self.overlap) or \
            inter / max(min(self._areas[i], self._areas[j]), 1e-12) > self.overlap

    def _root(self, i: int) -> int:
        parent = self._parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def _union(self, i: int, j: int) -> None:
        ri, rj = self._root(i), self._root(j)
        if ri != rj:
            self._parent[ri] = rj
            self._ships -= 1

    def above(self, score: float) -> "ShipMerger":
        """A merger of only the parts scored >= ``score``: the ships a detection at that score threshold returns
        (parts merge differently without the weaker ones)."""
        merger = ShipMerger(self.pixel_size, self.overlap, self._cell)
        merger.add(p for p in self._parts if p.score >= score)
        return merger

    def ships(self) -> list[Part]:
        """One Part per ship, sorted as ``stable_order`` sorts them."""
        groups: dict[int, list[int]] = {}
        for i in range(len(self._parts)):
            groups.setdefault(self._root(i), []).append(i)
        merged = [self._merge([self._parts[k] for k in members]) for members in groups.values()]
        return [merged[k] for k in stable_order([m.geometry for m in merged], self.pixel_size)]

    def _merge(self, members: list[Part]) -> Part:
        if len(members) == 1:
            return members[0]
        geom = shapely.union_all([m.geometry for m in members])
        if geom.geom_type != "Polygon":
            half = self.pixel_size / 2
            geom = geom.buffer(half, join_style="mitre").buffer(-half, join_style="mitre")
        return Part(largest_polygon(geom), max(m.score for m in members), any(m.truncated for m in members),
                    min(m.prompt for m in members))


def suppress_overlaps(ships: list[Part], overlap: float = SUPPRESS_OVERLAP) -> list[Part]:
    """``ships`` (merged, in their order) without each one whose intersection with a higher-scored kept ship exceeds
    ``overlap`` of the smaller's area: partial masks of one moored ship, or of a shoreline, that overlap without
    meeting the merge rule (MERGE_OVERLAP). For the learned prompter only: a user prompt is always its own ship."""
    if len(ships) < 2:
        return list(ships)
    geoms = np.array([s.geometry for s in ships], dtype=object)
    areas = shapely.area(geoms)
    tree = shapely.STRtree(geoms)
    kept = np.zeros(len(ships), bool)
    for i in sorted(range(len(ships)), key=lambda k: -ships[k].score):
        near = tree.query(geoms[i])
        near = near[kept[near]]
        inter = shapely.area(shapely.intersection(geoms[i], geoms[near]))
        kept[i] = not (inter > overlap * np.minimum(areas[i], areas[near])).any()
    return [s for s, k in zip(ships, kept) if k]


def stable_order(geoms, pixel_size: float) -> list[int]:
    """Indexes of ``geoms`` sorted north to south, then west to east, by centroid snapped to the pixel grid, so
    ids do not change with tile size, batch size or thread timing."""
    cents = shapely.centroid(np.asarray(geoms, dtype=object))
    x, y = shapely.get_x(cents), shapely.get_y(cents)
    keys = [(-round(yy / pixel_size), round(xx / pixel_size), k) for k, (xx, yy) in enumerate(zip(x, y))]
    return [k for *_, k in sorted(keys)]
