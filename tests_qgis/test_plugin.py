"""The plugin in a real QgsApplication (pytest-qgis, offscreen), driving a fake shipseg that obeys the contract."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from qgis.core import (Qgis, QgsCoordinateReferenceSystem, QgsProject, QgsRasterLayer, QgsTask, QgsVectorLayer,
                       QgsWkbTypes)

from conftest import HEAVY, PLUGIN, heavy_modules, pid_gone, truth_count, wait_for


def run_button(plugin, timeout_s=60):
    """Trigger the toolbar action the way a click does and wait for its task to end."""
    before = plugin.last_task
    plugin.detect_action.trigger()
    task = plugin.last_task
    assert task is not None and task is not before, "the button started no task"
    wait_for(lambda: task.ended, timeout_s, "the detection task")
    return task


def messages(iface, level):
    return iface.messageBar().get_messages(level)


def test_plugin_is_loaded_through_qgis_utils(plugin, qgis_iface):
    import qgis.utils
    assert PLUGIN in qgis.utils.active_plugins
    assert plugin.detect_action.text() == "Detect ships"
    assert not plugin.detect_action.icon().isNull()
    from qgis.core import QgsApplication
    alg = QgsApplication.processingRegistry().algorithmById("shipseg:detectships")
    assert alg is not None and alg.displayName() == "Detect ships"


def test_button_adds_styled_ships_layer_above_raster(plugin, qgis_iface, shipseg_settings, fake_exe, scene,
                                                     raster_layer):
    shipseg_settings(executable=fake_exe, output_format="gpkg")
    raster = raster_layer(scene)
    progress = []
    plugin.detect_action.trigger()
    task = plugin.last_task
    task.progressChanged.connect(progress.append)
    wait_for(lambda: task.ended, 60, "the detection task")
    assert task.error is None and not task.cancelled
    assert task.status() == QgsTask.Complete
    ships = QgsProject.instance().mapLayer(task.result_layer_id)
    assert isinstance(ships, QgsVectorLayer) and ships.isValid()
    assert ships.featureCount() == task.done["ships"] == truth_count(scene) > 0
    assert ships.crs() == raster.crs()  # GeoPackage output is in the scene's CRS
    assert QgsWkbTypes.geometryType(ships.wkbType()) == QgsWkbTypes.PolygonGeometry
    assert Path(ships.source().split("|")[0]).parent == scene.parent
    # directly above the raster in the layer tree
    order = [n.layerId() for n in QgsProject.instance().layerTreeRoot().findLayers()]
    assert order.index(ships.id()) == order.index(raster.id()) - 1
    # styled: coloured outline, labels with length_m in metres
    symbol = ships.renderer().symbol()
    assert symbol.symbolLayer(0).strokeColor().name() == "#ff00ff"
    assert ships.labelsEnabled()
    pal = ships.labeling().settings()
    assert pal.isExpression and "length_m" in pal.fieldName and "' m'" in pal.fieldName
    assert progress and max(progress) == pytest.approx(100.0)
    assert any("ships found" in m for m in messages(qgis_iface, Qgis.Success))


def test_button_geojson_output_is_wgs84(plugin, shipseg_settings, fake_exe, scene, raster_layer, tmp_path):
    shipseg_settings(executable=fake_exe, output_format="geojson", output_dir=str(tmp_path))
    raster_layer(scene)
    task = run_button(plugin)
    ships = QgsProject.instance().mapLayer(task.result_layer_id)
    assert ships.crs() == QgsCoordinateReferenceSystem("EPSG:4326")
    assert ships.featureCount() == truth_count(scene)
    assert Path(task.done["output"]).parent == tmp_path
    assert "length_m" in ships.fields().names()


def test_button_needs_a_local_raster(plugin, qgis_iface, shipseg_settings, fake_exe):
    shipseg_settings(executable=fake_exe)
    xyz = QgsRasterLayer("type=xyz&url=https://tile.openstreetmap.org/{z}/{x}/{y}.png&zmax=19&zmin=0", "osm", "wms")
    QgsProject.instance().addMapLayer(xyz)
    qgis_iface.setActiveLayer(xyz)
    before = plugin.last_task
    plugin.detect_action.trigger()
    assert plugin.last_task is before
    warnings = messages(qgis_iface, Qgis.Warning)
    assert any("not a local file" in m for m in warnings), warnings

    vector = QgsVectorLayer("Point?crs=EPSG:4326", "points", "memory")
    QgsProject.instance().addMapLayer(vector)
    qgis_iface.setActiveLayer(vector)
    plugin.detect_action.trigger()
    assert plugin.last_task is before
    assert any("Select a raster layer" in m for m in messages(qgis_iface, Qgis.Warning))


@pytest.mark.parametrize("configured", ["/nonexistent/shipseg", ""])
def test_missing_shipseg_says_what_to_install(plugin, qgis_iface, shipseg_settings, scene, raster_layer,
                                              monkeypatch, tmp_path, configured):
    shipseg_settings(executable=configured)
    monkeypatch.setenv("PATH", str(tmp_path))  # no shipseg on PATH
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr("sys.prefix", str(tmp_path))
    raster_layer(scene)
    before = plugin.last_task
    plugin.detect_action.trigger()
    assert plugin.last_task is before
    (warning,) = messages(qgis_iface, Qgis.Warning)
    assert "pip install shipseg" in warning and "Traceback" not in warning
    assert ("does not exist" in warning) if configured else ("not found on PATH" in warning)


def test_broken_shipseg_gives_one_clear_message(plugin, qgis_iface, shipseg_settings, scene, raster_layer,
                                                tmp_path):
    broken = tmp_path / "shipseg"
    broken.write_text("#!/bin/sh\necho 'Traceback (most recent call last):' >&2\n"
                      "echo \"ModuleNotFoundError: No module named 'torch'\" >&2\nexit 1\n")
    broken.chmod(0o755)
    shipseg_settings(executable=str(tmp_path))  # an environment folder works too
    layer = raster_layer(scene)
    task = run_button(plugin)
    assert task.result_layer_id is None
    (error,) = messages(qgis_iface, Qgis.Critical)
    assert "broken" in error and "pip install" in error and "torch" in error
    assert [lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.id() != layer.id()] == []


def test_bad_input_shows_shipseg_error_line(plugin, qgis_iface, shipseg_settings, fake_exe, tmp_path,
                                            raster_layer, scene):
    lonely = tmp_path / "lonely.tif"  # no truth beside it: the fake exits 2 with "Error: ..."
    lonely.write_bytes(scene.read_bytes())
    shipseg_settings(executable=fake_exe)
    raster_layer(lonely)
    task = run_button(plugin)
    (error,) = messages(qgis_iface, Qgis.Critical)
    assert "shipseg: " in error and "lonely.tif" in error and "Traceback" not in error
    assert task.result_layer_id is None and not list(tmp_path.glob("lonely_ships*"))


def test_cancel_kills_process_tree_and_adds_no_layer(plugin, qgis_iface, shipseg_settings, fake_exe, scene,
                                                     raster_layer, monkeypatch, tmp_path):
    pidfile = tmp_path / "pids.json"
    monkeypatch.setenv("FAKE_SHIPSEG_PIDFILE", str(pidfile))
    monkeypatch.setenv("FAKE_SHIPSEG_CHILD", "1")
    monkeypatch.setenv("FAKE_SHIPSEG_TILES", "200")
    monkeypatch.setenv("FAKE_SHIPSEG_DELAY", "0.5")
    shipseg_settings(executable=fake_exe, output_dir=str(tmp_path))
    raster = raster_layer(scene)
    plugin.detect_action.trigger()
    task = plugin.last_task
    wait_for(lambda: pidfile.exists() and task.progress() > 0, 30, "the fake shipseg to report progress")
    pids = json.loads(pidfile.read_text())
    assert not pid_gone(pids["pid"]) and not pid_gone(pids["child"])
    t0 = time.monotonic()
    task.cancel()
    wait_for(lambda: task.ended, 15, "the cancelled task to end")
    assert time.monotonic() - t0 < 10
    assert task.cancelled and task.result_layer_id is None
    wait_for(lambda: pid_gone(pids["pid"]) and pid_gone(pids["child"]), 10, "the shipseg processes to die")
    assert list(QgsProject.instance().mapLayers()) == [raster.id()]
    assert not list(tmp_path.glob("*_ships*"))
    assert any("cancelled" in m for m in messages(qgis_iface, Qgis.Info))


def test_map_is_not_blocked_while_detecting(plugin, shipseg_settings, fake_exe, scene, raster_layer, monkeypatch,
                                            tmp_path):
    monkeypatch.setenv("FAKE_SHIPSEG_TILES", "10")
    monkeypatch.setenv("FAKE_SHIPSEG_DELAY", "0.2")
    shipseg_settings(executable=fake_exe, output_dir=str(tmp_path))
    raster_layer(scene)
    t0 = time.monotonic()
    plugin.detect_action.trigger()
    assert time.monotonic() - t0 < 1.0  # trigger returns at once; the work runs in a QgsTask
    task = plugin.last_task
    assert task.status() in (QgsTask.Queued, QgsTask.OnHold, QgsTask.Running)
    wait_for(lambda: task.ended, 60, "the detection task")
    assert task.result_layer_id is not None


# --- Processing ----------------------------------------------------------------------------------------------------

def test_processing_algorithm_writes_ships(plugin, shipseg_settings, fake_exe, scene, tmp_path):
    import processing
    from qgis.core import QgsProcessingFeedback
    shipseg_settings(executable=fake_exe)
    out = tmp_path / "ships.gpkg"

    class Feedback(QgsProcessingFeedback):
        values = []

        def setProgress(self, value):  # noqa: N802
            self.values.append(value)
            super().setProgress(value)

    fb = Feedback()
    res = processing.run("shipseg:detectships", {"INPUT": str(scene), "OUTPUT": str(out)}, feedback=fb)
    assert res["OUTPUT"] == str(out) and res["SHIPS"] == truth_count(scene)
    layer = QgsVectorLayer(str(out), "ships", "ogr")
    assert layer.featureCount() == res["SHIPS"]
    assert layer.crs() == QgsRasterLayer(str(scene), "s", "gdal").crs()
    assert fb.values and max(fb.values) == pytest.approx(100.0)


def test_processing_prompts_bands_and_converted_output(plugin, shipseg_settings, fake_exe, scene, tmp_path,
                                                       monkeypatch):
    import processing
    shipseg_settings(executable=fake_exe)
    points = QgsVectorLayer("Point?crs=EPSG:4326", "prompts", "memory")
    from qgis.core import QgsFeature, QgsGeometry, QgsPointXY
    feat = QgsFeature()
    feat.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(5.35, 43.28)))
    points.dataProvider().addFeatures([feat])
    log = tmp_path / "argv.txt"
    wrapper = tmp_path / "shipseg"  # records its arguments, then runs the fake
    wrapper.write_text(f'#!/bin/sh\necho "$@" > "{log}"\nexec "{fake_exe}" "$@"\n')
    wrapper.chmod(0o755)
    shipseg_settings(executable=str(wrapper))
    out = tmp_path / "ships.shp"  # not a shipseg format: written by QGIS from shipseg's GeoPackage
    res = processing.run("shipseg:detectships", {"INPUT": str(scene), "PROMPTS": points, "BANDS": "B04, B03,B02",
                                                 "DEVICE": 2, "OUTPUT": str(out)})
    argv = log.read_text().split()
    assert "--points" in argv and "--boxes" not in argv
    assert argv[argv.index("--bands") + 1] == "B04,B03,B02"
    assert argv[argv.index("--device") + 1] == "cpu"
    assert QgsVectorLayer(str(out), "s", "ogr").featureCount() == res["SHIPS"] == truth_count(scene)


def test_processing_in_a_model(plugin, shipseg_settings, fake_exe, scene, tmp_path):
    """The algorithm as a child of a graphical-modeller model (the same object the modeller builds)."""
    from qgis.core import (QgsProcessingContext, QgsProcessingFeedback, QgsProcessingModelAlgorithm,
                           QgsProcessingModelChildAlgorithm, QgsProcessingModelChildParameterSource,
                           QgsProcessingModelOutput, QgsProcessingModelParameter,
                           QgsProcessingParameterRasterLayer)
    shipseg_settings(executable=fake_exe)
    model = QgsProcessingModelAlgorithm("ships model", "test")
    model.addModelParameter(QgsProcessingParameterRasterLayer("scene", "Scene"), QgsProcessingModelParameter("scene"))
    child = QgsProcessingModelChildAlgorithm("shipseg:detectships")
    child.setChildId("detect")
    child.addParameterSources("INPUT", [QgsProcessingModelChildParameterSource.fromModelParameter("scene")])
    out = QgsProcessingModelOutput("ships", "ships")
    out.setChildOutputName("OUTPUT")
    child.setModelOutputs({"ships": out})
    model.addChildAlgorithm(child)
    assert model.childAlgorithm("detect").algorithm() is not None
    dest = tmp_path / "model_ships.geojson"
    results, ok = model.run({"scene": str(scene), "detect:ships": str(dest)}, QgsProcessingContext(),
                            QgsProcessingFeedback())
    assert ok, results
    assert QgsVectorLayer(str(dest), "s", "ogr").featureCount() == truth_count(scene)


def test_processing_batch_of_two(plugin, shipseg_settings, fake_exe, scene_dir, tmp_path):
    import processing
    shipseg_settings(executable=fake_exe)
    for name in ("harbour_rgb", "harbour_4326"):
        res = processing.run("shipseg:detectships", {"INPUT": str(scene_dir / f"{name}.tif"),
                                                     "OUTPUT": str(tmp_path / f"{name}.fgb")})
        assert QgsVectorLayer(res["OUTPUT"], "s", "ogr").featureCount() == truth_count(scene_dir / f"{name}.tif")


def test_processing_cancel_kills_process(plugin, shipseg_settings, fake_exe, scene, tmp_path, monkeypatch):
    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback
    pidfile = tmp_path / "pids.json"
    monkeypatch.setenv("FAKE_SHIPSEG_PIDFILE", str(pidfile))
    monkeypatch.setenv("FAKE_SHIPSEG_CHILD", "1")
    monkeypatch.setenv("FAKE_SHIPSEG_TILES", "200")
    monkeypatch.setenv("FAKE_SHIPSEG_DELAY", "0.5")
    shipseg_settings(executable=fake_exe)
    fb = QgsProcessingFeedback()
    seen = {}

    def cancel_when_running():
        deadline = time.monotonic() + 30
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        seen.update(json.loads(pidfile.read_text()))
        fb.cancel()

    threading.Thread(target=cancel_when_running, daemon=True).start()
    out = tmp_path / "ships.gpkg"
    with pytest.raises(QgsProcessingException, match="cancelled"):
        processing.run("shipseg:detectships", {"INPUT": str(scene), "OUTPUT": str(out)}, feedback=fb)
    wait_for(lambda: pid_gone(seen["pid"]) and pid_gone(seen["child"]), 10, "the shipseg processes to die")
    assert not out.exists()


def test_processing_missing_shipseg_is_a_clear_error(plugin, shipseg_settings, scene, tmp_path):
    import processing
    from qgis.core import QgsProcessingException
    shipseg_settings(executable=str(tmp_path / "nope"))
    with pytest.raises(QgsProcessingException, match="pip install shipseg"):
        processing.run("shipseg:detectships", {"INPUT": str(scene), "OUTPUT": str(tmp_path / "o.gpkg")})


# --- isolation -----------------------------------------------------------------------------------------------------

def test_plugin_never_imports_heavy_modules(plugin, shipseg_settings, fake_exe, scene, raster_layer, tmp_path):
    """After loading the plugin, pressing the button and running the algorithm, none of torch, rasterio,
    geopandas, shapely (nor shipseg's own package) is loaded into the QGIS process."""
    import processing
    shipseg_settings(executable=fake_exe, output_dir=str(tmp_path))
    raster_layer(scene)
    run_button(plugin)
    processing.run("shipseg:detectships", {"INPUT": str(scene), "OUTPUT": str(tmp_path / "p.gpkg")})
    from shipseg_qgis import settings as plugin_settings  # noqa: F401 - the dialog module too
    plugin_settings.SettingsDialog()
    assert heavy_modules() == [], f"loaded into QGIS: {heavy_modules()} (must stay out: {HEAVY})"
    for name, mod in list(__import__("sys").modules.items()):
        if name.startswith(PLUGIN):
            assert os.path.dirname(getattr(mod, "__file__", "") or "").endswith(PLUGIN)
