"""The plugin's Settings dialog and its Processing algorithm in a real QgsApplication (pytest-qgis, offscreen),
driving a fake shipseg that obeys the contract."""

from __future__ import annotations

import json
import threading
import time

import pytest
from qgis.core import QgsApplication, QgsFeature, QgsGeometry, QgsPointXY, QgsProject, QgsRasterLayer, QgsVectorLayer

from conftest import pid_gone, truth_count, wait_for


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
    env = tmp_path / "clone"  # a clone after `make install`: its .venv/bin/shipseg is found too
    (env / ".venv" / "bin").mkdir(parents=True)
    (env / ".venv" / "bin" / "shipseg").symlink_to(fake_exe)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(env)))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (fake_exe, "")))
    dialog = SettingsDialog()
    buttons = {b.text(): b for b in dialog.findChildren(QPushButton)}
    buttons["Folder…"].click()
    assert dialog.exe.text() == str(env)
    dialog.check()
    wait_for(lambda: dialog.checked is not None, 60, "the shipseg check")
    assert dialog.checked and str(env / ".venv" / "bin" / "shipseg") in dialog.status.text()
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
