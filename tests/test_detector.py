"""ShipDetector: one loaded model serving many passes, the scene opened once, calibration touching only the card."""

import json
import struct

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from samgeo_ship import ShipDetector
from samgeo_ship.models.bundle import load_bundle, read_card, update_card
from samgeo_ship.raster import Scene
from shipseg_cli.main import cli


def test_detect_with_preview_opens_the_scene_once_and_normalises_it_once(tmp_path, tiny_bundle, harbour, monkeypatch):
    opened, normalised = [], []
    real_open, real_norm = rasterio.open, Scene.compute_normalisation

    def counting_open(path, *args, **kwargs):
        if str(path) == str(harbour):
            opened.append(path)
        return real_open(path, *args, **kwargs)

    def counting_norm(self, *args, **kwargs):
        normalised.append(self.path)
        return real_norm(self, *args, **kwargs)

    monkeypatch.setattr(rasterio, "open", counting_open)
    monkeypatch.setattr(Scene, "compute_normalisation", counting_norm)
    out, look = tmp_path / "ships.geojson", tmp_path / "look.png"
    result = CliRunner().invoke(cli, ["detect", str(harbour), "-m", str(tiny_bundle), "-o", str(out),
                                      "--preview", str(look), "-q", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert out.is_file() and look.is_file()
    assert len(opened) == 1 and len(normalised) == 1


def test_one_detector_serves_many_scenes_and_passes_with_the_same_answer(tiny_bundle, harbour):
    detector = ShipDetector(tiny_bundle, device="cpu", batch_size=2)
    first = detector.detect(harbour)
    with detector.open(harbour) as scene:
        again = detector.detect(scene)
        boxes = detector.detect(scene, boxes=np.array([[500_100.0, 4_799_000.0, 500_400.0, 4_799_820.0]]))
    assert [g.wkb for g in first.geometry] == [g.wkb for g in again.geometry]
    assert first.drop(columns="geometry").equals(again.drop(columns="geometry"))
    assert list(boxes["prompt"]) == [0] * len(boxes) and len(boxes) <= 1


def test_run_settings_never_change_the_card(tiny_bundle, harbour):
    card = read_card(tiny_bundle)
    detector = ShipDetector(tiny_bundle, device="cpu", tile_size=96, overlap=16, score_threshold=0.9, bands="3,2,1")
    detector.detect(harbour)
    assert detector.card == card and (detector.tile_size, detector.overlap) == (96, 16)
    assert detector.predictor.score_threshold == 0.9 != card.thresholds["score"]


def _data_section(path) -> bytes:
    raw = path.read_bytes()
    return raw[8 + struct.unpack("<Q", raw[:8])[0]:]


def test_update_card_rewrites_the_header_only(tmp_path, tiny_bundle):
    path = tmp_path / "m.safetensors"
    path.write_bytes(tiny_bundle.read_bytes())
    card = read_card(path)
    card.thresholds = {**card.thresholds, "score": 0.61}
    update_card(path, card)
    assert read_card(path).thresholds["score"] == 0.61
    assert _data_section(path) == _data_section(tiny_bundle)  # tensors byte for byte
    net, loaded = load_bundle(path)  # the weights hash still holds
    assert loaded.thresholds["score"] == 0.61
    card.weights_sha256 = "0" * 64
    with pytest.raises(ValueError):
        update_card(path, card)
    assert json.loads(json.dumps(read_card(path).thresholds))["score"] == 0.61


def test_default_names_the_bundled_model_wherever_a_model_is_taken(tmp_path):
    from samgeo_ship.models.zoo import default_model, model_path
    assert model_path(None) == model_path("default") == default_model() and default_model().is_file()
    assert ShipDetector("default", device="cpu").card == read_card(default_model())
    result = CliRunner().invoke(cli, ["info", "default"])
    assert result.exit_code == 0 and "sam_tiny" in result.stdout
