"""The plugin in a real QgsApplication (pytest-qgis, offscreen), driving a fake shipseg that obeys the contract."""

from __future__ import annotations

import json
import os
import tempfile
import threading
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


# --- settings ------------------------------------------------------------------------------------------------------

def test_settings_check_runs_in_the_background(plugin, shipseg_settings, fake_exe, monkeypatch, tmp_path):
    from qgis.PyQt.QtWidgets import QLineEdit
    from shipseg_qgis.settings import SettingsDialog
    monkeypatch.setenv("FAKE_SHIPSEG_VERSION_DELAY", "2")
    shipseg_settings(executable=fake_exe)
    dialog = SettingsDialog()
    dialog.show()
    QgsApplication.processEvents()
    dialog.check()
    assert dialog.checked is None and "Checking" in dialog.status.text()  # returned while --version runs
    wait_for(lambda: dialog.checked is not None, 60, "the shipseg check")
    assert dialog.checked and "0.0.0-fake" in dialog.status.text()
    dialog.exe.setText(str(tmp_path / "missing"))
    dialog.check()
    assert dialog.checked is False and "make install" in dialog.status.text()
    # wide enough that no placeholder is cut
    for edit in dialog.findChildren(QLineEdit):
        if edit.placeholderText():
            assert edit.fontMetrics().horizontalAdvance(edit.placeholderText()) < edit.width(), edit.placeholderText()
    dialog.reject()


def test_settings_picker_takes_a_file_or_an_environment_folder(plugin, shipseg_settings, fake_exe, monkeypatch,
                                                               tmp_path):
    from qgis.PyQt.QtWidgets import QFileDialog, QPushButton
    from shipseg_qgis.settings import SettingsDialog, get
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "shipseg").symlink_to(fake_exe)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(env)))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (fake_exe, "")))
    dialog = SettingsDialog()
    buttons = {b.text(): b for b in dialog.findChildren(QPushButton)}
    buttons["Folder…"].click()
    assert dialog.exe.text() == str(env)
    dialog.check()
    wait_for(lambda: dialog.checked is not None, 60, "the shipseg check")
    assert dialog.checked and str(env / "bin" / "shipseg") in dialog.status.text()
    buttons["File…"].click()
    assert dialog.exe.text() == fake_exe
    dialog.accept()
    assert get("executable") == fake_exe


# --- Processing ----------------------------------------------------------------------------------------------------

def test_processing_algorithm_writes_ships(plugin, shipseg_settings, fake_exe, scene, tmp_path, monkeypatch):
    import processing
    from qgis.core import QgsProcessingFeedback
    shipseg_settings(executable=fake_exe)
    out = tmp_path / "ships.gpkg"

    class Feedback(QgsProcessingFeedback):
        values, lines = [], []

        def setProgress(self, value):  # noqa: N802
            self.values.append(value)
            super().setProgress(value)

        def setProgressText(self, text):  # noqa: N802 - a line in the dialog's log
            self.lines.append(text)

        def pushInfo(self, text):  # noqa: N802
            self.lines.append(text)

    monkeypatch.setenv("FAKE_SHIPSEG_TILES", "40")
    monkeypatch.setenv("FAKE_SHIPSEG_DELAY", "0.01")
    fb = Feedback()
    res = processing.run("shipseg:detectships", {"INPUT": str(scene), "OUTPUT": str(out)}, feedback=fb)
    assert res["OUTPUT"] == str(out) and res["SHIPS"] == truth_count(scene)
    layer = QgsVectorLayer(str(out), "ships", "ogr")
    assert layer.featureCount() == res["SHIPS"]
    assert layer.crs() == QgsRasterLayer(str(scene), "s", "gdal").crs()
    assert len(fb.values) >= 40 and max(fb.values) == pytest.approx(100.0)
    assert len(fb.lines) <= 2, fb.lines  # progress goes to the bar, not one log line per tile


def test_processing_output_is_styled_and_named_after_the_raster(plugin, shipseg_settings, fake_exe, scene, tmp_path):
    """What the Processing dialog loads: the same look as the button's layer, named "<raster> ships"."""
    import processing
    shipseg_settings(executable=fake_exe)
    raster = QgsRasterLayer(str(scene), "my harbour", "gdal")
    QgsProject.instance().addMapLayer(raster)
    res = processing.runAndLoadResults("shipseg:detectships", {"INPUT": raster, "OUTPUT": str(tmp_path / "o.gpkg")})
    loaded = [lyr for lyr in QgsProject.instance().mapLayers().values() if isinstance(lyr, QgsVectorLayer)]
    assert [lyr.name() for lyr in loaded] == ["my harbour ships"], res
    (loaded,) = loaded
    assert loaded.featureCount() == truth_count(scene)
    assert loaded.renderer().symbol().symbolLayer(0).strokeColor().name() == "#ff00ff"
    assert loaded.labelsEnabled() and "length_m" in loaded.labeling().settings().fieldName


def test_processing_prompts_bands_and_converted_output(plugin, shipseg_settings, fake_exe, scene, tmp_path,
                                                       monkeypatch):
    import processing
    shipseg_settings(executable=fake_exe)
    points = QgsVectorLayer("Point?crs=EPSG:4326", "prompts", "memory")
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
        deadline = time.monotonic() + 60  # until the fake runs and reports its first tile
        while not (pidfile.exists() and fb.progress() > 0) and time.monotonic() < deadline:
            time.sleep(0.05)
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
    with pytest.raises(QgsProcessingException, match="make install"):
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
