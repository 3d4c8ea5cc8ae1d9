"""Prompt layers (points or boxes) written as WGS84 GeoJSON files for `shipseg detect --points/--boxes`."""

from __future__ import annotations

import json
import os
import tempfile

from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsWkbTypes

from . import runner


def prompt_kind(wkb_type) -> str:
    """"points" or "boxes" for a layer's geometry type; raises runner.ShipsegError for lines or tables."""
    geom_type = QgsWkbTypes.geometryType(wkb_type)
    if geom_type == QgsWkbTypes.PointGeometry:
        return "points"
    if geom_type == QgsWkbTypes.PolygonGeometry:
        return "boxes"
    raise runner.ShipsegError("The prompt layer must hold points or polygons (boxes).")


def write_prompts(features, crs, wkb_type, transform_context, is_canceled=lambda: False) -> tuple:
    """Write ``features`` (in ``crs``) as a temporary GeoJSON file; return (path, kind), kind "boxes" or
    "points". Raises runner.ShipsegError when there is nothing to write."""
    kind = prompt_kind(wkb_type)
    xform = QgsCoordinateTransform(crs, QgsCoordinateReferenceSystem("EPSG:4326"), transform_context)
    out = []
    for feat in features:
        if is_canceled():
            break
        geom = feat.geometry()
        if geom is None or geom.isEmpty():
            continue
        geom.transform(xform)
        out.append({"type": "Feature", "properties": {}, "geometry": json.loads(geom.asJson(8))})
    if not out:
        raise runner.ShipsegError("The prompt layer has no features (or none selected).")
    fd, path = tempfile.mkstemp(prefix=f"shipseg_{kind}_", suffix=".geojson")
    with os.fdopen(fd, "w") as fh:
        json.dump({"type": "FeatureCollection", "features": out}, fh)
    return path, kind
