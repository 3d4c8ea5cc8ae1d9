"""Synthetic harbour scenes with exact ship truth, written window by window so that any size fits in bounded memory.

Coast, quays and ships are vector geometry in the local UTM zone; every pixel is a pure function of position and seed.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import rasterio
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError
from rasterio.features import rasterize
from rasterio.transform import Affine
from rasterio.windows import Window, bounds as window_bounds, from_bounds, transform as window_transform
from shapely.affinity import affine_transform, rotate, translate
from shapely.geometry import Polygon, box
from shapely.geometry.polygon import orient

from samgeo_ship.atomic import atomic_file
from samgeo_ship.errors import fail

BAND_NAMES = {"s2": ("B04", "B03", "B02", "B08"), "rgb8": ("red", "green", "blue")}
TILE_PX = 512  # GeoTIFF block edge, px
SUPERSAMPLE = 4  # ships are rasterised at 4x and averaged, so their edges are anti-aliased
WATER_C, LAND_C, CONCRETE_C, QUAY_C = 0, 1, 2, 3
# Sentinel-2 L2A-like digital numbers per surface, bands (B04, B03, B02, B08), shaped (4, 1, 1) to broadcast.
_dn = lambda *v: np.array(v, np.float32)[:, None, None]  # noqa: E731
WATER, VEG, URBAN = _dn(330, 520, 680, 140), _dn(850, 1050, 820, 3200), _dn(2000, 1900, 1800, 2300)
CONCRETE, QUAY, DECK, GLINT = _dn(2300, 2250, 2200, 2400), _dn(3000, 2950, 2900, 2900), \
    _dn(4600, 4600, 4700, 4400), _dn(2600, 2700, 2900, 1500)
HULLS = np.array([[3600, 3600, 3700, 3500], [3400, 1900, 1700, 2900], [1700, 2000, 2600, 2300],
                  [2500, 2500, 2500, 2700]], np.float32)  # white, red, blue and grey hulls


@dataclass(frozen=True)
class SynthSpec:
    """What to draw. Sizes in px, distances in metres; ``crs=None`` means the UTM zone of ``center_lonlat``."""
    width: int = 1024
    height: int = 1024
    pixel_size_m: float = 10.0
    crs: str | None = None
    bands: str = "s2"  # "s2": 4 x uint16 (B04, B03, B02, B08); "rgb8": 3 x uint8
    n_ships: int = 40
    seed: int = 0
    seam_every_px: int = 512  # tile seam spacing; a few ships are centred on seams
    n_seam_ships: int = 3
    nodata_fraction: float = 0.08  # share of the scene in a nodata wedge along the west or east edge
    center_lonlat: tuple[float, float] = (5.35, 43.28)  # off Marseille
    noise_dn: float = 12.0  # sensor noise amplitude, Sentinel-2 digital numbers
    block_px: int = 512  # render window edge, px; the pixels do not depend on it


@dataclass(frozen=True)
class Ship:
    """One ship: ``hull`` in the scene's UTM CRS (metres), ``heading_deg`` the bow's compass bearing (0-360)."""
    ship_id: int
    hull: Polygon
    length_m: float
    beam_m: float
    heading_deg: float
    moored: bool
    crosses_seam: bool


@dataclass
class SceneTruth:
    """The ships and land of a scene (UTM) and the pixel grid (``crs``, ``transform``) they are drawn on."""
    spec: SynthSpec
    ships: list[Ship]
    utm_crs: CRS
    crs: CRS
    transform: Affine
    land: list[tuple[Polygon, int]]  # (polygon, surface class) in drawing order
    wedge: tuple[str, float, float] | None  # nodata wedge: side, width at the top and at the bottom (px)

    @property
    def n_ships(self) -> int:
        return len(self.ships)

    def to_px(self, geoms):
        """UTM geometry (or array of them) -> pixel coordinates (col, row)."""
        a = ~self.transform
        return affine_transform(_reproject(geoms, self.utm_crs, self.crs), [a.a, a.b, a.d, a.e, a.c, a.f])

    def px_to_utm(self, col: float, row: float) -> tuple[float, float]:
        x, y = self.transform @ (col, row)
        return _transformer(self.crs, self.utm_crs).transform(x, y) if self.crs != self.utm_crs else (x, y)

    def nodata_mask(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """True where the pixel centre is in the nodata wedge; global ``rows`` (h, 1) and ``cols`` (1, w)."""
        side, top, bottom = self.wedge
        edge = top + (bottom - top) * (rows + 0.5) / self.spec.height
        return (cols + 0.5 < edge) if side == "west" else (self.spec.width - cols - 0.5 < edge)


@functools.lru_cache(maxsize=32)
def _transformer(src: CRS, dst: CRS) -> Transformer:
    return Transformer.from_crs(src, dst, always_xy=True)


def _reproject(geoms, src: CRS, dst: CRS):
    if src == dst:
        return geoms
    tr = _transformer(src, dst)
    return shapely.transform(geoms, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def _grid(spec: SynthSpec, path) -> tuple[CRS, CRS, Affine]:
    """(UTM CRS, scene CRS, scene transform) centred on ``center_lonlat``, pixels ~``pixel_size_m`` on the ground."""
    lon, lat = spec.center_lonlat
    if not (-180 <= lon <= 180 and -80 <= lat <= 84):
        raise fail(path, f"centre {lon}, {lat} is outside the UTM zones")
    utm = CRS.from_epsg((32600 if lat >= 0 else 32700) + int((lon + 180) // 6) % 60 + 1)
    try:
        crs = CRS.from_user_input(spec.crs) if spec.crs else utm
    except CRSError:
        raise fail(path, f"unknown CRS {spec.crs!r}") from None
    ps, w, h = spec.pixel_size_m, spec.width, spec.height
    cx, cy = _transformer(CRS.from_epsg(4326), utm).transform(lon, lat)
    if crs == utm:  # snap the origin to the pixel grid, as UTM products do
        return utm, crs, Affine(ps, 0, round(cx / ps - w / 2) * ps, 0, -ps, round(cy / ps + h / 2) * ps)
    tr = _transformer(utm, crs)
    (tx, ty), (ex, _), (_, ny) = (tr.transform(cx + dx, cy + dy) for dx, dy in ((0, 0), (ps, 0), (0, ps)))
    dx, dy = ex - tx, ny - ty  # scene CRS units per pixel at the centre
    if not all(map(math.isfinite, (tx, ty, dx, dy))) or dx <= 0 or dy <= 0:
        raise fail(path, f"CRS {spec.crs!r} cannot hold a north-up scene at {lon}, {lat}")
    return utm, crs, Affine(dx, 0, tx - dx * w / 2, 0, -dy, ty + dy * h / 2)


def _hull(cx, cy, length_m, beam_m, heading_deg, pointed=True, span=None, width=1.0) -> Polygon:
    """Ship outline (metres): straight sides and a pointed or rounded bow toward ``heading_deg`` (compass).
    With ``span`` (stern, bow as fractions of the length) and ``width`` (fraction of the beam): a box on deck."""
    hl, hb, bow = length_m / 2, beam_m / 2, beam_m * (1.2 if pointed else 0.6)
    if span is None:
        t = np.linspace(0, 1, 7)
        bu, bv = (hl - bow + bow * t, hb * (1 - t**2)) if pointed else \
            (hl - bow + bow * np.sin(t * np.pi / 2), hb * np.cos(t * np.pi / 2))
        u = np.concatenate([[-hl, -hl + 0.04 * length_m], bu, bu[-2::-1], [-hl + 0.04 * length_m, -hl]])
        v = np.concatenate([[-0.8 * hb, -hb], -bv, bv[-2::-1], [hb, 0.8 * hb]])
    else:
        u, v = np.array(span)[[0, 1, 1, 0]] * length_m, np.array([-1, -1, 1, 1]) * hb * width
    s, c = math.sin(math.radians(heading_deg)), math.cos(math.radians(heading_deg))
    return Polygon(np.column_stack([cx + u * s + v * c, cy + u * c - v * s]))


def _ship_dims(rng) -> tuple[float, float]:
    """(length_m, beam_m): 60-300 m long, about half >= 200 m; length/beam 4-8 with the beam >= 9 m."""
    length = 60 + 240 * rng.random() ** 0.8
    return length, length / rng.uniform(4, min(8.0, max(4.0, length / 9)))


def _crosses_seam(px: Polygon, spec: SynthSpec) -> bool:
    """Whether a pixel-space outline straddles a multiple of ``seam_every_px`` inside the scene."""
    s, (x0, y0, x1, y1) = spec.seam_every_px, px.bounds
    return any(lo < k * s < hi and 0 < k * s < n for lo, hi, n in ((x0, x1, spec.width), (y0, y1, spec.height))
               for k in (math.floor(hi / s),))


class _Layout:
    """Places ships one by one, keeping each off land, nodata, the scene edge and the other ships."""

    def __init__(self, truth: SceneTruth, rng):
        self.truth, self.rng, self.ps = truth, rng, truth.spec.pixel_size_m
        self.land = shapely.union_all([g for g, _ in truth.land])
        shapely.prepare(self.land)
        side, top, bottom = truth.wedge or ("west", 0, 0)
        w, h = truth.spec.width, truth.spec.height
        self.nodata = Polygon([(x if side == "west" else w - x, y) for x, y in
                               ((-1, -1), (top, -1), (bottom, h + 1), (-1, h + 1))]).buffer(1.0)
        self.inner, self.cells = box(1, 1, w - 1, h - 1), {}

    def _cells(self, bounds, pad=0.0, k=500.0):
        x0, y0, x1, y1 = (int((b + d) // k) for b, d in zip(bounds, (-pad, -pad, pad, pad)))
        return [(i, j) for i in range(x0, x1 + 1) for j in range(y0, y1 + 1)]

    def add(self, cx, cy, length_m, beam_m, heading_deg, moored, land_gap_px, ship_gap_px) -> bool:
        """Place one ship (centre in UTM metres, gaps in px) if it fits; return whether it did."""
        hull = _hull(cx, cy, length_m, beam_m, heading_deg, pointed=self.rng.random() < 0.6)
        px, gap = self.truth.to_px(hull), ship_gap_px * self.ps
        if not self.inner.contains(px) or self.nodata.intersects(px) or \
                shapely.dwithin(self.land, hull, land_gap_px * self.ps):
            return False
        near = {id(g): g for c in self._cells(hull.bounds, gap) for g in self.cells.get(c, [])}
        if any(shapely.dwithin(g, hull, gap) for g in near.values()):
            return False
        for c in self._cells(hull.bounds):
            self.cells.setdefault(c, []).append(hull)
        self.truth.ships.append(Ship(self.truth.n_ships, hull, round(length_m, 2), round(beam_m, 2),
                                     heading_deg % 360, moored, _crosses_seam(px, self.truth.spec)))
        return True

    def scatter(self, count: int, pick: Callable, tries: int, land_gap_px=3.0, ship_gap_px=2.0) -> None:
        """Up to ``count`` unmoored ships at ``pick() -> (col, row, length_m, beam_m, heading_deg)``."""
        placed = 0
        for _ in range(tries):
            if placed >= count:
                break
            col, row, length, beam, heading = pick()
            placed += self.add(*self.truth.px_to_utm(col, row), length, beam, heading, False, land_gap_px, ship_gap_px)

    def moor(self, edges, count: int) -> None:
        """Rafts of 1-3 parallel ships along berth edges, 1-2 px from the quay and from each other."""
        rng, ps, placed = self.rng, self.ps, 0
        for p0, axis, normal, edge_len in edges:
            s = rng.uniform(0, 3) * ps
            while placed < count:
                dims = [_ship_dims(rng) for _ in range(int(rng.choice([1, 1, 2, 2, 3])))]
                reach, off = max(d[0] for d in dims), rng.uniform(1, 2) * ps
                if s + reach > edge_len:
                    break
                heading = math.degrees(math.atan2(axis[0], axis[1])) + 180 * (rng.random() < 0.5)
                for length, beam in dims:
                    c = p0 + axis * (s + reach / 2) + normal * (off + beam / 2)
                    if not self.add(c[0], c[1], length, beam, heading, True, land_gap_px=0.5, ship_gap_px=0.5):
                        break
                    placed, off = placed + 1, off + beam + rng.uniform(1, 2) * ps
                s += reach + rng.uniform(1, 4) * ps


def _coast(rng, bounds, ps) -> tuple[Polygon, Callable]:
    """Land along the north edge with a wavy shore, and ``shore_y(x)`` (metres)."""
    minx, miny, maxx, maxy = bounds
    w, h = maxx - minx, maxy - miny
    amps, waves = h * np.array([0.06, 0.025, 0.01, 0.004]), w * np.array([1.0, 0.37, 0.13, 0.05])
    phases, base = rng.uniform(0, 2 * np.pi, 4), maxy - h * rng.uniform(0.18, 0.28)

    def shore_y(x):
        return base - (amps * np.sin(2 * np.pi * np.asarray(x, float)[..., None] / waves + phases)).sum(axis=-1)
    xs = np.linspace(minx - 0.05 * w, maxx + 0.05 * w, int(np.clip(w / (4 * ps), 64, 5000)))
    return Polygon([(xs[0], maxy + 0.05 * h), *zip(xs, shore_y(xs)), (xs[-1], maxy + 0.05 * h)]), shore_y


def _harbour(rng, bounds, shore_y, ps, n_moored):
    """Terminals (concrete, a straight quay front) and piers along the shore: ([(polygon, class)], berth edges);
    a berth edge is (start point, unit axis, unit outward normal, length in metres)."""
    minx, maxx = bounds[0], bounds[2]
    w, shapes, edges, taken, capacity = maxx - minx, [], [], [], 0.0
    for _ in range(300):
        if capacity >= n_moored and len(taken) >= 2:
            break
        if rng.random() < 0.4:  # terminal: reclaimed land with a straight quay front
            length = rng.uniform(500, 1400)
            xa = rng.uniform(minx + 0.03 * w, maxx - 0.03 * w - length)
            xb, span, ys = xa + length, (xa - 150, xa + length + 150), shore_y(np.linspace(xa, xa + length, 50))
            front = ys.min() - rng.uniform(80, 300)
            parts = [(box(xa, front, xb, ys.max() + 100), CONCRETE_C), (box(xa, front, xb, front + 2 * ps), QUAY_C)]
            berths = [(np.array([xa + 2 * ps, front]), np.array([1.0, 0]), np.array([0, -1.0]), length - 4 * ps)]
        else:  # pier: a thin bright rectangle out from the shore
            length, width, az = rng.uniform(250, 700), rng.uniform(2, 3.5) * ps, math.radians(rng.uniform(155, 205))
            x = rng.uniform(minx + 0.03 * w, maxx - 0.03 * w)
            axis, normal = np.array([math.sin(az), math.cos(az)]), np.array([math.cos(az), -math.sin(az)])
            root = np.array([x, float(shore_y(x))]) - 60 * axis
            ends = (root, root + (length + 60) * axis)
            span = (x - abs(axis[0]) * length - 400, x + abs(axis[0]) * length + 400)
            parts = [(Polygon([ends[0] + normal * width / 2, ends[1] + normal * width / 2,
                               ends[1] - normal * width / 2, ends[0] - normal * width / 2]), QUAY_C)]
            berths = [(root + (60 + 3 * ps) * axis + side * width / 2, axis, side, length - 3 * ps)
                      for side in (normal, -normal)]
        if not any(span[0] < b and a < span[1] for a, b in taken):
            taken.append(span)
            shapes, edges, capacity = shapes + parts, edges + berths, capacity + sum(e[3] for e in berths) / 250
    return shapes, edges


def _island(rng, bounds, avoid) -> Polygon | None:
    """A lobed island in the open water, or None where it would touch ``avoid``."""
    minx, miny, maxx, maxy = bounds
    w, h = maxx - minx, maxy - miny
    r = min(0.09 * min(w, h), 4000) * rng.uniform(0.45, 1)
    cx, cy = rng.uniform(minx + 0.2 * w, maxx - 0.2 * w), rng.uniform(miny + 0.15 * h, miny + 0.55 * h)
    th = np.linspace(0, 2 * np.pi, 90, endpoint=False)
    rad = r * (1 + (np.array([0.25, 0.12, 0.05]) * np.sin(np.array([3, 5, 11]) * th[:, None] +
                                                         rng.uniform(0, 2 * np.pi, 3))).sum(axis=1))
    island = Polygon(np.column_stack([cx + rad * np.cos(th), cy + rad * np.sin(th)]))
    return None if island.intersects(avoid) else island


def plan_scene(spec: SynthSpec, path="scene") -> SceneTruth:
    """Lay out land, quays and ships (vector only; deterministic for ``spec.seed``). ``path`` names errors."""
    if spec.width < 16 or spec.height < 16 or spec.bands not in BAND_NAMES:
        raise fail(path, f"scene {spec.width}x{spec.height} px {spec.bands!r}: need >= 16x16 px and bands "
                         f"{' or '.join(BAND_NAMES)}")
    if not (spec.pixel_size_m > 0 and spec.n_ships >= 0 and spec.seam_every_px >= 1 and spec.block_px >= 1
            and 0 <= spec.nodata_fraction < 0.5):
        raise fail(path, "pixel size, ship count, seam spacing, block size or nodata fraction is out of range")
    utm, crs, transform = _grid(spec, path)
    rng, ps, n, w, h = np.random.default_rng(spec.seed), spec.pixel_size_m, spec.n_ships, spec.width, spec.height
    mean, skew = spec.nodata_fraction * w, rng.uniform(0.2, 0.8)
    wedge = ("west" if rng.random() < 0.5 else "east", mean * (1 - skew), mean * (1 + skew)) if mean > 0 else None
    truth = SceneTruth(spec, [], utm, crs, transform, [], wedge)
    a = transform
    bounds = _reproject(affine_transform(shapely.segmentize(box(0, 0, w, h), max(w, h) / 32),
                                         [a.a, a.b, a.d, a.e, a.c, a.f]), crs, utm).bounds
    land, shore_y = _coast(rng, bounds, ps)
    structures, edges = _harbour(rng, bounds, shore_y, ps, round(0.4 * n))
    island = _island(rng, bounds, shapely.union_all([land] + [g for g, _ in structures]).buffer(50 * ps))
    shapes = [(land, LAND_C)] + ([(island, LAND_C)] if island and rng.random() < 0.6 else []) + structures
    if rng.random() < 0.5:  # the coast on the south side instead: turn the shore half a turn about the centre
        c = np.array([(bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2])
        shapes = [(rotate(g, 180, origin=tuple(c)), k) for g, k in shapes]
        edges = [(2 * c - p, -ax, -nrm, length) for p, ax, nrm, length in edges]
    truth.land.extend(shapes)
    layout, s = _Layout(truth, rng), spec.seam_every_px
    seams = (np.arange(s, w, s), np.arange(s, h, s))

    def on_seam():  # a vertical or horizontal seam line, or a seam corner
        kind = rng.integers(3) if len(seams[0]) and len(seams[1]) else (1 if len(seams[1]) else 0)
        col = float(rng.choice(seams[0])) if kind != 1 else rng.uniform(0, w)
        row = float(rng.choice(seams[1])) if kind != 0 else rng.uniform(0, h)
        return col, row, *_ship_dims(rng), rng.uniform(0, 360)

    def near_nodata():  # 1.5-4 px outside the wedge edge, pushed out of it along the edge normal
        side, top, bottom = wedge
        sign, t = (1.0 if side == "west" else -1.0), rng.uniform(0.1, 0.9)
        normal = np.array([sign * h, -(bottom - top)]) / math.hypot(h, bottom - top)
        edge = np.array([top + (bottom - top) * t if side == "west" else w - top - (bottom - top) * t, h * t])
        dims, heading = _ship_dims(rng), rng.uniform(0, 360)
        px = truth.to_px(_hull(*truth.px_to_utm(*edge), *dims, heading))
        depth = -min((np.asarray(px.exterior.coords) - edge) @ normal)
        return *(edge + normal * (depth + rng.uniform(1.5, 4))), *dims, heading

    if len(seams[0]) or len(seams[1]):
        layout.scatter(min(spec.n_seam_ships, n), on_seam, 300, land_gap_px=1.5)
    if wedge:
        layout.scatter(min(2, n - truth.n_ships), near_nodata, 100, land_gap_px=1.5)
    layout.moor(edges, round(0.4 * n))
    layout.scatter(n - truth.n_ships, lambda: (rng.uniform(0, w), rng.uniform(0, h), *_ship_dims(rng),
                                               rng.uniform(0, 360)), 80 * max(n - truth.n_ships, 0))
    return truth


# Pixels: every value below depends only on the global (row, col), the seed and a salt, never on the window.
def _hash(rows: np.ndarray, cols: np.ndarray, seed: int, salt: int) -> np.ndarray:
    """64 pseudo-random bits per (row, col) (a splitmix64 finaliser); ``rows`` and ``cols`` broadcast."""
    x = rows.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) ^ cols.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
    x = x ^ np.uint64((seed * 0x632BE59BD9B4E019 + salt * 0x85EBCA77C2B2AE63) % 2**64)
    for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
        x = (x ^ (x >> np.uint64(shift))) * np.uint64(mult)
    return x ^ (x >> np.uint64(31))


def _unit(bits: np.ndarray, k: int = 0) -> np.ndarray:
    """The k-th 16-bit slice of ``bits`` as float32 in [0, 1]."""
    return ((bits >> np.uint64(16 * k)) & np.uint64(0xFFFF)).astype(np.float32) / np.float32(65535)


def _value_noise(win: Window, cell_px: int, seed: int, salt: int) -> np.ndarray:
    """Smooth noise in [-1, 1] on a lattice of ``cell_px`` px, shaped (h, w) like the window."""
    def axis(start, n):
        t = np.arange(start, start + n) / cell_px
        i = np.floor(t).astype(np.int64)
        f = (t - i).astype(np.float32)
        return i, f * f * (3 - 2 * f)
    (ri, rf), (ci, cf) = axis(win.row_off, win.height), axis(win.col_off, win.width)
    li, lj = np.arange(ri[0], ri[-1] + 2), np.arange(ci[0], ci[-1] + 2)
    lattice = _unit(_hash(li[:, None], lj[None, :], seed, salt)) * 2 - 1
    rows = lattice[ri - li[0]] * (1 - rf)[:, None] + lattice[ri - li[0] + 1] * rf[:, None]
    return rows[:, ci - lj[0]] * (1 - cf) + rows[:, ci - lj[0] + 1] * cf


class _Painter:
    """Paints windows of a planned scene: land and ships in the scene CRS, indexed for per-window queries."""

    def __init__(self, truth: SceneTruth):
        t, self.truth = truth, truth
        self.ground, self.ground_cls = _reproject(np.array([g for g, _ in t.land]), t.utm_crs, t.crs), \
            [k for _, k in t.land]
        centres = [shapely.minimum_rotated_rectangle(s.hull).centroid.coords[0] for s in t.ships]
        decks = [_hull(*c, s.length_m, s.beam_m, s.heading_deg, span=(-0.44, -0.3), width=0.7)
                 for s, c in zip(t.ships, centres)]  # a deck house near the stern
        shadows = [translate(s.hull, -o, o) for s in t.ships  # the sun in the south-east
                   for o in (max(0.3 * s.beam_m, 0.5 * t.spec.pixel_size_m),)]
        self.hulls, self.decks, self.shadows = (_reproject(np.array(g, dtype=object), t.utm_crs, t.crs)
                                                for g in ([s.hull for s in t.ships], decks, shadows))
        self.ground_tree, self.ship_tree = shapely.STRtree(self.ground), \
            shapely.STRtree(shapely.union(self.hulls, self.shadows))
        rng = np.random.default_rng([t.spec.seed, 2])
        self.colours = (HULLS[rng.integers(0, len(HULLS), t.n_ships)] *
                        rng.uniform(0.6, 1.15, (t.n_ships, 1))).clip(1250, 4900).astype(np.float32)

    def paint(self, win: Window) -> np.ndarray:
        """Sentinel-2-like digital numbers (4, h, w) float32 of one window; nodata is 0."""
        spec, h, w, tr = self.truth.spec, win.height, win.width, self.truth.transform
        rows, cols = np.arange(win.row_off, win.row_off + h)[:, None], np.arange(win.col_off, win.col_off + w)[None]
        area = box(*window_bounds(win, tr))
        idx = np.sort(self.ground_tree.query(area))
        cls = rasterize(((self.ground[i], self.ground_cls[i]) for i in idx), (h, w), transform=window_transform(
            win, tr), fill=WATER_C, dtype="uint8") if len(idx) else np.zeros((h, w), np.uint8)
        noise = functools.partial(_value_noise, win, seed=spec.seed)
        white = np.stack([_unit(_hash(rows, cols, spec.seed, 4), k) for k in range(4)]) * 2 - 1
        soft = 0.6 * noise(256, salt=1) + 0.3 * noise(64, salt=2) + 0.1 * noise(16, salt=3)
        dn = WATER * (1 + 0.2 * soft) + np.float32(spec.noise_dn) * white
        if cls.any():
            mix = np.clip(0.5 + 0.8 * noise(128, salt=5) + 0.4 * noise(20, salt=6), 0, 1)
            surfaces = {LAND_C: (VEG * (1 - mix) + URBAN * mix) * (1 + 0.15 * noise(6, salt=7)),
                        CONCRETE_C: CONCRETE * (1 + 0.2 * noise(3, salt=10)) +  # container stacks
                        250 * np.stack([noise(5, salt=11 + b) for b in range(4)]),
                        QUAY_C: QUAY * (1 + 0.03 * soft)}
            for k, value in surfaces.items():
                dn = np.where(cls == k, value + 3 * np.float32(spec.noise_dn) * white, dn)
        glint_bits = _hash(rows, cols, spec.seed, 8)
        glint = (cls == WATER_C) & (_unit(glint_bits) < 0.004 * np.clip(noise(300, salt=9), 0, 1) ** 2)
        dn = dn + GLINT * glint * (0.4 + 0.6 * _unit(glint_bits, 1))
        dn = self._ships(dn, win, area, cls == WATER_C, white)
        if self.truth.wedge:
            dn[:, self.truth.nodata_mask(rows, cols)] = 0
        return dn

    def _ships(self, dn, win, area, water, white):
        """Blend hulls, deck houses and shadows, each anti-aliased in its own small window, into ``dn``."""
        h, w, ss, tr = win.height, win.width, SUPERSAMPLE, self.truth.transform
        (hull, deck, shade), paint = np.zeros((3, h, w), np.float32), np.zeros((4, h, w), np.float32)
        for i in np.sort(self.ship_tree.query(area)):
            box_px = from_bounds(*shapely.union(self.hulls[i], self.shadows[i]).bounds, transform=tr)
            c0, r0 = max(math.floor(box_px.col_off), win.col_off), max(math.floor(box_px.row_off), win.row_off)
            c1 = min(math.ceil(box_px.col_off + box_px.width), win.col_off + w)
            r1 = min(math.ceil(box_px.row_off + box_px.height), win.row_off + h)
            if c1 <= c0 or r1 <= r0:
                continue
            fine = window_transform(Window(c0, r0, c1 - c0, r1 - r0), tr) @ Affine.scale(1 / ss)
            cover = [rasterize([(g[i], 1)], ((r1 - r0) * ss, (c1 - c0) * ss), transform=fine, dtype="uint8")
                     .reshape(r1 - r0, ss, c1 - c0, ss).sum(axis=(1, 3), dtype=np.float32) / ss**2
                     for g in (self.hulls, self.decks, self.shadows)]
            at = np.s_[r0 - win.row_off:r1 - win.row_off, c0 - win.col_off:c1 - win.col_off]
            hull[at] += cover[0]
            deck[at] += cover[1]
            shade[at] += cover[2]
            paint[(slice(None), *at)] += self.colours[i][:, None, None] * np.clip(cover[0] - cover[1], 0, 1)
        dn = dn * (1 - 0.45 * np.clip(shade - hull, 0, 1) * water)
        return dn * (1 - hull) + paint + 2 * np.float32(self.truth.spec.noise_dn) * white * (hull - deck) + DECK * deck


def _windows(width: int, height: int, block: int):
    """Render windows, grouped so that each GeoTIFF tile is finished before the next one starts."""
    outer = TILE_PX * -(-block // TILE_PX)
    for r0 in range(0, height, outer):
        for c0 in range(0, width, outer):
            for r in range(r0, min(r0 + outer, height), block):
                for c in range(c0, min(c0 + outer, width), block):
                    yield Window(c, r, min(block, c0 + outer - c, width - c), min(block, r0 + outer - r, height - r))


def _to_dtype(dn: np.ndarray, bands: str) -> np.ndarray:
    """Digital numbers -> uint16 (s2) or gamma-stretched uint8 RGB; a valid pixel is never 0, the nodata value."""
    if bands == "s2":
        out = np.clip(np.rint(dn), 1, 65535).astype(np.uint16)
    else:
        out = np.clip(np.rint(255 * np.clip(dn[:3] / 4500, 0, 1) ** 0.6), 1, 255).astype(np.uint8)
    out[:, dn[0] == 0] = 0
    return out


def write_raster(truth: SceneTruth, path, progress: Callable[[int, int], None] | None = None) -> None:
    """Paint the scene window by window into a tiled, deflate-compressed GeoTIFF at ``path`` (atomically).
    ``progress(done, total)`` is called after each window."""
    spec, names = truth.spec, BAND_NAMES[truth.spec.bands]
    profile = dict(driver="GTiff", width=spec.width, height=spec.height, count=len(names), crs=truth.crs,
                   dtype="uint16" if spec.bands == "s2" else "uint8", transform=truth.transform, nodata=0,
                   tiled=True, blockxsize=TILE_PX, blockysize=TILE_PX, compress="deflate", predictor=2,
                   BIGTIFF="IF_SAFER", **({"photometric": "RGB"} if spec.bands == "rgb8" else {}))
    painter, windows = _Painter(truth), list(_windows(spec.width, spec.height, spec.block_px))
    # Tiles are written whole, so a bigger block cache would only hold finished tiles in memory.
    with atomic_file(path) as tmp, rasterio.Env(GDAL_CACHEMAX=64):
        with rasterio.open(tmp, "w", **profile) as dst:
            for i, name in enumerate(names, start=1):
                dst.set_band_description(i, name)
            for done, win in enumerate(windows, start=1):
                dst.write(_to_dtype(painter.paint(win), spec.bands), window=win)
                if progress:
                    progress(done, len(windows))


def write_truth(truth: SceneTruth, path) -> None:
    """The ships as a GeoJSON FeatureCollection in WGS84 (RFC 7946: lon/lat, counter-clockwise rings), atomically."""
    hulls = _reproject(np.array([s.hull for s in truth.ships], dtype=object), truth.utm_crs, CRS.from_epsg(4326))
    features = [{"type": "Feature", "id": s.ship_id, "geometry": {"type": "Polygon", "coordinates": [
                    [[round(x, 8), round(y, 8)] for x, y in orient(g, 1.0).exterior.coords]]},
                 "properties": {"ship_id": s.ship_id, "length_m": s.length_m, "beam_m": s.beam_m,
                                "heading_deg": round(s.heading_deg % 180, 2), "moored": s.moored,
                                "crosses_seam": s.crosses_seam}} for s, g in zip(truth.ships, hulls)]
    with atomic_file(path) as tmp:
        Path(tmp).write_text(json.dumps({"type": "FeatureCollection", "features": features}))


def make_scene(spec: SynthSpec, tif_path, truth_path=None, progress=None) -> SceneTruth:
    """Write the scene GeoTIFF and its truth GeoJSON (default: ``tif_path`` with .geojson); return the truth."""
    truth = plan_scene(spec, tif_path)
    write_raster(truth, tif_path, progress)
    write_truth(truth, Path(truth_path) if truth_path else Path(tif_path).with_suffix(".geojson"))
    return truth


SAMPLES = {"harbour_s2_16bit": SynthSpec(1024, 1024, bands="s2", n_ships=40, seed=1),
           "harbour_rgb": SynthSpec(768, 768, bands="rgb8", n_ships=30, seed=2),
           "harbour_4326": SynthSpec(768, 768, crs="EPSG:4326", bands="rgb8", n_ships=30, seed=3)}


def write_samples(out_dir) -> None:
    """Regenerate the sample scenes and their truth in ``out_dir`` (sample_tiles/README.md lists them)."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for name, spec in SAMPLES.items():
        make_scene(spec, Path(out_dir) / f"{name}.tif", Path(out_dir) / f"{name}.geojson")


if __name__ == "__main__":
    write_samples(sys.argv[1] if len(sys.argv) > 1 else "sample_tiles")
