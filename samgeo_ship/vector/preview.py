"""Quick-look PNGs: a decimated, scene-normalised view of a scene with ship outlines drawn on top."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from affine import Affine
from PIL import Image, ImageDraw

from samgeo_ship.atomic import atomic_file
from samgeo_ship.raster import to_uint8

PREVIEW_MAX_SIDE = 1600  # px; a decimated read keeps the preview's memory independent of the scene size
TRUTH_COLOUR = (0, 230, 64)
SHIP_COLOUR = (255, 32, 160)


def render_preview(scene, layers, path, max_side: int = PREVIEW_MAX_SIDE) -> Path:
    """Write a PNG of ``scene`` (an open Scene, which reads the pixels) with outlined ships.

    ``layers``: sequence of (geometries in the scene CRS, RGB colour); drawn in order. The PNG's long side is at
    most ``max_side`` px; nodata is black."""
    pixels, _ = scene.read_overview(max_side)  # nodata is 0, black
    h, w = pixels.shape[1:]
    rgb = to_uint8(pixels)
    rgb = np.repeat(rgb[:1], 3, axis=0) if rgb.shape[0] < 3 else rgb[:3]
    image = Image.fromarray(np.ascontiguousarray(rgb.transpose(1, 2, 0)))
    draw = ImageDraw.Draw(image)
    # Scene CRS -> preview pixels: inverse scene affine, then the decimation.
    to_px = Affine.scale(w / scene.width, h / scene.height) @ ~scene.transform
    for geoms, colour in layers:
        for geom in geoms:
            for ring in _rings(geom):
                pts = [to_px @ xy for xy in ring]
                if len(pts) > 1:
                    draw.line(pts + pts[:1], fill=tuple(colour), width=2)
    with atomic_file(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)


def _rings(geom):
    if geom is None or geom.is_empty:
        return
    for poly in getattr(geom, "geoms", [geom]):
        if poly.geom_type == "Polygon":
            yield list(poly.exterior.coords)
