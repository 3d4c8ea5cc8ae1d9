"""The zoo of bundled models: detect without -m picks the bundled model that fits the scene's pixel size and bands,
says which, and refuses a scene no bundled model reads; `shipseg models` lists them."""

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
import torch
from affine import Affine

from samgeo_ship import ShipDetector
from samgeo_ship.errors import ShipsegError
from samgeo_ship.models import zoo
from samgeo_ship.models.bundle import BundleCard, save_bundle
from samgeo_ship.models.shipsam import ShipSam

from conftest import BANDS, run_cli, write_raster

RGB = ["red", "green", "blue"]


@pytest.fixture(scope="module")
def zoo_folder(tmp_path_factory):
    """Two tiny random bundles: a Sentinel-2-like one (10 m, B04,B03,B02) and an aerial one (0.5 m, RGB)."""
    folder = tmp_path_factory.mktemp("zoo")
    torch.manual_seed(0)
    model = ShipSam.from_config("sam_tiny")
    save_bundle(model, BundleCard("sam_tiny", BANDS, 10.0, 128, 16, quality={"f1": 0.9, "on": "s2_check"}),
                folder / "s2.safetensors")
    save_bundle(model, BundleCard("sam_tiny", RGB, 0.5, 128, 16), folder / "aerial.safetensors")
    return folder


@pytest.fixture
def bundled(zoo_folder, monkeypatch):
    monkeypatch.setattr(zoo, "bundled_dir", lambda: zoo_folder)
    return zoo_folder


def scene(tmp_path, pixel_m, names, size=64):
    data = np.random.default_rng(0).integers(0, 255, (3, size, size), dtype=np.uint8)
    transform = Affine(pixel_m, 0, 500_000.0, 0, -pixel_m, 4_800_000.0)
    return write_raster(tmp_path / f"scene_{pixel_m:g}m.tif", data, transform=transform, descriptions=names)


def test_choose_model_by_pixel_size_and_bands(bundled):
    assert zoo.choose_model(10.0, BANDS).name == "s2.safetensors"
    assert zoo.choose_model(0.5, RGB).name == "aerial.safetensors"
    assert zoo.choose_model(0.3, None).name == "aerial.safetensors"  # unnamed bands: pixel size alone
    assert zoo.choose_model(12.0, RGB).name == "s2.safetensors"  # red,green,blue are B04,B03,B02
    with pytest.raises(ShipsegError, match=r"nearest, s2\.safetensors, is made for 10 m pixels") as err:
        zoo.choose_model(50.0, BANDS, "far.tif")
    assert "\n" not in str(err.value) and str(err.value).startswith("far.tif: its pixels are 50 m")


def test_bands_decide_between_models_that_both_fit(bundled, tmp_path):
    card = BundleCard("sam_tiny", ["B08", "B04", "B03"], 1.0, 128, 16)
    save_bundle(ShipSam.from_config("sam_tiny"), card, bundled / "nir.safetensors")
    try:
        assert zoo.choose_model(1.0, ["B08", "B04", "B03"]).name == "nir.safetensors"
        assert zoo.choose_model(1.0, RGB).name == "aerial.safetensors"  # nearer in pixels, but not its bands
    finally:
        (bundled / "nir.safetensors").unlink()


def test_a_model_measured_on_real_imagery_comes_before_a_nearer_one_measured_on_synthetic_scenes(bundled):
    card = BundleCard("sam_tiny", ["B08"], 8.0, 64, 8, quality={"f1": 0.23, "on": "real ports", "real": True})
    save_bundle(ShipSam.from_config("sam_tiny"), card, bundled / "nir.safetensors")
    try:
        assert zoo.choose_model(10.0, [*BANDS, "B08"]).name == "nir.safetensors"  # s2 is nearer, measured on synthetic
        assert zoo.choose_model(10.0, BANDS).name == "s2.safetensors"  # no B08: bands come first
        result = run_cli("models")
        row = next(line for line in result.output.splitlines() if "nir.safetensors" in line)
        assert row.rstrip().endswith("f1=0.23 on real ports")
    finally:
        (bundled / "nir.safetensors").unlink()


def test_detector_for_scene_picks_and_says(bundled, tmp_path):
    s2 = ShipDetector.for_scene(scene(tmp_path, 10.0, BANDS), device="cpu")
    assert s2.name == "s2.safetensors" and s2.choice == "Model: s2.safetensors (10 m, B04,B03,B02) for a 10 m scene"
    aerial = ShipDetector.for_scene(scene(tmp_path, 0.5, RGB), device="cpu")
    assert aerial.name == "aerial.safetensors" and aerial.card.pixel_size_m == 0.5
    assert ShipDetector(bundled / "s2.safetensors", device="cpu").choice is None  # named: nothing picked


def test_a_model_measured_weak_is_picked_with_a_warning():
    weak = BundleCard("sam_tiny", RGB, 0.8, 256, 32, quality={"f1": 0.12, "on": "real chips"})
    line = zoo.describe_choice("weak.safetensors", weak, 0.5)
    assert line.startswith("Model: weak.safetensors (0.8 m, red,green,blue) for a 0.5 m scene")
    assert "experimental: F1 0.12 on real chips" in line and "\n" not in line
    strong = BundleCard("sam_tiny", RGB, 0.8, 256, 32, quality={"f1": zoo.EXPERIMENTAL_F1, "on": "real chips"})
    assert "experimental" not in zoo.describe_choice("strong.safetensors", strong, 0.5)


def test_cli_detect_says_which_model_and_records_it(bundled, tmp_path):
    out, boxes = tmp_path / "ships.gpkg", tmp_path / "boxes.geojson"  # a box prompt is always answered: one row
    gpd.GeoDataFrame(geometry=[shapely.box(500_010, 4_799_980, 500_020, 4_799_990)], crs="EPSG:32631").to_file(boxes)
    result = run_cli("detect", scene(tmp_path, 0.5, RGB), "-o", out, "--boxes", boxes, "--progress", "json",
                     "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "Model: aerial.safetensors (0.5 m, red,green,blue) for a 0.5 m scene" in result.stderr.splitlines()
    assert all(json.loads(line)["event"] for line in result.stdout.splitlines())  # stdout stays JSON
    assert list(gpd.read_file(out)["model"]) == ["aerial.safetensors"]


def test_cli_refuses_a_scene_no_bundled_model_reads(bundled, tmp_path):
    result = run_cli("detect", scene(tmp_path, 50.0, BANDS), "-o", tmp_path / "out.geojson", "--device", "cpu")
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "s2.safetensors, is made for 10 m pixels" in lines[0]
    assert not (tmp_path / "out.geojson").exists()


def test_resolution_error_names_the_model_that_fits(bundled, tmp_path):
    result = run_cli("detect", scene(tmp_path, 0.5, RGB), "-m", bundled / "s2.safetensors",
                     "-o", tmp_path / "out.geojson", "--device", "cpu")
    assert result.exit_code == 2
    assert "or use aerial.safetensors, made for 0.5 m pixels)" in result.stderr


def test_models_lists_the_zoo(bundled):
    result = run_cli("models")
    assert result.exit_code == 0, result.output
    rows = {line.split()[1]: line for line in result.stdout.splitlines()[1:]}
    assert {"s2.safetensors", "aerial.safetensors"} <= set(rows)
    assert "10 m" in rows["s2.safetensors"] and "B04,B03,B02" in rows["s2.safetensors"]
    assert "f1=0.9 on s2_check" in rows["s2.safetensors"]
    assert "0.5 m" in rows["aerial.safetensors"] and "red,green,blue" in rows["aerial.safetensors"]


def test_m_takes_a_bundled_models_name(bundled, tmp_path, monkeypatch):
    assert zoo.model_path("aerial") == bundled / "aerial.safetensors"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "aerial").write_bytes(b"")  # a file of that name here is the user's, not the zoo's
    assert zoo.model_path("aerial") == Path("aerial")
    assert zoo.model_path("nothing_of_that_name") == Path("nothing_of_that_name")


def test_the_bundled_zoo_gives_a_near_infrared_only_scene_its_model_which_runs_no_sam(tmp_path, sam_forbidden):
    assert zoo.choose_model(10.0, ["B08", "B11"]).name == "s2_nir.safetensors"
    # Measured on real ports, it comes before the default (synthetic samples) wherever the scene has B08.
    assert zoo.choose_model(10.0, ["B04", "B03", "B02", "B08"]).name == "s2_nir.safetensors"
    assert zoo.choose_model(10.0, RGB).name == "default.safetensors"
    rng = np.random.default_rng(3)
    data = rng.integers(300, 500, (2, 96, 96)).astype(np.uint16)  # water, dark in near and short-wave infrared
    data[0, 20:24, 10:40] = data[1, 20:24, 10:40] = 4000  # two bright hulls
    data[0, 60:63, 50:75] = data[1, 60:63, 50:75] = 3500
    path = write_raster(tmp_path / "nir.tif", data, descriptions=["B08", "B11"])
    detector = ShipDetector.for_scene(path, device="cpu")
    assert detector.name == "s2_nir.safetensors" and "experimental" in detector.choice
    ships = detector.detect(path)
    assert set(ships["model"]) == {"s2_nir.safetensors"} and len(ships) == 2  # both hulls, from its own regions
    assert sorted(ships["length_m"]) == pytest.approx([250, 300], rel=0.15)
