"""The pixels of a planned aerial scene (synthetic_aerial.py): 8-bit RGB like a 0.2-3 m satellite or aerial image.

Drawn at twice the scene's resolution and averaged down, so every edge is anti-aliased: water with waves, glint and
lighter shallows, land and its clutter with shadows, wakes, ship shadows, hulls with decks, hatches, containers
and superstructure, then clouds, haze, a slight blur and sensor noise. The whole scene is painted in memory: aerial
samples and training scenes are small (a 1024² scene is ~25 MB while painted).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image, ImageDraw, ImageFilter
from shapely.affinity import translate
from shapely.geometry import LineString, Polygon

from samgeo_ship.atomic import atomic_file
from samgeo_ship.synthetic import write_truth
from samgeo_ship.synthetic_aerial import AerialPlan, Vessel, plan_aerial
from samgeo_ship.synthetic_scene import BAND_NAMES, SceneTruth, SynthSpec

SS = 2  # supersampling
SURFACES = {"sand": (185, 170, 140), "concrete": (150, 150, 146), "green": (62, 78, 52), "quay": (178, 175, 168),
            "pontoon": (150, 138, 118)}
HULLS = np.array([[150, 55, 45], [112, 42, 36], [36, 36, 40], [36, 46, 72], [112, 112, 110], [52, 82, 58],
                  [205, 205, 198]], np.float32)
DECKS = np.array([[135, 62, 46], [62, 92, 66], [122, 116, 106], [125, 82, 56], [150, 150, 145]], np.float32)
BRIGHT = np.array([[225, 225, 220], [235, 232, 215], [200, 205, 210]], np.float32)
BOX_COLOURS = np.array([[160, 55, 45], [45, 65, 125], [215, 215, 210], [125, 125, 122], [195, 115, 50],
                        [60, 110, 70]], np.float32)


class _Canvas:
    """A float RGB image at SS times the scene's pixels, with polygon blending in scene pixel coordinates."""

    def __init__(self, width, height):
        self.rgb = np.zeros((height * SS, width * SS, 3), np.float32)

    def mask(self, geom):
        """(rows slice, cols slice, coverage 0-1) of ``geom`` on the fine grid, or None off the canvas."""
        if geom.is_empty:
            return None
        h, w = self.rgb.shape[:2]
        x0, y0, x1, y1 = (b * SS for b in geom.bounds)
        c0, r0, c1, r1 = max(int(x0), 0), max(int(y0), 0), min(int(x1) + 2, w), min(int(y1) + 2, h)
        if c1 <= c0 or r1 <= r0:
            return None
        img = Image.new("L", (c1 - c0, r1 - r0), 0)
        draw = ImageDraw.Draw(img)
        for part in getattr(geom, "geoms", [geom]):
            draw.polygon([(x * SS - c0, y * SS - r0) for x, y in part.exterior.coords], fill=255)
            for hole in part.interiors:
                draw.polygon([(x * SS - c0, y * SS - r0) for x, y in hole.coords], fill=0)
        return np.s_[r0:r1], np.s_[c0:c1], np.asarray(img, np.float32)[..., None] / 255

    def fill(self, geom, colour, alpha=1.0) -> None:
        m = self.mask(geom)
        if m is not None:
            rows, cols, cover = m
            a = cover * alpha
            self.rgb[rows, cols] = self.rgb[rows, cols] * (1 - a) + np.asarray(colour, np.float32) * a

    def shade(self, geom, darkness) -> None:
        m = self.mask(geom)
        if m is not None:
            rows, cols, cover = m
            self.rgb[rows, cols] *= 1 - darkness * cover


def _noise(rng, h, w, cell) -> np.ndarray:
    """Smooth noise in about [-1, 1], (h, w), on a lattice of ``cell`` px."""
    small = rng.uniform(-1, 1, (max(2, int(h / cell) + 2), max(2, int(w / cell) + 2))).astype(np.float32)
    return np.asarray(Image.fromarray(small, "F").resize((w, h), Image.BICUBIC), np.float32)


def _water(rng, plan: AerialPlan, h, w, ps) -> np.ndarray:
    """Water (h, w, 3) at the fine grid: colour drift, oriented waves, glint, lighter water along the shore."""
    base = np.asarray(plan.water, np.float32)
    drift = 0.6 * _noise(rng, h, w, 300 * SS) + 0.4 * _noise(rng, h, w, 60 * SS)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    phi, wavelength = rng.uniform(0, math.pi), rng.uniform(4, 25) / ps * SS
    warp = 6 * _noise(rng, h, w, wavelength * 4)
    waves = np.sin(2 * np.pi * (xx * math.cos(phi) + yy * math.sin(phi)) / wavelength + warp)
    waves *= 0.6 + 0.4 * _noise(rng, h, w, wavelength * 2)
    glint = rng.uniform(0, 1) ** 2 * (1 + np.clip(_noise(rng, h, w, 400 * SS), 0, 1))
    amp = rng.uniform(0.5, 4) + 20 * glint
    water = base * (1 + 0.08 * drift[..., None]) + (amp * waves)[..., None] * np.array([0.9, 1, 1], np.float32)
    return water


def _shallows(canvas: _Canvas, land_geoms, plan, ps) -> None:
    """Water near land turns lighter and greener (sand under shallow water)."""
    h, w = canvas.rgb.shape[:2]
    img = Image.new("L", (w // 4, h // 4), 0)
    draw = ImageDraw.Draw(img)
    for g in land_geoms:
        for part in getattr(g, "geoms", [g]):
            draw.polygon([(x * SS / 4, y * SS / 4) for x, y in part.exterior.coords], fill=255)
    near = img.filter(ImageFilter.GaussianBlur(max(2.0, 40 / ps * SS / 4))).resize((w, h), Image.BILINEAR)
    a = np.asarray(near, np.float32)[..., None] / 255 * 0.5
    canvas.rgb = canvas.rgb * (1 - a) + np.array([95, 130, 115], np.float32) * a


def _wake(canvas: _Canvas, v: Vessel, rng) -> None:
    """Foam behind a moving ship: a turbulent wake widening astern and fading, and the two arms of the bow wave."""
    n, reach, foam = 8, v.length * rng.uniform(0.8, 3), rng.uniform(0.25, 0.6)
    for i in range(n):
        u0, u1 = -v.length / 2 - reach * i / n, -v.length / 2 - reach * (i + 1) / n
        b0, b1 = v.beam * (0.5 + 0.6 * i / n), v.beam * (0.5 + 0.6 * (i + 1) / n)
        quad = v.frame([u0, u1, u1, u0], [-b0, -b1, b1, b0])
        canvas.fill(Polygon(quad), (205, 215, 215), foam * (1 - i / n) ** 2)
    arm = v.length * rng.uniform(0.3, 1.0)
    for side in (-1, 1):
        line = LineString(v.frame([v.length / 2, v.length / 2 - arm], [0, side * arm * 0.36]))
        canvas.fill(line.buffer(max(0.6, v.beam * 0.1)), (200, 210, 210), 0.15)


def _vessel(canvas: _Canvas, v: Vessel, sun, ps) -> None:
    """One vessel: its shadow, hull, deck and the kind's deck detail and superstructure, lit from ``sun``."""
    rng = np.random.default_rng(v.seed)
    dx, dy = math.cos(sun), math.sin(sun)
    freeboard = rng.uniform(1.5, 8 if v.kind == "large" else 3) / ps
    hull = v.outline()
    canvas.shade(translate(hull, dx * freeboard, dy * freeboard), 0.45)
    small = v.kind == "small"
    colour = BRIGHT[rng.integers(len(BRIGHT))] if small or rng.random() < 0.12 else HULLS[rng.integers(len(HULLS))]
    canvas.fill(hull, colour * rng.uniform(0.85, 1.1))
    deck = Vessel(v.cx, v.cy, v.length * 0.95, v.beam * 0.8, v.angle, v.kind).outline()
    deck_c = colour * 0.9 if small else DECKS[rng.integers(len(DECKS))] * rng.uniform(0.85, 1.1)
    canvas.fill(deck, deck_c)
    tall = []  # (part, colour, height px): what stands on deck and throws a shadow
    if v.kind == "large":
        style = rng.choice(["hatches", "tanker", "containers"], p=[0.4, 0.35, 0.25])
        if style == "hatches":
            n = max(2, int(v.length * ps / 22))
            hatch_c = DECKS[rng.integers(len(DECKS))] * rng.uniform(0.7, 1.2)
            for i in range(n):
                a = -0.32 + 0.7 * i / n
                canvas.fill(v.part(a + 0.01, a + 0.7 / n - 0.01, 0.72), hatch_c)
        elif style == "tanker":
            canvas.fill(v.part(-0.34, 0.4, 0.05), (170, 170, 165))
            canvas.fill(v.part(0.0, 0.03, 0.8), (160, 160, 155))
        else:
            rows = max(2, int(v.length * ps / 13))
            for i in range(rows):
                a = -0.33 + 0.72 * i / rows
                for j in range(3):
                    if rng.random() < 0.85:
                        tall.append((v.part(a, a + 0.72 / rows - 0.005, 0.25, -0.27 + 0.27 * j),
                                     BOX_COLOURS[rng.integers(len(BOX_COLOURS))], 2.6 / ps))
        tall.append((v.part(-0.47, -0.36, 0.9), BRIGHT[rng.integers(len(BRIGHT))], rng.uniform(12, 30) / ps))
        canvas.fill(v.part(0.38, 0.44, 0.5), deck_c * 1.2)  # forecastle
    elif v.kind == "work":
        a = rng.uniform(-0.2, 0.1)
        tall.append((v.part(a, a + 0.3, 0.75), BRIGHT[rng.integers(len(BRIGHT))], rng.uniform(4, 10) / ps))
    elif small:
        canvas.fill(v.part(-0.42, -0.15, 0.65), np.array([90, 95, 100], np.float32) * rng.uniform(0.6, 1.4))
        tall.append((v.part(-0.12, 0.18, 0.6), np.array([215, 215, 212]) if rng.random() < 0.6 else (45, 55, 75),
                     1.5 / ps))
    else:  # a barge: an open hold, empty or with a heap of sand or gravel
        canvas.fill(v.part(-0.44, 0.44, 0.82), np.array([60, 55, 50], np.float32) if rng.random() < 0.4 else
                    np.array([150, 125, 95], np.float32) * rng.uniform(0.7, 1.1))
    for part, c, height in tall:
        canvas.shade(translate(part, dx * height, dy * height).difference(hull), 0.4)
        canvas.shade(translate(part, dx * height * 0.3, dy * height * 0.3).intersection(hull), 0.3)
        canvas.fill(part, c)


def render(plan: AerialPlan) -> np.ndarray:
    """The scene's pixels, (3, h, w) uint8 (never 0: 0 is the nodata value)."""
    spec = plan.truth.spec
    ps, w, h = spec.pixel_size_m, spec.width, spec.height
    rng = np.random.default_rng([spec.seed, 22])
    canvas = _Canvas(w, h)
    canvas.rgb[:] = _water(rng, plan, h * SS, w * SS, ps)
    solid = [g for g, k in plan.land]
    if solid:
        _shallows(canvas, solid, plan, ps)
    dx, dy = math.cos(plan.sun), math.sin(plan.sun)
    for geom, kind in plan.land:
        canvas.fill(translate(geom, dx * 1.5 / ps, dy * 1.5 / ps), (30, 35, 35), 0.35 if kind != "sand" else 0.0)
        canvas.fill(geom, np.array(SURFACES[kind], np.float32) * rng.uniform(0.85, 1.1))
    tex = _noise(rng, h * SS, w * SS, 6 * SS)[..., None]
    landish = np.zeros((h * SS, w * SS, 1), np.float32)
    for geom, _ in plan.land:
        m = canvas.mask(geom)
        if m is not None:
            landish[m[0], m[1]] = np.maximum(landish[m[0], m[1]], m[2])
    canvas.rgb *= 1 + 0.06 * tex * landish
    for geom, colour, height in plan.clutter:
        canvas.shade(translate(geom, dx * height, dy * height), 0.4)
        canvas.fill(geom, colour)
    for v in plan.vessels:
        if v.moving:
            _wake(canvas, v, np.random.default_rng([v.seed, 1]))
    for v in plan.vessels:
        _vessel(canvas, v, plan.sun, ps)
    rgb = canvas.rgb.reshape(h, SS, w, SS, 3).mean(axis=(1, 3))
    if plan.clouds:
        cloud = np.clip((_noise(rng, h, w, 80 / ps) + 0.5 * _noise(rng, h, w, 20 / ps)) - (1 - plan.clouds) * 1.2,
                        0, 1)[..., None] * 2
        rgb = rgb * (1 - np.clip(cloud, 0, 0.95)) + 225 * np.clip(cloud, 0, 0.95)
    rgb = rgb * (1 - plan.haze) + np.array([150, 160, 170], np.float32) * plan.haze
    img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(plan.blur))
    out = np.asarray(img, np.float32) + rng.normal(0, 1.5, (h, w, 3)).astype(np.float32)
    return np.clip(np.rint(out), 1, 255).astype(np.uint8).transpose(2, 0, 1)


def write_aerial_raster(plan: AerialPlan, path) -> None:
    """The scene as a tiled, deflate-compressed 8-bit RGB GeoTIFF at ``path`` (atomically)."""
    truth: SceneTruth = plan.truth
    spec = truth.spec
    profile = dict(driver="GTiff", width=spec.width, height=spec.height, count=3, crs=truth.crs, dtype="uint8",
                   transform=truth.transform, nodata=0, tiled=True, blockxsize=256, blockysize=256,
                   compress="deflate", predictor=2, photometric="RGB")
    pixels = render(plan)
    with atomic_file(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            for i, name in enumerate(BAND_NAMES["rgb8"], start=1):
                dst.set_band_description(i, name)
            dst.write(pixels)


def make_aerial_scene(spec: SynthSpec, tif_path, truth_path=None) -> AerialPlan:
    """Write an aerial scene GeoTIFF and its truth GeoJSON (default: ``tif_path`` with .geojson); return the plan."""
    plan = plan_aerial(spec, tif_path)
    write_aerial_raster(plan, tif_path)
    write_truth(plan.truth, Path(truth_path) if truth_path else Path(tif_path).with_suffix(".geojson"))
    return plan
