"""Ship attributes in metres and degrees, measured in the local UTM zone of each ship, so they are right whatever the
scene's CRS (UTM, geographic degrees, Web Mercator, whose units are cos(latitude) too long on the ground)."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely
from pyproj import Geod

from samgeo_ship.crs import reproject, transformer

_GEOD = Geod(ellps="WGS84")
COLUMNS = ["ship_id", "score", "area_m2", "length_m", "beam_m", "heading_deg", "lon", "lat", "scene", "model"]


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS84 UTM zone holding (lon, lat) (plain 6-degree zones; the Norway/Svalbard exceptions do
    not matter for a local metric frame)."""
    zone = min(int((lon + 180.0) // 6.0) + 1, 60)
    return (32600 if lat >= 0 else 32700) + zone


def measure(geometries: gpd.GeoSeries) -> dict[str, np.ndarray]:
    """Per polygon: ``area_m2``, ``length_m`` and ``beam_m`` (long and short side of the minimum rotated rectangle),
    ``heading_deg`` (azimuth of the long axis, degrees clockwise from true north, 0-180: a hull has no bow in a mask)
    and the centroid's ``lon``/``lat`` (WGS84). Each polygon is measured in the UTM zone of its own centroid."""
    if geometries.crs is None:
        raise ValueError("geometries need a CRS to be measured")
    geoms = np.asarray(geometries.values, dtype=object)
    n = len(geoms)
    out = {k: np.full(n, np.nan) for k in ("area_m2", "length_m", "beam_m", "heading_deg", "lon", "lat")}
    if n == 0:
        return out
    src = geometries.crs.to_wkt()
    lonlat = reproject(shapely.centroid(geoms), src, "EPSG:4326")
    out["lon"], out["lat"] = shapely.get_x(lonlat), shapely.get_y(lonlat)
    zones = np.array([utm_epsg(x, y) for x, y in zip(out["lon"], out["lat"])])
    for zone in np.unique(zones):
        k = np.nonzero(zones == zone)[0]
        utm = reproject(geoms[k], src, f"EPSG:{zone}")
        out["area_m2"][k] = shapely.area(utm)
        length, beam, heading = _rectangle_axes(utm, f"EPSG:{zone}")
        out["length_m"][k], out["beam_m"][k], out["heading_deg"][k] = length, beam, heading
    return out


def _rectangle_axes(utm: np.ndarray, zone: str):
    """Long side, short side and true azimuth (0-180) of each polygon's minimum rotated rectangle (UTM metres)."""
    rects = shapely.minimum_rotated_rectangle(utm)
    length, beam = np.zeros(len(utm)), np.zeros(len(utm))
    ends = np.zeros((len(utm), 2, 2))
    for i, rect in enumerate(rects):
        if rect.geom_type != "Polygon":  # a degenerate (line or point) mask: no meaningful axes
            ends[i] = np.nan
            continue
        p = np.asarray(rect.exterior.coords)[:4]
        e1, e2 = p[1] - p[0], p[2] - p[1]
        l1, l2 = np.hypot(*e1), np.hypot(*e2)
        axis = e1 if l1 >= l2 else e2
        length[i], beam[i] = max(l1, l2), min(l1, l2)
        centre = p.mean(axis=0)
        ends[i] = [centre - axis / 2, centre + axis / 2]
    # The azimuth between the axis ends on the ellipsoid is relative to true north, not UTM grid north (which
    # differs by the meridian convergence, up to ~3 degrees at the edge of a zone).
    t = transformer(zone, "EPSG:4326")
    lon0, lat0 = t.transform(ends[:, 0, 0], ends[:, 0, 1])
    lon1, lat1 = t.transform(ends[:, 1, 0], ends[:, 1, 1])
    azimuth = np.asarray(_GEOD.inv(lon0, lat0, lon1, lat1)[0], float)
    heading = np.where(np.isfinite(azimuth), np.mod(azimuth, 180.0), np.nan)
    return length, beam, heading


def ship_table(geometries: gpd.GeoSeries, scores, scene: str, model: str, ship_ids=None, **extra) -> gpd.GeoDataFrame:
    """The output table: one row per ship with ``COLUMNS`` (plus ``extra`` columns) and the geometry in its CRS.

    ``ship_ids`` default to 1..N in the given order."""
    n = len(geometries)
    m = measure(geometries)
    # Measurements rounded to 0.1 m, 1 m2 and 0.1 degree (positions to 1e-6 degree, about 0.1 m), finer than
    # any mask can tell: attribute tables and labels show no digits that mean nothing.
    data = {"ship_id": np.asarray(ship_ids if ship_ids is not None else np.arange(1, n + 1), np.int64),
            "score": np.asarray(scores, float).reshape(n),
            "area_m2": np.round(m["area_m2"]), "length_m": np.round(m["length_m"], 1),
            "beam_m": np.round(m["beam_m"], 1), "heading_deg": np.round(m["heading_deg"], 1),
            "lon": np.round(m["lon"], 6), "lat": np.round(m["lat"], 6),
            "scene": [scene] * n, "model": [model] * n, **{k: list(v) for k, v in extra.items()}}
    return gpd.GeoDataFrame(data, geometry=list(geometries.values), crs=geometries.crs)
