"""The plugin in a real QgsApplication (pytest-qgis, offscreen), driving a fake shipseg that obeys the contract."""

from __future__ import annotations

import json
import os
import tempfile
import time
import zipfile
from pathlib import Path

import pytest
from qgis.core import (Qgis, QgsApplication, QgsCoordinateReferenceSystem, QgsFeature, QgsGeometry, QgsPointXY,
                       QgsProject, QgsRasterLayer, QgsTask, QgsVectorLayer, QgsWkbTypes)

from conftest import HEAVY, PLUGIN, heavy_modules, pid_gone, start_button, truth_count, wait_for, wait_task


def run_button(plugin, **fields):
    task = start_button(plugin, **fields)
    assert task is not None, "the button started no task"
    return wait_task(task)


def messages(iface, level):
    """Texts of the messages pushed at ``level``, and of those (with buttons) still in the bar."""
    bar = iface.messageBar()
    return bar.get_messages(level) + [i.text() for i in bar.items() if i.level() == level]


def bar_item(iface, text):
    items = [i for i in iface.messageBar().items() if text in i.text()]
    assert items, f"no message with {text!r} in the bar: {[i.text() for i in iface.messageBar().items()]}"
    return items[-1]


def button_of(item, label):
    from qgis.PyQt.QtWidgets import QPushButton
    buttons = [b for b in item.findChildren(QPushButton) if b.text() == label]
    assert buttons, f"no {label!r} button in the message {item.text()!r}"
    return buttons[0]


@pytest.fixture
def log_levels():
    """(tag, level, text) of every message-log entry while the test runs."""
    seen = []

    def record(text, tag, level):
        seen.append((tag, level, text))

    QgsApplication.messageLog().messageReceived.connect(record)
    yield seen
    QgsApplication.messageLog().messageReceived.disconnect(record)


def test_plugin_is_loaded_through_qgis_utils(plugin, qgis_iface):
    import qgis.utils
    assert PLUGIN in qgis.utils.active_plugins
    assert plugin.detect_action.text() == "Detect ships"
    assert not plugin.detect_action.icon().isNull()
    from qgis.core import QgsApplication
    alg = QgsApplication.processingRegistry().algorithmById("shipseg:detectships")
    assert alg is not None and alg.displayName() == "Detect ships"


def test_button_adds_styled_ships_layer_above_raster(plugin, qgis_iface, shipseg_settings, fake_exe, scene,
                                                     raster_layer, log_levels):
    shipseg_settings(executable=fake_exe, output_format="gpkg")
    raster = raster_layer(scene)
    progress = []
    task = start_button(plugin)
    # said at once, with a way to cancel
    button_of(bar_item(qgis_iface, f"Detecting ships in '{raster.name()}'"), "Cancel")
    task.progressChanged.connect(progress.append)
    wait_task(task)
    assert task.error is None and not task.cancelled and task.done
    ships = QgsProject.instance().mapLayer(task.result_layer_id)
    assert isinstance(ships, QgsVectorLayer) and ships.isValid()
    assert ships.featureCount() == task.done["ships"] == truth_count(scene) > 0
    assert ships.crs() == raster.crs()  # GeoPackage output is in the scene's CRS
    assert QgsWkbTypes.geometryType(ships.wkbType()) == QgsWkbTypes.PolygonGeometry
    # no project folder: the temporary folder, never beside the source raster
    assert Path(ships.source().split("|")[0]).parent == Path(tempfile.gettempdir()) / "shipseg"
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
    assert not [i for i in qgis_iface.messageBar().items() if "Detecting ships" in i.text()]  # start notice gone
    # the command line and shipseg's stderr are logged, as information (not orange warnings)
    ours = [(level, text) for tag, level, text in log_levels if tag == "Shipseg"]
    assert any(text.startswith(fake_exe) for _, text in ours) and any("loading model" in t for _, t in ours)
    assert {level for level, _ in ours} == {Qgis.Info}, ours


def test_output_goes_to_the_project_folder_or_the_chosen_one(plugin, shipseg_settings, fake_exe, scene,
                                                             raster_layer, tmp_path):
    shipseg_settings(executable=fake_exe)
    raster_layer(scene)
    project_dir = tmp_path / "project"
    project_dir.mkdir()
    QgsProject.instance().setFileName(str(project_dir / "ships.qgz"))
    task = run_button(plugin)
    assert Path(task.done["output"]).parent == project_dir
    chosen = tmp_path / "chosen"
    chosen.mkdir()
    task = run_button(plugin, output_dir=chosen, output_format="geojson")
    assert Path(task.done["output"]).parent == chosen and task.done["output"].endswith(".geojson")


def test_button_geojson_output_is_wgs84(plugin, shipseg_settings, fake_exe, scene, raster_layer, tmp_path):
    shipseg_settings(executable=fake_exe, output_format="geojson", output_dir=str(tmp_path))
    raster_layer(scene)
    task = run_button(plugin)
    ships = QgsProject.instance().mapLayer(task.result_layer_id)
    assert ships.crs() == QgsCoordinateReferenceSystem("EPSG:4326")
    assert ships.featureCount() == truth_count(scene)
    assert Path(task.done["output"]).parent == tmp_path
    assert "length_m" in ships.fields().names()


def test_run_dialog_passes_and_remembers_choices(plugin, shipseg_settings, fake_exe, scene, raster_layer, tmp_path,
                                                 monkeypatch):
    from qgis.PyQt.QtWidgets import QLineEdit
    log = tmp_path / "fake.json"
    monkeypatch.setenv("FAKE_SHIPSEG_LOG", str(log))
    shipseg_settings(executable=fake_exe, output_dir=str(tmp_path))
    raster_layer(scene)
    points = QgsVectorLayer("Point?crs=EPSG:4326", "my prompts", "memory")
    feats = []
    for x in (5.35, 5.36, 5.37):
        f = QgsFeature()
        f.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(x, 43.28)))
        feats.append(f)
    points.dataProvider().addFeatures(feats)
    QgsProject.instance().addMapLayer(points)
    points.selectByIds([next(points.getFeatures()).id()])
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"x")
    task = run_button(plugin, model=model, bands="1, 2,3", prompts=points, selected_only=True,
                      output_format="fgb")
    sent = json.loads(log.read_text())
    argv = sent["argv"]
    assert argv[argv.index("-m") + 1] == str(model) and argv[argv.index("--bands") + 1] == "1,2,3"
    assert "--points" in argv and sent["prompts"] == 1  # the selected feature only
    assert task.done["output"].endswith(".fgb")
    assert not Path(argv[argv.index("--points") + 1]).exists()  # the temporary prompt file is removed
    plugin.detect_action.trigger()
    dialog = plugin.run_dialog
    assert dialog.model.filePath() == str(model) and dialog.bands.text() == "1, 2,3"
    assert dialog.prompts.currentLayer() is points and dialog.selected_only.isChecked()
    assert dialog.output_format.currentText() == "fgb"
    QgsApplication.processEvents()
    for edit in dialog.findChildren(QLineEdit):  # wide enough that no placeholder is cut
        if edit.placeholderText() and edit.isVisible():
            assert edit.fontMetrics().horizontalAdvance(edit.placeholderText()) < edit.width(), edit.placeholderText()
    dialog.reject()
    assert plugin.run_dialog is None and plugin.last_task is task


def test_button_needs_a_local_raster(plugin, qgis_iface, shipseg_settings, fake_exe, scene, tmp_path):
    shipseg_settings(executable=fake_exe)
    xyz = QgsRasterLayer("type=xyz&url=https://tile.openstreetmap.org/{z}/{x}/{y}.png&zmax=19&zmin=0", "osm", "wms")
    QgsProject.instance().addMapLayer(xyz)
    qgis_iface.setActiveLayer(xyz)
    assert start_button(plugin) is None
    warnings = messages(qgis_iface, Qgis.Warning)
    assert any("not a local file" in m for m in warnings), warnings

    archive = tmp_path / "scene.zip"  # GDAL reads it through /vsizip/; shipseg could not
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(scene, scene.name)
    zipped = QgsRasterLayer(f"/vsizip/{archive}/{scene.name}", "zipped", "gdal")
    assert zipped.isValid()
    QgsProject.instance().addMapLayer(zipped)
    qgis_iface.setActiveLayer(zipped)
    assert start_button(plugin) is None
    assert any("vsizip" in m and "Save As" in m for m in messages(qgis_iface, Qgis.Warning))

    vector = QgsVectorLayer("Point?crs=EPSG:4326", "points", "memory")
    QgsProject.instance().addMapLayer(vector)
    qgis_iface.setActiveLayer(vector)
    plugin.detect_action.trigger()
    plugin.run_dialog.raster.setLayer(None)
    plugin.run_dialog.accept()
    assert any("Select a raster layer" in m for m in messages(qgis_iface, Qgis.Warning))


@pytest.mark.parametrize("configured", ["/nonexistent/shipseg", ""])
def test_missing_shipseg_says_what_to_install(plugin, qgis_iface, shipseg_settings, scene, raster_layer,
                                              monkeypatch, tmp_path, configured, log_levels):
    shipseg_settings(executable=configured)
    monkeypatch.setenv("PATH", str(tmp_path))  # no shipseg on PATH
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr("sys.prefix", str(tmp_path))
    raster_layer(scene)
    assert start_button(plugin) is None
    (warning,) = messages(qgis_iface, Qgis.Warning)
    assert "make install" in warning and "Traceback" not in warning and len(warning) < 130
    assert ("does not exist" in warning) if configured else ("not on PATH" in warning)
    assert any(".venv/bin/shipseg" in text for tag, _, text in log_levels if tag == "Shipseg")  # the whole hint
    opened = []
    monkeypatch.setattr(plugin, "show_settings", lambda: opened.append(True))
    item = bar_item(qgis_iface, "make install")
    monkeypatch.setattr("shipseg_qgis.settings.SettingsDialog.exec_", lambda self: opened.append(self) or 0)
    button_of(item, "Open settings").click()
    assert len(opened) == 1


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
    assert "broken" in error and "make install" in error and "torch" in error
    assert [lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.id() != layer.id()] == []


def test_bad_input_shows_shipseg_error_line(plugin, qgis_iface, shipseg_settings, fake_exe, tmp_path,
                                            raster_layer, scene):
    lonely = tmp_path / "lonely.tif"  # no truth beside it: the fake exits 2 with "Error: ..."
    lonely.write_bytes(scene.read_bytes())
    shipseg_settings(executable=fake_exe, output_dir=str(tmp_path))
    raster_layer(lonely)
    task = run_button(plugin)
    (error,) = messages(qgis_iface, Qgis.Critical)
    assert "shipseg: " in error and "lonely.tif" in error and "Traceback" not in error
    assert task.result_layer_id is None and not list(tmp_path.glob("lonely_ships*"))


def test_cancel_button_kills_process_tree_and_adds_no_layer(plugin, qgis_iface, shipseg_settings, fake_exe, scene,
                                                            raster_layer, monkeypatch, tmp_path):
    pidfile = tmp_path / "pids.json"
    monkeypatch.setenv("FAKE_SHIPSEG_PIDFILE", str(pidfile))
    monkeypatch.setenv("FAKE_SHIPSEG_CHILD", "1")
    monkeypatch.setenv("FAKE_SHIPSEG_TILES", "200")
    monkeypatch.setenv("FAKE_SHIPSEG_DELAY", "0.5")
    shipseg_settings(executable=fake_exe, output_dir=str(tmp_path))
    raster = raster_layer(scene)
    task = start_button(plugin)
    wait_for(lambda: pidfile.exists() and task.progress() > 0, 60, "the fake shipseg to report progress")
    pids = json.loads(pidfile.read_text())
    assert not pid_gone(pids["pid"]) and not pid_gone(pids["child"])
    QgsApplication.processEvents()
    notice = bar_item(qgis_iface, "Detecting ships")
    assert "tiles" in notice.text() and "ships so far" in notice.text()  # the message follows the progress
    t0 = time.monotonic()
    button_of(notice, "Cancel").click()
    wait_task(task, startup_s=15, what="the cancelled task")
    assert time.monotonic() - t0 < 10
    assert task.cancelled and task.result_layer_id is None
    wait_for(lambda: pid_gone(pids["pid"]) and pid_gone(pids["child"]), 10, "the shipseg processes to die")
    assert list(QgsProject.instance().mapLayers()) == [raster.id()]
    assert not list(tmp_path.glob("*_ships*"))
    assert any("cancelled" in m for m in messages(qgis_iface, Qgis.Info))
    assert not any("fail" in m.lower() for m in messages(qgis_iface, Qgis.Critical) + messages(qgis_iface, Qgis.Info))


def test_stopping_running_tasks_calls_nothing_back(plugin, qgis_iface, shipseg_settings, fake_exe, scene,
                                                   raster_layer, monkeypatch, tmp_path, log_levels):
    """What the plugin does when QGIS quits (or unloads it) with a run going: the process is killed, the task
    ends, and nothing is logged or called back from it."""
    pidfile = tmp_path / "pids.json"
    monkeypatch.setenv("FAKE_SHIPSEG_PIDFILE", str(pidfile))
    monkeypatch.setenv("FAKE_SHIPSEG_TILES", "200")
    monkeypatch.setenv("FAKE_SHIPSEG_DELAY", "0.5")
    shipseg_settings(executable=fake_exe, output_dir=str(tmp_path))
    raster_layer(scene)
    task = start_button(plugin)
    wait_for(lambda: pidfile.exists() and task.progress() > 0, 60, "the fake shipseg to report progress")
    pid = json.loads(pidfile.read_text())["pid"]
    called = []
    monkeypatch.setattr(plugin, "_task_finished", lambda t: called.append(t))
    task.on_finished = plugin._task_finished
    del log_levels[:]
    plugin.stop_tasks()
    assert task.ended and task.cancelled and called == [] and plugin.tasks == []
    assert pid_gone(pid)
    assert [e for e in log_levels if e[0] == "Shipseg"] == []


def test_map_is_not_blocked_while_detecting(plugin, shipseg_settings, fake_exe, scene, raster_layer, monkeypatch,
                                            tmp_path):
    monkeypatch.setenv("FAKE_SHIPSEG_TILES", "10")
    monkeypatch.setenv("FAKE_SHIPSEG_DELAY", "0.2")
    shipseg_settings(executable=fake_exe, output_dir=str(tmp_path))
    raster_layer(scene)
    plugin.detect_action.trigger()
    plugin.run_dialog.accept()
    task = plugin.last_task  # OK returned with the work still to do, in a QgsTask
    assert task.status() in (QgsTask.Queued, QgsTask.OnHold, QgsTask.Running) and not task.ended
    wait_task(task)
    assert task.result_layer_id is not None


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
