"""Ship tables to files: RFC 7946 GeoJSON (WGS84) by default, GeoPackage, FlatGeobuf or GeoParquet (scene CRS) by
extension. Every file is written beside its target under a temporary name and renamed, so it appears whole or not at
all."""

from __future__ import annotations

import json
import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from samgeo_ship.atomic import atomic_file
from samgeo_ship.errors import fail

# The one table of output formats: name -> (file suffix, writer). detect picks by the output's suffix, batch by name.
FORMATS = {"geojson": (".geojson", "GeoJSON"), "gpkg": (".gpkg", "GPKG"), "fgb": (".fgb", "FlatGeobuf"),
           "parquet": (".parquet", "Parquet")}
SUFFIXES = {**{suffix: name for name, (suffix, _) in FORMATS.items()}, ".json": "geojson", ".geoparquet": "parquet"}
COORD_DECIMALS = 7  # ~1 cm in degrees: RFC 7946 recommends not carrying more precision than the data has


def check_output(path) -> Path:
    """Refuse, before any work is done, an output whose format is unknown or whose folder does not exist."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise fail(path, f"unknown output format {path.suffix!r} (use .geojson, .gpkg, .fgb or .parquet)")
    if not path.parent.is_dir():
        raise fail(path, "its folder does not exist")
    return path


def write_ships(ships: gpd.GeoDataFrame, path) -> Path:
    """Write ``ships`` to ``path`` in the format its extension names (see ``SUFFIXES``), atomically."""
    path = check_output(path)
    fmt = FORMATS[SUFFIXES[path.suffix.lower()]][1]
    with atomic_file(path) as tmp:
        if fmt == "GeoJSON":
            Path(tmp).write_text(json.dumps(geojson(ships), separators=(",", ":")))
        elif fmt == "Parquet":
            ships.to_parquet(tmp)
        else:
            # An empty table has no geometry type to infer; ships are always polygons.
            ships.to_file(tmp, driver=fmt, layer="ships", engine="pyogrio", geometry_type="Polygon")
    return path


def geojson(ships: gpd.GeoDataFrame) -> dict:
    """An RFC 7946 FeatureCollection: WGS84 lon/lat, exterior rings counter-clockwise (right-hand rule), holes
    clockwise, no ``crs`` member, feature ``id`` = ``ship_id``."""
    if len(ships) and ships.crs is None:
        raise ValueError("ships need a CRS to be written as GeoJSON")
    wgs84 = ships.to_crs("EPSG:4326") if len(ships) else ships
    geoms = np.asarray(wgs84.geometry.values, dtype=object)
    geoms = shapely.orient_polygons(shapely.transform(geoms, lambda xy: np.round(xy, COORD_DECIMALS)))
    props = wgs84.drop(columns=wgs84.geometry.name)
    features = []
    for k, geom in enumerate(geoms):
        row = {c: _plain(v) for c, v in props.iloc[k].items()}
        feature = {"type": "Feature", "geometry": shapely.geometry.mapping(geom), "properties": row}
        if "ship_id" in row:
            feature = {"type": "Feature", "id": row["ship_id"], **{k2: v for k2, v in feature.items() if k2 != "type"}}
        features.append(feature)
    return {"type": "FeatureCollection", "features": features}


def _plain(value):
    """numpy scalars -> JSON types; NaN -> null (JSON has no NaN)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
