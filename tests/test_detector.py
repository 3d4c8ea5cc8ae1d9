"""ShipDetector: one loaded model serving many passes, the scene opened once, calibration touching only the card."""

import json
import struct

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner
from rasterio.features import rasterize
from shapely.geometry import box

from samgeo_ship import ShipDetector
from samgeo_ship.models.bundle import BundleCard, load_bundle, read_card, save_bundle, update_card
from samgeo_ship.models.shipsam import ShipSam
from samgeo_ship.raster import Scene
from shipseg_cli.main import cli

from conftest import write_raster

BANDS = ["B04", "B03", "B02"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    return save_bundle(ShipSam.from_config("sam_tiny"), BundleCard("sam_tiny", BANDS, 10.0, 64, 8), path)


@pytest.fixture(scope="module")
def harbour(tmp_path_factory):
    """120 px of dark water with three bright hulls (UTM, 10 m)."""
    rng = np.random.default_rng(0)
    data = rng.integers(300, 400, size=(3, 120, 120)).astype(np.uint16)
    hulls = [box(10, 10, 40, 18), box(60, 50, 68, 90), box(80, 100, 110, 107)]
    data[:, rasterize(hulls, out_shape=(120, 120)) > 0] = 3000
    return write_raster(tmp_path_factory.mktemp("scene") / "harbour.tif", data, nodata=0, descriptions=BANDS)


def test_detect_with_preview_opens_the_scene_once_and_normalises_it_once(tmp_path, tiny, harbour, monkeypatch):
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
    result = CliRunner().invoke(cli, ["detect", str(harbour), "-m", str(tiny), "-o", str(out), "--preview", str(look),
                                      "-q", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert out.is_file() and look.is_file()
    assert len(opened) == 1 and len(normalised) == 1


def test_one_detector_serves_many_scenes_and_passes_with_the_same_answer(tiny, harbour):
    detector = ShipDetector(tiny, device="cpu", batch_size=2)
    first = detector.detect(harbour)
    with detector.open(harbour) as scene:
        again = detector.detect(scene)
        boxes = detector.detect(scene, boxes=np.array([[500_100.0, 4_799_000.0, 500_400.0, 4_799_820.0]]))
    assert [g.wkb for g in first.geometry] == [g.wkb for g in again.geometry]
    assert first.drop(columns="geometry").equals(again.drop(columns="geometry"))
    assert list(boxes["prompt"]) == [0] * len(boxes) and len(boxes) <= 1


def test_run_settings_never_change_the_card(tiny, harbour):
    card = read_card(tiny)
    detector = ShipDetector(tiny, device="cpu", tile_size=96, overlap=16, score_threshold=0.05, bands="3,2,1")
    detector.detect(harbour)
    assert detector.card == card and (detector.tile_size, detector.overlap) == (96, 16)
    assert detector.predictor.score_threshold == 0.05 != card.thresholds["score"]


def _data_section(path) -> bytes:
    raw = path.read_bytes()
    return raw[8 + struct.unpack("<Q", raw[:8])[0]:]


def test_update_card_rewrites_the_header_only(tmp_path, tiny):
    path = tmp_path / "m.safetensors"
    path.write_bytes(tiny.read_bytes())
    card = read_card(path)
    card.thresholds = {**card.thresholds, "score": 0.61}
    update_card(path, card)
    assert read_card(path).thresholds["score"] == 0.61
    assert _data_section(path) == _data_section(tiny)  # tensors byte for byte
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
