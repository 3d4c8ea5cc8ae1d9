"""Which file a raster layer reads, and where the toolbar button writes its ships."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from qgis.core import QgsMapLayerType, QgsProviderRegistry

from . import runner


def local_raster_path(layer) -> str:
    """The file behind a raster layer; raises runner.ShipsegError (a sentence for the message bar) otherwise."""
    if layer is None or layer.type() != QgsMapLayerType.RasterLayer:
        raise runner.ShipsegError("Select a raster layer (a GeoTIFF or another image file) in the Layers panel "
                                  "first.")
    if layer.providerType() != "gdal":
        raise runner.ShipsegError(f"Layer '{layer.name()}' is not a local file ({layer.providerType()} source); "
                                  f"save it as a GeoTIFF first (Export > Save As).")
    path = QgsProviderRegistry.instance().decodeUri("gdal", layer.source()).get("path") or layer.source()
    if not os.path.isfile(path):
        raise runner.ShipsegError(f"Layer '{layer.name()}' is not a local file ({layer.source()}); save it as a "
                                  f"GeoTIFF first (Export > Save As).")
    return path


def unique_output(scene: str, fmt: str, out_dir: str = "") -> str:
    """``<scene stem>_ships.<fmt>`` in ``out_dir``, else beside the scene, else the temporary folder; never an
    existing file."""
    scene_dir = os.path.dirname(os.path.abspath(scene))
    folder = out_dir if out_dir and os.path.isdir(out_dir) else scene_dir
    if not os.access(folder, os.W_OK):
        folder = os.path.join(tempfile.gettempdir(), "shipseg")
        os.makedirs(folder, exist_ok=True)
    stem = Path(scene).stem + "_ships"
    path = os.path.join(folder, f"{stem}.{fmt}")
    n = 2
    while os.path.exists(path):
        path = os.path.join(folder, f"{stem}_{n}.{fmt}")
        n += 1
    return path
