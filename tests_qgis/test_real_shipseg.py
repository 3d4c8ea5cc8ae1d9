"""The plugin driving the project's real `.venv/bin/shipseg detect` on a small cut of a sample raster (no fake)."""

from __future__ import annotations

import subprocess

from qgis.core import QgsProject, QgsVectorLayer

from conftest import REPO, heavy_modules, start_button, truth_count, wait_task

DEFAULT_MODEL = REPO / "samgeo_ship" / "data" / "default.safetensors"
# A real run: python, torch and the model load first (slow on a busy machine), then a progress line every few
# tiles. The wait follows that work rather than a fixed clock.
STARTUP_S, STEP_S = 300, 120


def tiny_bundle(real_exe: str, path) -> str:
    """A random-weight sam_tiny bundle for RGB scenes (256 px tiles), made with the project's own Python."""
    python = str(real_exe).rsplit("/", 1)[0] + "/python"
    code = ("import torch, sys\nfrom samgeo_ship.models.bundle import BundleCard, save_bundle\n"
            "from samgeo_ship.models.shipsam import ShipSam\ntorch.manual_seed(0)\n"
            "save_bundle(ShipSam.from_config('sam_tiny'), BundleCard('sam_tiny', ['red', 'green', 'blue'], 10.0, "
            "256, 32), sys.argv[1])\n")
    subprocess.run([python, "-c", code, str(path)], check=True, cwd=REPO)
    return str(path)


def test_real_shipseg_button_and_processing(plugin, shipseg_settings, real_exe, small_scene, raster_layer,
                                            tmp_path):
    """Button (default model when installed, else a tiny random model) and the Processing algorithm with the
    truth hulls as box prompts (one ship per box, whatever the weights), both running at the same time."""
    import processing
    model = tiny_bundle(real_exe, tmp_path / "tiny_rgb.safetensors")
    use_default = DEFAULT_MODEL.is_file()
    shipseg_settings(executable=real_exe, model="" if use_default else model, device="cpu",
                     output_format="gpkg", output_dir=str(tmp_path))
    raster = raster_layer(small_scene)
    task = start_button(plugin)

    boxes = QgsVectorLayer(str(small_scene.with_suffix(".geojson")), "truth", "ogr")
    out = tmp_path / "prompted.geojson"
    res = processing.run("shipseg:detectships", {"INPUT": str(small_scene), "MODEL": model, "PROMPTS": boxes,
                                                 "DEVICE": 2, "OUTPUT": str(out)})
    ships = QgsVectorLayer(str(out), "ships", "ogr")
    assert ships.featureCount() == res["SHIPS"] == truth_count(small_scene) > 0
    assert ships.crs().authid() == "EPSG:4326"  # GeoJSON is RFC 7946
    assert {"length_m", "beam_m", "heading_deg", "score"} <= set(ships.fields().names())

    wait_task(task, STARTUP_S, STEP_S, "the real shipseg run started by the button")
    assert task.error is None, task.error
    layer = QgsProject.instance().mapLayer(task.result_layer_id)
    assert layer is not None and layer.crs() == raster.crs()
    assert layer.featureCount() == task.done["ships"]
    if use_default:
        assert layer.featureCount() > 0
    assert heavy_modules() == []
