"""The pixels of a planned synthetic scene, painted window by window so that any size fits in bounded memory.

Every value depends only on the global (row, col), the seed and a salt, never on the window.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import numpy as np
import rasterio
import shapely
from rasterio.features import rasterize
from rasterio.transform import Affine
from rasterio.windows import Window, bounds as window_bounds, from_bounds, transform as window_transform
from shapely.affinity import translate
from shapely.geometry import box

from samgeo_ship.atomic import atomic_file
from samgeo_ship.crs import reproject
from samgeo_ship.synthetic_scene import (BAND_NAMES, CONCRETE_C, LAND_C, QUAY_C, WATER_C, SceneTruth,
                                         hull_outline)

TILE_PX = 512  # GeoTIFF block edge, px
SUPERSAMPLE = 4  # ships are rasterised at 4x and averaged, so their edges are anti-aliased
# Sentinel-2 L2A-like digital numbers per surface, bands (B04, B03, B02, B08), shaped (4, 1, 1) to broadcast.
_dn = lambda *v: np.array(v, np.float32)[:, None, None]  # noqa: E731
WATER, VEG, URBAN = _dn(330, 520, 680, 140), _dn(850, 1050, 820, 3200), _dn(2000, 1900, 1800, 2300)
CONCRETE, QUAY, DECK, GLINT = _dn(2300, 2250, 2200, 2400), _dn(3000, 2950, 2900, 2900), \
    _dn(4600, 4600, 4700, 4400), _dn(2600, 2700, 2900, 1500)
HULLS = np.array([[3600, 3600, 3700, 3500], [3400, 1900, 1700, 2900], [1700, 2000, 2600, 2300],
                  [2500, 2500, 2500, 2700]], np.float32)  # white, red, blue and grey hulls


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
        self.ground, self.ground_cls = reproject(np.array([g for g, _ in t.land]), t.utm_crs, t.crs), \
            [k for _, k in t.land]
        centres = [shapely.minimum_rotated_rectangle(s.hull).centroid.coords[0] for s in t.ships]
        decks = [hull_outline(*c, s.length_m, s.beam_m, s.heading_deg, span=(-0.44, -0.3), width=0.7)
                 for s, c in zip(t.ships, centres)]  # a deck house near the stern
        shadows = [translate(s.hull, -o, o) for s in t.ships  # the sun in the south-east
                   for o in (max(0.3 * s.beam_m, 0.5 * t.spec.pixel_size_m),)]
        self.hulls, self.decks, self.shadows = (reproject(np.array(g, dtype=object), t.utm_crs, t.crs)
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
