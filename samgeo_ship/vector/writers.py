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
import shapely.affinity

from samgeo_ship.atomic import atomic_file
from samgeo_ship.errors import fail
from samgeo_ship.outputs import check_outputs

# The one table of output formats: name -> (file suffix, writer). detect picks by the output's suffix, batch by name.
FORMATS = {"geojson": (".geojson", "GeoJSON"), "gpkg": (".gpkg", "GPKG"), "fgb": (".fgb", "FlatGeobuf"),
           "parquet": (".parquet", "Parquet")}
SUFFIXES = {**{suffix: name for name, (suffix, _) in FORMATS.items()}, ".json": "geojson", ".geoparquet": "parquet"}
COORD_DECIMALS = 7  # ~1 cm in degrees: RFC 7946 recommends not carrying more precision than the data has


def check_output(path, inputs=()) -> Path:
    """Refuse, before any work is done, an output whose format is unknown, that is one of ``inputs``, or whose
    folder is missing or read-only (see samgeo_ship.outputs)."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise fail(path, f"unknown output format {path.suffix!r} (use .geojson, .gpkg, .fgb or .parquet)")
    return check_outputs([path], inputs)[0]


def write_ships(ships: gpd.GeoDataFrame, path) -> Path:
    """Write ``ships`` to ``path`` in the format its extension names (see ``SUFFIXES``), atomically."""
    path = check_output(path)
    fmt = FORMATS[SUFFIXES[path.suffix.lower()]][1]
    with atomic_file(path) as tmp:
        if fmt == "GeoJSON":
            Path(tmp).write_text(json.dumps(geojson(ships), separators=(",", ":")))
            return path
        try:
            if fmt == "Parquet":
                ships.to_parquet(tmp)
            else:  # an empty table has no geometry type to infer; ships are always polygons
                ships.to_file(tmp, driver=fmt, layer="ships", engine="pyogrio", geometry_type="Polygon")
        except OSError:
            raise
        except Exception as exc:  # pyogrio/pyarrow report a failed write (full disk, I/O error) in their own types
            raise fail(path, f"cannot be written ({str(exc).strip().splitlines()[0] if str(exc) else exc!r}); "
                             "nothing was changed") from None
    return path


def geojson(ships: gpd.GeoDataFrame) -> dict:
    """An RFC 7946 FeatureCollection: WGS84 lon/lat, exterior rings counter-clockwise (right-hand rule), holes
    clockwise, no ``crs`` member, feature ``id`` = ``ship_id``."""
    if len(ships) and ships.crs is None:
        raise ValueError("ships need a CRS to be written as GeoJSON")
    wgs84 = ships.to_crs("EPSG:4326") if len(ships) else ships
    geoms = np.asarray([_antimeridian(g) for g in wgs84.geometry.values], dtype=object)
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


def _antimeridian(geom):
    """A lon/lat polygon with every longitude in [-180, 180], split in two at the antimeridian where it crosses it
    (RFC 7946, 3.1.9): a ship of a scene across 180 degrees comes out of the reprojection with longitudes past 180,
    or with a ring that jumps from +179.9 to -179.9 the long way round the globe."""
    if geom is None or geom.is_empty:
        return geom
    west, _, east, _ = geom.bounds
    if east - west > 180:  # the ring jumps across the antimeridian: continue it past 180 instead
        geom = shapely.transform(geom, lambda xy: np.column_stack([np.where(xy[:, 0] < 0, xy[:, 0] + 360,
                                                                            xy[:, 0]), xy[:, 1]]))
        west, _, east, _ = geom.bounds
    if west >= -180 and east <= 180:
        return geom
    parts = []
    for turn in (-1, 0, 1):
        piece = geom.intersection(shapely.box(-180 + 360 * turn, -90, 180 + 360 * turn, 90))
        if not piece.is_empty:
            piece = shapely.affinity.translate(piece, -360 * turn)
            parts += [p for p in getattr(piece, "geoms", [piece]) if p.geom_type == "Polygon" and not p.is_empty]
    return shapely.MultiPolygon(parts) if len(parts) > 1 else parts[0]


def _plain(value):
    """numpy scalars -> JSON types; NaN -> null (JSON has no NaN)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
