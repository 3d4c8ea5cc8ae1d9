"""The work of one scene, the same in process, in a local worker process or on a Dask worker: load the model once
per process, detect, write the scene's output atomically, and report what happened as a plain dict."""

from __future__ import annotations

import importlib
import os
import socket
import threading
import time
import traceback
from datetime import datetime
from pathlib import Path

from samgeo_ship.batch.inputs import SceneRef, format_utc
from samgeo_ship.batch.manifest import DONE, FAILED, sha256_file
from samgeo_ship.errors import ShipsegError
from samgeo_ship.vector.writers import write_ships

EXTENSIONS = {"geojson": ".geojson", "gpkg": ".gpkg", "parquet": ".parquet"}

# Loaded models of this process, keyed by (resolved bundle path, device): a worker loads a model once and keeps it
# for every later scene. LOADS counts real loads, so tests and logs can tell a reload from a cache hit.
_MODELS: dict[tuple[str, str], object] = {}
_MODELS_LOCK = threading.Lock()
LOADS = {"count": 0}


def load_model(model_ref, device: str = "cpu"):
    """``model_ref``: a bundle path (loaded once per process and cached), an already loaded ``(ShipSam,
    BundleCard)``, or None (for detectors that need no model)."""
    if model_ref is None or isinstance(model_ref, tuple):
        return model_ref
    from samgeo_ship.device import resolve_device
    from samgeo_ship.models.bundle import load_bundle

    key = (str(Path(model_ref).resolve()), str(resolve_device(device)))
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = load_bundle(model_ref, key[1])
            LOADS["count"] += 1
        return _MODELS[key]


def resolve_detector(detector):
    """None: shipseg's own ``detect_scene``; a callable; or "module:function" (picklable by name everywhere)."""
    if detector is None:
        from samgeo_ship.inference.detect import detect_scene
        return detect_scene
    if callable(detector):
        return detector
    module, _, name = str(detector).partition(":")
    return getattr(importlib.import_module(module), name)


def process_scene(scene: SceneRef, model_ref, outdir, fmt: str = "geojson", device: str = "auto",
                  detector=None) -> dict:
    """Detect the ships of ``scene`` and write ``outdir/<scene_id>.<fmt>`` atomically. Never raises for a bad scene:
    the result has ``state`` "done" (with ``output``, ``sha256``, ``ships``) or "failed" (with ``error``), plus
    ``scene_id``, ``source``, ``acquired``, ``seconds``, ``worker`` ("host:pid") and ``model_loads`` (this
    process's model loads so far)."""
    start = time.perf_counter()
    result = {"scene_id": scene.scene_id, "source": scene.path, "acquired": scene.acquired, "output": None,
              "sha256": None, "ships": 0, "error": None}
    try:
        if scene.acquired is None:
            result["acquired"] = tiff_datetime(scene.path)
        ships = resolve_detector(detector)(scene.path, load_model(model_ref, device), device=device)
        ships = ships.assign(scene_id=scene.scene_id, acquired=result["acquired"])
        out = Path(outdir) / f"{scene.scene_id}{EXTENSIONS[fmt]}"
        write_ships(ships, out)
        result.update(state=DONE, output=out.name, sha256=sha256_file(out), ships=int(len(ships)))
    except ShipsegError as exc:
        result.update(state=FAILED, error=str(exc))
    except Exception as exc:  # any bug or library error stays this scene's failure; the batch goes on
        where = traceback.extract_tb(exc.__traceback__)[-1]
        result.update(state=FAILED, error=f"{scene.path}: {type(exc).__name__}: {exc} "
                                          f"(at {Path(where.filename).name}:{where.lineno})")
    result.update(seconds=round(time.perf_counter() - start, 3), worker=f"{socket.gethostname()}:{os.getpid()}",
                  model_loads=LOADS["count"])
    return result


def tiff_datetime(path) -> str | None:
    """TIFFTAG_DATETIME ("YYYY:MM:DD HH:MM:SS", taken as UTC) as RFC 3339, or None when absent or unreadable."""
    import rasterio

    try:
        with rasterio.open(path) as src:
            value = src.tags().get("TIFFTAG_DATETIME")
        return format_utc(datetime.strptime(value.strip(), "%Y:%m:%d %H:%M:%S")) if value else None
    except Exception:  # an unreadable file fails later, in detection, with a proper message
        return None
