"""Synthetic harbour scenes with exact ship truth: the plan (coast, quays and ships as vector geometry in the local
UTM zone) and the files. The pixels are painted window by window in synthetic_paint.py; the shared model of a scene
(SynthSpec, Ship, SceneTruth) is in synthetic_scene.py and re-exported here.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import shapely
from pyproj import CRS
from pyproj.exceptions import CRSError
from rasterio.transform import Affine
from shapely.affinity import affine_transform, rotate
from shapely.geometry import Polygon, box
from shapely.geometry.polygon import orient

from samgeo_ship.atomic import atomic_file
from samgeo_ship.crs import reproject, transformer
from samgeo_ship.errors import fail
from samgeo_ship.synthetic_paint import write_raster
from samgeo_ship.synthetic_scene import (BAND_NAMES, CONCRETE_C, LAND_C, QUAY_C, SceneTruth, Ship, SynthSpec,
                                         hull_outline)

__all__ = ["AERIAL_SAMPLES", "BAND_NAMES", "SAMPLES", "SceneTruth", "Ship", "SynthSpec", "make_scene", "plan_scene",
           "write_raster", "write_samples", "write_truth"]


def scene_grid(spec: SynthSpec, path) -> tuple[CRS, CRS, Affine]:
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
    cx, cy = transformer(CRS.from_epsg(4326), utm).transform(lon, lat)
    if crs == utm:  # snap the origin to the pixel grid, as UTM products do
        return utm, crs, Affine(ps, 0, round(cx / ps - w / 2) * ps, 0, -ps, round(cy / ps + h / 2) * ps)
    tr = transformer(utm, crs)
    (tx, ty), (ex, _), (_, ny) = (tr.transform(cx + dx, cy + dy) for dx, dy in ((0, 0), (ps, 0), (0, ps)))
    dx, dy = ex - tx, ny - ty  # scene CRS units per pixel at the centre
    if not all(map(math.isfinite, (tx, ty, dx, dy))) or dx <= 0 or dy <= 0:
        raise fail(path, f"CRS {spec.crs!r} cannot hold a north-up scene at {lon}, {lat}")
    return utm, crs, Affine(dx, 0, tx - dx * w / 2, 0, -dy, ty + dy * h / 2)


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
        hull = hull_outline(cx, cy, length_m, beam_m, heading_deg, pointed=self.rng.random() < 0.6)
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

    def moor(self, edges, count: int, most: int) -> None:
        """Rafts of 1-3 parallel ships along berth edges, 1-2 px from the quay and from each other: rafts start
        while fewer than ``count`` are moored, and a raft stops short where ``most`` are."""
        rng, ps, placed = self.rng, self.ps, 0
        for p0, axis, normal, edge_len in edges:
            s = rng.uniform(0, 3) * ps
            while placed < min(count, most):
                dims = [_ship_dims(rng) for _ in range(int(rng.choice([1, 1, 2, 2, 3])))]
                reach, off = max(d[0] for d in dims), rng.uniform(1, 2) * ps
                if s + reach > edge_len:
                    break
                heading = math.degrees(math.atan2(axis[0], axis[1])) + 180 * (rng.random() < 0.5)
                for length, beam in dims:
                    if placed >= most:
                        break
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
    a berth edge is (start point, unit axis, unit outward normal, length in metres). A small scene gets fewer or
    none: a terminal at most 0.6 of the scene wide, a pier at most 0.35 of it high."""
    minx, miny, maxx, maxy = bounds
    w, h, shapes, edges, taken, capacity = maxx - minx, maxy - miny, [], [], [], 0.0
    for _ in range(300):
        if capacity >= n_moored and len(taken) >= 2:
            break
        if rng.random() < 0.4:  # terminal: reclaimed land with a straight quay front
            length = rng.uniform(500, 1400)
            if length > 0.6 * w:
                continue
            xa = rng.uniform(minx + 0.03 * w, maxx - 0.03 * w - length)
            xb, span, ys = xa + length, (xa - 150, xa + length + 150), shore_y(np.linspace(xa, xa + length, 50))
            front = ys.min() - rng.uniform(80, 300)
            parts = [(box(xa, front, xb, ys.max() + 100), CONCRETE_C), (box(xa, front, xb, front + 2 * ps), QUAY_C)]
            berths = [(np.array([xa + 2 * ps, front]), np.array([1.0, 0]), np.array([0, -1.0]), length - 4 * ps)]
        else:  # pier: a thin bright rectangle out from the shore
            length, width, az = rng.uniform(250, 700), rng.uniform(2, 3.5) * ps, math.radians(rng.uniform(155, 205))
            if length > 0.35 * h:
                continue
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
    utm, crs, transform = scene_grid(spec, path)
    rng, ps, n, w, h = np.random.default_rng(spec.seed), spec.pixel_size_m, spec.n_ships, spec.width, spec.height
    mean, skew = spec.nodata_fraction * w, rng.uniform(0.2, 0.8)
    wedge = ("west" if rng.random() < 0.5 else "east", mean * (1 - skew), mean * (1 + skew)) if mean > 0 else None
    truth = SceneTruth(spec, [], utm, crs, transform, [], wedge)
    a = transform
    bounds = reproject(affine_transform(shapely.segmentize(box(0, 0, w, h), max(w, h) / 32),
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
        px = truth.to_px(hull_outline(*truth.px_to_utm(*edge), *dims, heading))
        depth = -min((np.asarray(px.exterior.coords) - edge) @ normal)
        return *(edge + normal * (depth + rng.uniform(1.5, 4))), *dims, heading

    if len(seams[0]) or len(seams[1]):
        layout.scatter(min(spec.n_seam_ships, n), on_seam, 300, land_gap_px=1.5)
    if wedge:
        layout.scatter(min(2, n - truth.n_ships), near_nodata, 100, land_gap_px=1.5)
    layout.moor(edges, round(0.4 * n), n - truth.n_ships)
    layout.scatter(n - truth.n_ships, lambda: (rng.uniform(0, w), rng.uniform(0, h), *_ship_dims(rng),
                                               rng.uniform(0, 360)), 80 * max(n - truth.n_ships, 0))
    if truth.n_ships < n:
        raise fail(path, f"only {truth.n_ships} of {n} ships fit in the water of a {w}x{h} px scene at "
                         f"{ps:g} m/px: ask for fewer ships or a bigger scene")
    return truth




def write_truth(truth: SceneTruth, path) -> None:
    """The ships as a GeoJSON FeatureCollection in WGS84 (RFC 7946: lon/lat, counter-clockwise rings), atomically."""
    hulls = reproject(np.array([s.hull for s in truth.ships], dtype=object), truth.utm_crs, CRS.from_epsg(4326))
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


AERIAL_SAMPLES = {"harbour_aerial": SynthSpec(1024, 1024, pixel_size_m=0.5, bands="rgb8", n_ships=30, seed=4,
                                               center_lonlat=(4.28, 51.9))}


def write_samples(out_dir) -> None:
    """Regenerate the sample scenes and their truth in ``out_dir`` (sample_tiles/README.md lists them)."""
    from samgeo_ship.synthetic_aerial_paint import make_aerial_scene  # it builds on this module: imported late

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for name, spec in SAMPLES.items():
        make_scene(spec, Path(out_dir) / f"{name}.tif", Path(out_dir) / f"{name}.geojson")
    for name, spec in AERIAL_SAMPLES.items():
        make_aerial_scene(spec, Path(out_dir) / f"{name}.tif", Path(out_dir) / f"{name}.geojson")


if __name__ == "__main__":
    write_samples(sys.argv[1] if len(sys.argv) > 1 else "sample_tiles")
