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
from samgeo_ship.vector.writers import FORMATS, write_ships


# The detectors of this process, keyed by (resolved bundle path, device, all tiles): a worker loads a model once and
# keeps it for every later scene; their number is the number of real loads (``model_loads`` in the manifest).
_DETECTORS: dict[tuple[str, str, bool], object] = {}
_DETECTORS_LOCK = threading.Lock()


def detector_for(model_ref, device: str = "cpu", all_tiles: bool = False):
    """The ShipDetector of ``model_ref`` on ``device``: a bundle path or None (the bundled default), built once per
    process and kept; a loaded ``(ShipSam, BundleCard)`` or a ShipDetector is used as it is. ``all_tiles``: see
    ShipDetector."""
    from samgeo_ship.inference.detector import ShipDetector
    from samgeo_ship.device import resolve_device
    from samgeo_ship.models.zoo import model_path

    if isinstance(model_ref, ShipDetector):
        return model_ref
    if isinstance(model_ref, tuple):
        return ShipDetector(model_ref, device=device, all_tiles=all_tiles)
    key = (str(model_path(model_ref).resolve()), str(resolve_device(device)), bool(all_tiles))
    with _DETECTORS_LOCK:
        if key not in _DETECTORS:
            _DETECTORS[key] = ShipDetector(key[0], device=key[1], all_tiles=key[2])
        return _DETECTORS[key]


def run_detector(detector, scene_path, model_ref, device: str, all_tiles: bool = False):
    """Ships of one scene: shipseg's own detection (``detector`` None), or a stand-in called as
    ``detector(scene_path, ShipDetector or None, device=device)`` (a callable, or "module:function", picklable by
    name everywhere)."""
    if detector is None:
        return detector_for(model_ref, device, all_tiles).detect(scene_path)
    if not callable(detector):
        module, _, name = str(detector).partition(":")
        detector = getattr(importlib.import_module(module), name)
    return detector(scene_path, None if model_ref is None else detector_for(model_ref, device, all_tiles),
                    device=device)


def process_scene(scene: SceneRef, model_ref, outdir, fmt: str = "geojson", device: str = "auto",
                  detector=None, all_tiles: bool = False) -> dict:
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
        ships = run_detector(detector, scene.path, model_ref, device, all_tiles)
        ships = ships.assign(scene_id=scene.scene_id, acquired=result["acquired"])
        out = Path(outdir) / f"{scene.scene_id}{FORMATS[fmt][0]}"
        write_ships(ships, out)
        result.update(state=DONE, output=out.name, sha256=sha256_file(out), ships=int(len(ships)))
    except ShipsegError as exc:
        result.update(state=FAILED, error=str(exc))
    except Exception as exc:  # any bug or library error stays this scene's failure; the batch goes on
        where = traceback.extract_tb(exc.__traceback__)[-1]
        result.update(state=FAILED, error=f"{scene.path}: {type(exc).__name__}: {exc} "
                                          f"(at {Path(where.filename).name}:{where.lineno})")
    result.update(seconds=round(time.perf_counter() - start, 3), worker=f"{socket.gethostname()}:{os.getpid()}",
                  model_loads=len(_DETECTORS))
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
