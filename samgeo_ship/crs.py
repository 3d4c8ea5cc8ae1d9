"""Coordinate transformations, built once per pair of CRSs: building a pyproj Transformer costs more than using it
on a ship's worth of points, and scenes, attributes and synthetic scenes ask for the same few pairs again and again."""

from __future__ import annotations

import functools

import numpy as np
import shapely
from pyproj import CRS, Transformer


@functools.lru_cache(maxsize=64)
def transformer(src, dst) -> Transformer:
    """A cached x/y-ordered (lon/lat, easting/northing) transformer from ``src`` to ``dst``: anything pyproj reads
    as a CRS and that hashes (a pyproj or rasterio CRS, "EPSG:4326", a WKT string)."""
    return Transformer.from_crs(CRS.from_user_input(src), CRS.from_user_input(dst), always_xy=True)


def reproject(geoms, src, dst):
    """Geometry (or an array of them) from ``src`` to ``dst``; the same objects where the CRSs are equal."""
    if src == dst:
        return geoms
    tr = transformer(src, dst)
    return shapely.transform(geoms, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
