"""Masks -> polygons in a window's own affine transform, with the pixel staircase smoothed away."""

from __future__ import annotations

import numpy as np
import shapely
from affine import Affine

from samgeo_ship.labels import mask_to_polygon


def vectorise(mask: np.ndarray, transform: Affine, smooth: bool = True):
    """(H, W) bool mask -> (Multi)Polygon in the CRS of ``transform`` (None when the mask is empty).

    With ``smooth``, pixel-edge outlines are corner-cut (unit segments, then two rounds of edge midpoints) in pixel
    space before georeferencing: a rotated hull's staircase costs several IoU points on 20-px ships otherwise."""
    poly = mask_to_polygon(mask, Affine.identity())
    if poly is None:
        return None
    if smooth:
        poly = _smooth(poly)
    return georeference(poly, transform)


def georeference(geom, transform: Affine):
    """A geometry in pixel coordinates (x = column, y = row) -> the CRS of ``transform``."""
    a, b, c, d, e, f = transform[:6]
    return shapely.affinity.affine_transform(geom, [a, b, d, e, c, f])


def length_px(geom) -> float:
    """The long side of a geometry's minimum rotated rectangle, in its own units (pixels for a pixel-space one;
    0 for a degenerate one)."""
    rect = shapely.minimum_rotated_rectangle(geom)
    if rect.geom_type != "Polygon":
        return 0.0
    p = np.asarray(rect.exterior.coords)[:3]
    return float(max(np.hypot(*(p[1] - p[0])), np.hypot(*(p[2] - p[1]))))


def _smooth(poly):
    if poly.geom_type == "MultiPolygon":
        return shapely.MultiPolygon([_smooth(p) for p in poly.geoms])
    poly = poly.segmentize(1.0)
    ext = _midpoints(_midpoints(np.asarray(poly.exterior.coords)[:-1]))
    holes = [_midpoints(_midpoints(np.asarray(r.coords)[:-1])) for r in poly.interiors]
    out = shapely.Polygon(ext, holes)
    return out if out.is_valid else shapely.make_valid(out)


def _midpoints(ring: np.ndarray) -> np.ndarray:
    return (ring + np.roll(ring, -1, axis=0)) / 2
