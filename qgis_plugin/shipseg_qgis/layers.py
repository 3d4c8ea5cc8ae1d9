"""Which file a raster layer reads, and where the plugin writes its ships."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from qgis.core import QgsMapLayerType, QgsProject, QgsProviderRegistry

from . import runner

SAVE_AS = "save it as a GeoTIFF first (right-click the layer > Export > Save As)"


def local_raster_path(layer) -> str:
    """The file behind a raster layer; raises runner.ShipsegError (a sentence for the message bar) otherwise.

    shipseg opens plain files only, so a layer that GDAL reads through a virtual file system (/vsizip/,
    /vsicurl/, ...) is refused here rather than after a wasted start."""
    if layer is None or layer.type() != QgsMapLayerType.RasterLayer:
        raise runner.ShipsegError("Select a raster layer (a GeoTIFF or another image file) in the Layers panel "
                                  "first.")
    if layer.providerType() != "gdal":
        raise runner.ShipsegError(f"Layer '{layer.name()}' is not a local file ({layer.providerType()} source); "
                                  f"{SAVE_AS}.")
    parts = QgsProviderRegistry.instance().decodeUri("gdal", layer.source())
    path = parts.get("path") or layer.source()
    vsi = parts.get("vsiPrefix") or (path.split("/")[1] if path.startswith("/vsi") else "")
    if vsi:
        raise runner.ShipsegError(f"Layer '{layer.name()}' is read through GDAL's {vsi.strip('/')} ({path}), "
                                  f"which shipseg cannot open; {SAVE_AS}.")
    if not os.path.isfile(path):
        raise runner.ShipsegError(f"Layer '{layer.name()}' is not a local file ({layer.source()}); {SAVE_AS}.")
    return path


def _writable(folder: str) -> bool:
    return bool(folder) and os.path.isdir(folder) and os.access(folder, os.W_OK)


def output_folder(chosen: str = "") -> str:
    """Where ships go: the chosen folder, else the saved project's folder, else ``<temp>/shipseg``; never the
    raster's own folder (often read-only data, or a repository)."""
    for folder in (chosen, QgsProject.instance().absolutePath()):
        if _writable(folder):
            return folder
    folder = os.path.join(tempfile.gettempdir(), "shipseg")
    os.makedirs(folder, exist_ok=True)
    return folder


def unique_output(scene: str, fmt: str, out_dir: str = "") -> str:
    """``<scene stem>_ships.<fmt>`` in ``output_folder(out_dir)``; never an existing file."""
    folder = output_folder(out_dir)
    stem = Path(scene).stem + "_ships"
    path = os.path.join(folder, f"{stem}.{fmt}")
    n = 2
    while os.path.exists(path):
        path = os.path.join(folder, f"{stem}_{n}.{fmt}")
        n += 1
    return path
