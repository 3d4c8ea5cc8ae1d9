"""The vector model of a synthetic harbour scene, shared by its plan (synthetic.py) and its pixels (synthetic_paint.py):
what to draw (SynthSpec), the ships and land that were drawn (Ship, SceneTruth), and the geometry helpers both use."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pyproj import CRS
from rasterio.transform import Affine
from shapely.affinity import affine_transform
from shapely.geometry import Polygon

from samgeo_ship.crs import reproject, transformer

BAND_NAMES = {"s2": ("B04", "B03", "B02", "B08"), "rgb8": ("red", "green", "blue")}
WATER_C, LAND_C, CONCRETE_C, QUAY_C = 0, 1, 2, 3  # surface classes of SceneTruth.land


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
        return affine_transform(reproject(geoms, self.utm_crs, self.crs), [a.a, a.b, a.d, a.e, a.c, a.f])

    def px_to_utm(self, col: float, row: float) -> tuple[float, float]:
        x, y = self.transform @ (col, row)
        return transformer(self.crs, self.utm_crs).transform(x, y) if self.crs != self.utm_crs else (x, y)

    def nodata_mask(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """True where the pixel centre is in the nodata wedge; global ``rows`` (h, 1) and ``cols`` (1, w)."""
        side, top, bottom = self.wedge
        edge = top + (bottom - top) * (rows + 0.5) / self.spec.height
        return (cols + 0.5 < edge) if side == "west" else (self.spec.width - cols - 0.5 < edge)


def hull_outline(cx, cy, length_m, beam_m, heading_deg, pointed=True, span=None, width=1.0) -> Polygon:
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
