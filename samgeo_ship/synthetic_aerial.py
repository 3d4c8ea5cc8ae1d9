"""Synthetic aerial harbour scenes (0.2-3 m pixels, 8-bit RGB) with exact ship truth: the plan.

What a scene holds is laid out here in pixel coordinates (col, row): the coast, quays, piers and marina pontoons,
land clutter that looks like ships from above (container rows, roofs, tanks), and ships of four kinds (large
cargo ships and tankers, workboats, small boats, barges) at anchor, under way with a wake, moored along quays,
rafted side by side, and in marina rows. The pixels are painted in synthetic_aerial_paint.py. Truth is each hull's
outline (superstructure included), written like the harbour scenes' (synthetic.write_truth).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.affinity import affine_transform
from shapely.geometry import Polygon, box

from samgeo_ship.crs import reproject
from samgeo_ship.errors import fail
from samgeo_ship.synthetic import scene_grid  # the same CRS and origin rules as the harbour scenes
from samgeo_ship.synthetic_scene import SceneTruth, Ship, SynthSpec

MIN_PIXEL_M, MAX_PIXEL_M = 0.15, 4.0
KINDS = ("large", "work", "small", "barge")


@dataclass
class Vessel:
    """One ship in pixel coordinates: centre, length and beam (px), bow direction (radians, image axes: 0 = east,
    pi/2 = south), kind, whether it is under way (a wake), and its painted colours and deck layout."""
    cx: float
    cy: float
    length: float
    beam: float
    angle: float
    kind: str
    moving: bool = False
    moored: bool = False
    seed: int = 0

    def frame(self, u, v) -> np.ndarray:
        """Ship frame (u toward the bow, v to starboard; px) -> image (col, row)."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        u, v = np.asarray(u, float), np.asarray(v, float)
        return np.column_stack([self.cx + u * c - v * s, self.cy + u * s + v * c])

    def outline(self) -> Polygon:
        """The hull: a transom stern, straight sides and a bow that narrows to a point (a barge: a box)."""
        hl, hb = self.length / 2, self.beam / 2
        if self.kind == "barge":
            u, v = np.array([-hl, hl, hl, -hl]), np.array([-hb, -hb, hb, hb])
        else:
            bow = min(self.length * (0.35 if self.kind == "small" else 0.18), self.beam * 2.2)
            t = np.linspace(0, 1, 8)[1:]
            bu, bv = hl - bow + bow * t, hb * (1 - t ** 1.8)
            stern = 0.03 * self.length
            u = np.concatenate([[-hl, -hl + stern, hl - bow], bu[:-1], [hl], bu[-2::-1], [hl - bow, -hl + stern, -hl]])
            v = np.concatenate([[-0.85 * hb, -hb, -hb], -bv[:-1], [0], bv[-2::-1], [hb, hb, 0.85 * hb]])
        return Polygon(self.frame(u, v))

    def part(self, u0, u1, w, dv=0.0) -> Polygon:
        """A deck box from u0 to u1 (fractions of the length from the centre) and w (fraction of the beam) wide."""
        u = np.array([u0, u1, u1, u0]) * self.length
        v = (np.array([-0.5, -0.5, 0.5, 0.5]) * w + dv) * self.beam
        return Polygon(self.frame(u, v))


@dataclass
class AerialPlan:
    """Everything to draw, in pixel coordinates, and the truth (ships in the scene's UTM zone)."""
    truth: SceneTruth
    water: tuple[float, float, float]
    land: list = field(default_factory=list)  # (polygon, surface): "sand", "concrete", "green", "quay", "pontoon"
    clutter: list = field(default_factory=list)  # (polygon, rgb, height px): containers, roofs, tanks
    vessels: list = field(default_factory=list)
    marinas: list = field(default_factory=list)  # (pontoon polygon, its left edge x): small boats moor across it
    sun: float = 0.0  # direction shadows fall (radians, image axes)
    haze: float = 0.0
    clouds: float = 0.0
    blur: float = 0.5  # px: the optics, or a coarser image resampled to these pixels


# Water of the real 1.5 m chips: dark teal and navy open sea, greener and lighter inshore, a grey glint sea.
WATER = np.array([[22, 50, 54], [12, 38, 48], [14, 28, 58], [40, 62, 70], [60, 95, 96], [95, 125, 112],
                  [30, 55, 45], [125, 135, 135]], np.float32)
WATER_P = np.array([0.2, 0.18, 0.12, 0.16, 0.12, 0.08, 0.08, 0.06])


def _dims(rng, kind: str) -> tuple[float, float]:
    """(length, beam) in metres for a kind of vessel."""
    if kind == "large":
        length = rng.uniform(90, 330)
        return length, length / rng.uniform(5.5, 7.5)
    if kind == "work":
        length = rng.uniform(18, 80)
        return length, length / rng.uniform(3.2, 5)
    if kind == "barge":
        length = rng.uniform(30, 100)
        return length, length / rng.uniform(3.5, 6)
    length = rng.uniform(6, 22)
    return length, length / rng.uniform(2.6, 3.6)


class _Placer:
    """Keeps vessels off land, the scene edge and each other."""

    def __init__(self, width, height, land):
        self.inner = box(1, 1, width - 1, height - 1)
        self.land = shapely.union_all(land) if land else Polygon()
        shapely.prepare(self.land)
        self.taken: list[Polygon] = []
        self.tree = None

    def fits(self, hull: Polygon, gap: float, land_gap: float) -> bool:
        if not self.inner.contains(hull) or shapely.dwithin(self.land, hull, land_gap):
            return False
        return not any(shapely.dwithin(g, hull, gap) for g in self.taken
                       if g.bounds[0] - gap < hull.bounds[2] and hull.bounds[0] - gap < g.bounds[2])

    def add(self, vessel: Vessel, gap: float, land_gap: float, out: list) -> bool:
        hull = vessel.outline()
        if hull.length < 1 or not self.fits(hull, gap, land_gap):
            return False
        self.taken.append(hull)
        out.append(vessel)
        return True


def _shore(rng, w, h):
    """Shore height (px from the top edge) at each column, or None for open sea: wavy, or straight (man-made)."""
    if rng.random() < 0.25:
        return None
    depth, straight = rng.uniform(0.1, 0.4) * h, rng.random() < 0.5
    amps = rng.uniform(0, 0.05, 3) * h * (0.15 if straight else 1)
    phases, freqs = rng.uniform(0, 2 * np.pi, 3), np.array([0.7, 1.9, 5.3]) / w

    def shore(x):
        x = np.asarray(x, float)[..., None]
        return depth + (amps * np.sin(2 * np.pi * freqs * x + phases)).sum(axis=-1)
    return shore


def _clutter(rng, area: Polygon, ps: float, out: list) -> None:
    """Things on land that look like ships from above: container rows, roofs, tanks, in ``area``."""
    if area.is_empty:
        return
    x0, y0, x1, y1 = area.bounds
    colours = np.array([[150, 52, 42], [45, 62, 120], [205, 205, 200], [120, 120, 118], [190, 110, 45],
                        [55, 100, 65], [160, 150, 130]], np.float32)
    for _ in range(int(np.clip(area.area * ps * ps / 15000 * rng.uniform(0.5, 1.5), 2, 60))):
        kind = rng.choice(["containers", "roof", "tanks"], p=[0.45, 0.4, 0.15])
        cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
        if kind == "containers":  # a yard: lanes of 12 x 2.5 m boxes
            lanes, per, horiz = int(rng.integers(2, 8)), int(rng.integers(3, 12)), rng.random() < 0.5
            for i in range(lanes):
                for j in range(per):
                    along, across = j * 12.6 / ps, i * 2.8 / ps
                    x, y, w, h = ((cx + along, cy + across, 12 / ps, 2.4 / ps) if horiz else
                                  (cx + across, cy + along, 2.4 / ps, 12 / ps))
                    r = box(x, y, x + w, y + h)
                    if area.contains(r) and rng.random() < 0.9:
                        out.append((r, colours[rng.integers(len(colours))] * rng.uniform(0.8, 1.15), 2.6 / ps))
        elif kind == "roof":  # a shed, long and narrow like a hull
            length, width = rng.uniform(15, 120) / ps, rng.uniform(8, 35) / ps
            r = shapely.affinity.rotate(box(cx - length / 2, cy - width / 2, cx + length / 2, cy + width / 2),
                                        rng.uniform(0, 180))
            if area.contains(r):
                out.append((r, colours[rng.integers(len(colours))] * rng.uniform(0.7, 1.2), rng.uniform(4, 12) / ps))
        else:
            rad = rng.uniform(6, 22) / ps
            for i in range(int(rng.integers(1, 6))):
                c = shapely.Point(cx + i * 2.4 * rad, cy).buffer(rad, 16)
                if area.contains(c):
                    out.append((c, np.array([200, 200, 195], np.float32) * rng.uniform(0.85, 1.1), rad * 0.8))


def _raft(placer, rng, ps, x, y, axis_angle, normal, kinds, out) -> float:
    """Ships side by side from (x, y) outward along ``normal`` (unit), parallel to ``axis_angle``, each starting at
    (x, y) along the axis; returns the length of berth the raft takes (px), 0 when none fitted."""
    dims = [tuple(d / ps for d in _dims(rng, kind)) for kind in kinds]
    reach, off = max(d[0] for d in dims), rng.uniform(0.5, 3) / ps
    along, placed = (math.cos(axis_angle), math.sin(axis_angle)), 0
    heading = axis_angle + (math.pi if rng.random() < 0.5 else 0.0)
    for kind, (length, beam) in zip(kinds, dims):
        cx = x + normal[0] * (off + beam / 2) + along[0] * reach / 2
        cy = y + normal[1] * (off + beam / 2) + along[1] * reach / 2
        v = Vessel(cx, cy, length, beam, heading, kind, moored=True, seed=int(rng.integers(2**31)))
        if not placer.add(v, 0.4 / ps, 0.3 / ps, out):
            break
        placed, off = placed + 1, off + beam + rng.uniform(0.5, 3) / ps
    return reach if placed else 0.0


def _harbour(rng, w, h, ps, shore, plan: AerialPlan, placer_land: list) -> list:
    """Quays, piers and marinas along the shore (land on top): returns berths (x, y, axis angle, normal, length)."""
    berths = []
    for _ in range(int(rng.integers(1, 4))):
        kind = rng.choice(["quay", "pier", "marina"], p=[0.45, 0.3, 0.25])
        x = rng.uniform(0.05, 0.85) * w
        if kind == "quay":
            length = min(rng.uniform(120, 700) / ps, 0.7 * w)
            front = float(shore(np.linspace(x, x + length, 20)).max()) + rng.uniform(5, 80) / ps
            quay = box(x, -1, x + length, front)
            plan.land.append((quay, "concrete"))
            plan.land.append((box(x, front - 2 / ps, x + length, front), "quay"))
            placer_land.append(quay)
            berths.append((x + 2 / ps, front, 0.0, (0.0, 1.0), length - 4 / ps))
            _clutter(rng, box(x + 5 / ps, 0, x + length - 5 / ps, front - 20 / ps), ps, plan.clutter)
        elif kind == "pier":
            length, width = rng.uniform(60, 400) / ps, rng.uniform(4, 14) / ps
            top = float(shore(x)) - 10 / ps
            pier = box(x, top, x + width, min(top + length, 0.9 * h))
            plan.land.append((pier, "quay"))
            placer_land.append(pier)
            for side, nx in ((x, -1.0), (x + width, 1.0)):
                berths.append((side, top + 12 / ps, math.pi / 2, (nx, 0.0), pier.bounds[3] - top - 14 / ps))
        else:  # marina: pontoons with small boats moored across them
            n, pitch, length = int(rng.integers(2, 6)), rng.uniform(30, 55) / ps, rng.uniform(40, 160) / ps
            top = float(shore(x)) - 5 / ps
            for i in range(n):
                px = x + i * pitch
                pontoon = box(px, top, px + 2.5 / ps, min(top + length, 0.9 * h))
                plan.land.append((pontoon, "pontoon"))
                placer_land.append(pontoon)
                plan.marinas.append((pontoon, px))
    return berths


def _moor(rng, ps, placer, berths, out, budget) -> None:
    """Rafts of 1-4 ships along each berth: big ships at quays, workboats and barges side by side."""
    for x, y, axis, normal, length in berths:
        s = rng.uniform(0, 20) / ps
        while s < length and len(out) < budget:
            kinds = [str(rng.choice(KINDS, p=[0.4, 0.3, 0.1, 0.2]))]
            if kinds[0] in ("work", "barge"):
                kinds *= int(rng.integers(1, 4))
            elif rng.random() < 0.3:
                kinds.append("large")
            ax, ay = math.cos(axis), math.sin(axis)
            reach = _raft(placer, rng, ps, x + ax * s, y + ay * s, axis, normal, kinds, out)
            s += (reach or 20 / ps) + rng.uniform(2, 40) / ps


def _marina(rng, ps, placer, marinas, out, budget) -> None:
    """Small boats moored across each pontoon, bow or stern to it, on both sides, 1-3 m apart."""
    for pontoon, left in marinas:
        top, bottom, right = pontoon.bounds[1] + 8 / ps, pontoon.bounds[3], pontoon.bounds[2]
        for side in (-1, 1):
            y = top + rng.uniform(0, 3) / ps
            while y < bottom and len(out) < budget:
                length, beam = (d / ps for d in _dims(rng, "small"))
                edge = left if side < 0 else right
                cx = edge + side * (rng.uniform(0.3, 1.5) / ps + length / 2)
                angle = (0.0 if side > 0 else math.pi) + (math.pi if rng.random() < 0.3 else 0.0)
                if rng.random() < 0.85:  # a few berths stand empty
                    placer.add(Vessel(cx, y + beam / 2, length, beam, angle, "small", moored=True,
                                      seed=int(rng.integers(2**31))), 0.3 / ps, 0.2 / ps, out)
                y += beam + rng.uniform(1, 3) / ps


def _open_water(rng, ps, placer, w, h, out, budget) -> None:
    """Ships at anchor or under way in open water; barges in tows of two to four side by side."""
    for _ in range(60 * max(budget - len(out), 0)):
        if len(out) >= budget:
            break
        kind = str(rng.choice(KINDS, p=[0.35, 0.3, 0.25, 0.1]))
        length, beam = (d / ps for d in _dims(rng, kind))
        if length < 6 or length > 0.9 * min(w, h):
            continue
        angle, cx, cy = rng.uniform(0, 2 * math.pi), rng.uniform(0, w), rng.uniform(0, h)
        if kind == "barge":
            normal = (-math.sin(angle), math.cos(angle))
            x0, y0 = cx - math.cos(angle) * length / 2, cy - math.sin(angle) * length / 2
            _raft(placer, rng, ps, x0, y0, angle, normal, ["barge"] * int(rng.integers(1, 4)), out)
            continue
        moving = rng.random() < (0.3 if kind == "large" else 0.5)
        placer.add(Vessel(cx, cy, length, beam, angle, kind, moving=moving, seed=int(rng.integers(2**31))),
                   (length if moving else 3 / ps), 8 / ps, out)


def _orient(plan: AerialPlan, w, h, transpose, flip_x, flip_y) -> None:
    """Turn the plan, drawn with land on top, into its final orientation (a transpose and flips)."""
    m = np.array([[0, 1], [1, 0]] if transpose else [[1, 0], [0, 1]], float)
    m = np.diag([-1.0 if flip_x else 1.0, -1.0 if flip_y else 1.0]) @ m
    t = np.array([w if flip_x else 0.0, h if flip_y else 0.0])
    coef = (m[0, 0], m[0, 1], m[1, 0], m[1, 1], t[0], t[1])
    plan.land = [(affine_transform(g, coef), k) for g, k in plan.land]
    plan.clutter = [(affine_transform(g, coef), c, z) for g, c, z in plan.clutter]
    for v in plan.vessels:
        v.cx, v.cy = m @ np.array([v.cx, v.cy]) + t
        d = m @ np.array([math.cos(v.angle), math.sin(v.angle)])
        v.angle = math.atan2(d[1], d[0])


def plan_aerial(spec: SynthSpec, path="scene") -> AerialPlan:
    """Lay out an aerial scene for ``spec`` (``spec.bands`` must be rgb8; ``n_ships`` is the most placed, fewer
    where they do not fit); deterministic for ``spec.seed``. ``path`` names errors."""
    ps, w, h = spec.pixel_size_m, spec.width, spec.height
    if spec.bands != "rgb8" or w < 64 or h < 64 or not MIN_PIXEL_M <= ps <= MAX_PIXEL_M or spec.n_ships < 0:
        raise fail(path, f"aerial scene {w}x{h} px at {ps:g} m {spec.bands!r}: need rgb8 bands, >= 64x64 px and "
                         f"pixels of {MIN_PIXEL_M:g}-{MAX_PIXEL_M:g} m")
    utm, crs, transform = scene_grid(spec, path)
    rng = np.random.default_rng([spec.seed, 21])
    transpose, flip_x, flip_y = (bool(b) for b in rng.integers(0, 2, 3))
    cw, ch = (h, w) if transpose else (w, h)  # the canonical frame: land along the top edge
    truth = SceneTruth(spec, [], utm, crs, transform, [], None)
    plan = AerialPlan(truth, tuple(WATER[rng.choice(len(WATER), p=WATER_P)] * rng.uniform(0.85, 1.15, 3)))
    plan.sun = rng.uniform(0, 2 * math.pi)
    plan.haze = float(rng.uniform(0, 0.35) if rng.random() < 0.4 else 0.0)
    plan.clouds = float(rng.uniform(0.05, 0.3) if rng.random() < 0.15 else 0.0)
    plan.blur = float(rng.uniform(0.4, 1.4))
    shore, solid, berths = _shore(rng, cw, ch), [], []
    if shore is not None:
        xs = np.linspace(-2, cw + 2, 80)
        land = Polygon([(-2, -2), *zip(xs, shore(xs)), (cw + 2, -2)]).buffer(0)
        plan.land.append((land, str(rng.choice(["sand", "concrete", "green"]))))
        solid.append(land)
        _clutter(rng, land.buffer(-10 / ps), ps, plan.clutter)
        berths = _harbour(rng, cw, ch, ps, shore, plan, solid)
    placer = _Placer(cw, ch, solid)
    budget = spec.n_ships
    _moor(rng, ps, placer, berths, plan.vessels, round(0.5 * budget))
    _marina(rng, ps, placer, plan.marinas, plan.vessels, round(0.8 * budget))
    _open_water(rng, ps, placer, cw, ch, plan.vessels, budget)
    _orient(plan, w, h, transpose, flip_x, flip_y)
    a = transform
    coef = [a.a, a.b, a.d, a.e, a.c, a.f]
    for i, v in enumerate(plan.vessels):
        hull = reproject(affine_transform(v.outline(), coef), crs, utm)
        truth.ships.append(Ship(i, hull, round(v.length * ps, 2), round(v.beam * ps, 2),
                                (90 + math.degrees(v.angle)) % 360, v.moored, False))
    return plan
