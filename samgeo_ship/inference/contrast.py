"""Contrast of each detected ship against the water around it in one band, usually near infrared (Sentinel-2 B08):
the clutter test of classical ship detectors (CFAR), applied after the model to drop its false alarms.

A hull is brighter than its water in near infrared wherever it floats; the learned prompter's false alarms on hazy
water, wakes and the texture of the sea are barely brighter than their surroundings, while the model's own red,
green and blue tell the two apart far less (benchmarks/README.md). The contrast of a ship is the median of the band
inside its polygon minus the lower quartile of a ring around it (1 to 3 pixels out), in the band's own units: the
lower quartile reads the water side of a ship moored at a bright quay. A difference, not a ratio: Sentinel-2 L2A
adds 1000 to every value since processing baseline 04.00 and haze adds its own offset, both of which squeeze a ratio
towards 1 and make it vary across scenes far more than the difference does."""

from __future__ import annotations

import numpy as np
from rasterio.features import rasterize

from samgeo_ship.raster import Scene, window_around

RING_PX = (1.0, 3.0)  # the ring's inner and outer distance from the ship, in scene pixels
# Minimum contrasts ``shipseg calibrate --contrast-band`` tries (band units: 100 is a reflectance of 0.01 in
# Sentinel-2 L2A; 0: no test).
CONTRAST_GRID = (0.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 1500.0, 2000.0, 3000.0)


def ring_contrast(scene: Scene, geometries) -> np.ndarray:
    """(N,) contrast of each polygon (scene CRS) in the scene's first selected band (raw values), read window by
    window around each ship (memory does not grow with the scene). NaN where the polygon or its ring covers no valid
    pixel centre (a ship at the scene's edge with nothing read around it)."""
    inner, outer = (d * scene.pixel_size[0] for d in RING_PX)
    out = np.full(len(geometries), np.nan)
    for i, geom in enumerate(geometries):
        window = window_around(geom.buffer(outer).bounds, scene.transform)
        data, valid = scene.read_raw(window)
        transform = scene.window_transform(window)
        shape = (int(window.height), int(window.width))
        inside = rasterize([geom], out_shape=shape, transform=transform).astype(bool) & valid
        ring = rasterize([geom.buffer(outer).difference(geom.buffer(inner))], out_shape=shape,
                         transform=transform).astype(bool) & valid
        if inside.any() and ring.any():
            band = data[0].astype(np.float64)
            out[i] = np.median(band[inside]) - np.percentile(band[ring], 25)
    return out


def keep(contrast: np.ndarray, minimum: float) -> np.ndarray:
    """(N,) bool: ships whose contrast reaches ``minimum`` (0: every ship); a ship with no contrast (NaN) is kept."""
    return np.isnan(contrast) | (contrast >= minimum) if minimum > 0 else np.ones(len(contrast), bool)
