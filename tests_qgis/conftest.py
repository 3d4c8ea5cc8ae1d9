"""Fixtures for the QGIS plugin tests. They run under Debian's python3 (which has `qgis`), in .venv-qgis made with
--system-site-packages, with pytest-qgis providing the QgsApplication (offscreen) and a stub iface."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGIN_DIR = REPO / "qgis_plugin"
PLUGIN = "shipseg_qgis"
FAKE = Path(__file__).resolve().parent / "fake_shipseg.py"
REAL_SHIPSEG = Path(os.environ.get("SHIPSEG_EXE", REPO / ".venv" / "bin" / "shipseg"))
HEAVY = ("torch", "rasterio", "geopandas", "shapely", "samgeo_ship", "pandas", "segment_anything")

if str(PLUGIN_DIR) not in sys.path:
    sys.path.insert(0, str(PLUGIN_DIR))


def heavy_modules():
    return sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)


@pytest.fixture(scope="session")
def scene_dir(tmp_path_factory) -> Path:
    """Copies of the sample scenes, so that no test can write into sample_tiles/."""
    out = tmp_path_factory.mktemp("scenes")
    tifs = sorted((REPO / "sample_tiles").glob("*.tif"))
    assert tifs, "sample_tiles/*.tif is missing: run `make samples`"
    for tif in tifs:
        shutil.copy(tif, out / tif.name)
        shutil.copy(tif.with_suffix(".geojson"), out / tif.with_suffix(".geojson").name)
    return out


@pytest.fixture(scope="session")
def scene(scene_dir) -> Path:
    """The smallest sample scene in a UTM CRS (harbour_rgb: 768x768 px, 30 ships)."""
    return scene_dir / "harbour_rgb.tif"


@pytest.fixture(scope="session")
def small_scene(scene_dir) -> Path:
    """A 128 x 128 px cut of harbour_rgb holding a few whole ships, with its truth beside it: the smallest scene
    on which a real shipseg run still finds ships (a few tiles: model loading dominates)."""
    from osgeo import gdal, ogr
    gdal.UseExceptions()
    src = scene_dir / "harbour_rgb.tif"
    out = scene_dir / "harbour_small.tif"
    gdal.Translate(str(out), str(src), srcWin=[280, 470, 128, 128])
    ds = gdal.Open(str(out))
    x0, dx, _, y0, _, dy = ds.GetGeoTransform()
    window = ogr.CreateGeometryFromWkt(f"POLYGON(({x0} {y0},{x0 + 128 * dx} {y0},{x0 + 128 * dx} {y0 + 128 * dy},"
                                       f"{x0} {y0 + 128 * dy},{x0} {y0}))")
    srs = ds.GetSpatialRef()
    srs.SetAxisMappingStrategy(0)  # x, y
    wgs = srs.CloneGeogCS()
    wgs.ImportFromEPSG(4326)
    wgs.SetAxisMappingStrategy(0)
    window.AssignSpatialReference(srs)
    window.TransformTo(wgs)
    truth = json.loads(src.with_suffix(".geojson").read_text())
    inside = [f for f in truth["features"]
              if window.Contains(ogr.CreateGeometryFromJson(json.dumps(f["geometry"])))]
    assert len(inside) >= 2, "the cut holds too few whole ships"
    out.with_suffix(".geojson").write_text(json.dumps({"type": "FeatureCollection", "features": inside}))
    return out


def truth_count(scene: Path) -> int:
    return len(json.loads(scene.with_suffix(".geojson").read_text())["features"])


@pytest.fixture(scope="session")
def fake_exe(tmp_path_factory) -> str:
    """An executable `shipseg` that runs fake_shipseg.py with this interpreter (which has GDAL for .gpkg)."""
    path = tmp_path_factory.mktemp("fakebin") / "shipseg"
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


@pytest.fixture(scope="session")
def real_exe() -> str:
    """The project's own shipseg (.venv/bin/shipseg); the tests that use it fail when it cannot detect."""
    assert REAL_SHIPSEG.is_file(), f"{REAL_SHIPSEG} is missing: run `make install`"
    res = subprocess.run([str(REAL_SHIPSEG), "detect", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "--progress" in res.stdout, f"shipseg detect is not usable: {res.stderr}"
    return str(REAL_SHIPSEG)


@pytest.fixture
def shipseg_settings():
    """Set plugin settings for one test; the previous values come back afterwards."""
    from qgis.core import QgsSettings
    s = QgsSettings()
    keys = ("executable", "model", "device", "output_format", "output_dir", "last_model", "bands", "prompts",
            "selected_only")
    old = {k: s.value(f"shipseg/{k}") for k in keys}

    def set_(**values):
        for k, v in values.items():
            assert k in keys
            s.setValue(f"shipseg/{k}", v)

    set_(executable="", model="", device="cpu", output_format="gpkg", output_dir="", last_model="", bands="",
         prompts="", selected_only="false")
    yield set_
    for k, v in old.items():
        if v is None:
            s.remove(f"shipseg/{k}")
        else:
            s.setValue(f"shipseg/{k}", v)


@pytest.fixture
def plugin(qgis_app, qgis_iface, qgis_processing, qgis_new_project):
    """The plugin loaded and started the way QGIS does it (qgis.utils, plugin path = qgis_plugin/)."""
    import qgis.utils
    if str(PLUGIN_DIR) not in qgis.utils.plugin_paths:
        qgis.utils.plugin_paths.insert(0, str(PLUGIN_DIR))
    assert qgis.utils.loadPlugin(PLUGIN), "qgis.utils.loadPlugin failed"
    assert qgis.utils.startPlugin(PLUGIN), "qgis.utils.startPlugin failed"
    qgis_iface.messageBar().clear_messages()
    qgis_iface.messageBar().clearWidgets()
    yield qgis.utils.plugins[PLUGIN]
    qgis.utils.unloadPlugin(PLUGIN)


@pytest.fixture
def raster_layer(qgis_iface):
    """Add ``path`` as a raster layer, make it the active layer and return it."""
    from qgis.core import QgsProject, QgsRasterLayer

    def add(path: Path, name: str | None = None):
        layer = QgsRasterLayer(str(path), name or path.stem, "gdal")
        assert layer.isValid(), path
        QgsProject.instance().addMapLayer(layer)
        qgis_iface.setActiveLayer(layer)
        return layer

    return add


def start_button(plugin, **fields):
    """Click the toolbar button, set ``fields`` in the run dialog it opens, press its OK; return the new task."""
    before = plugin.last_task
    plugin.detect_action.trigger()
    dialog = plugin.run_dialog
    assert dialog is not None and dialog.isVisible(), "the button opened no run dialog"
    for name, value in fields.items():
        widget = getattr(dialog, name)
        if hasattr(widget, "setLayer"):
            widget.setLayer(value)
        elif hasattr(widget, "setFilePath"):
            widget.setFilePath(str(value))
        elif hasattr(widget, "setCurrentText"):
            widget.setCurrentText(value)
        elif hasattr(widget, "setChecked"):
            widget.setChecked(value)
        else:
            widget.setText(value)
    dialog.accept()
    assert plugin.run_dialog is None
    task = plugin.last_task
    return task if task is not before else None


def wait_task(task, startup_s: float = 60, step_s: float = 30, what: str = "the detection task"):
    """Wait for ``task`` to end (its own taskCompleted/taskTerminated signals, after finished() ran). The bound
    follows the work: ``startup_s`` to its first progress, then ``step_s`` after each progress step."""
    from qgis.core import QgsApplication
    from qgis.PyQt.QtCore import QEventLoop, QTimer
    if task.ended:
        return task
    loop = QEventLoop()
    state = {"deadline": time.monotonic() + startup_s, "timed_out": False}

    def alive(_progress):
        state["deadline"] = time.monotonic() + step_s

    def tick():
        if task.ended:
            loop.quit()
        elif time.monotonic() > state["deadline"]:
            state["timed_out"] = True
            loop.quit()

    task.progressChanged.connect(alive)
    task.taskCompleted.connect(loop.quit)
    task.taskTerminated.connect(loop.quit)
    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(200)
    loop.exec_()
    timer.stop()
    QgsApplication.processEvents()
    assert not state["timed_out"], f"{what} showed no progress for {step_s:.0f} s (startup {startup_s:.0f} s)"
    assert task.ended, f"{what} signalled its end but finished() did not run"
    return task


def wait_for(predicate, timeout_s: float, what: str):
    from qgis.core import QgsApplication
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        QgsApplication.processEvents()
        time.sleep(0.02)


def pid_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie left for PID 1 to reap counts as gone)."""
    import psutil
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
