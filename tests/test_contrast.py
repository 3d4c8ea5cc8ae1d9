"""The contrast test against the water (samgeo_ship.inference.contrast) and how detect and calibrate use it."""

import dataclasses
import shutil

import numpy as np
import pytest
from affine import Affine
from rasterio.features import rasterize
from shapely.geometry import box

from samgeo_ship.inference.contrast import keep, ring_contrast
from samgeo_ship import detect as detect_scene, load_model
from samgeo_ship.inference.detector import DetectWarning
from samgeo_ship.models.zoo import default_model
from samgeo_ship import calibrate
from samgeo_ship.models.bundle import read_card
from samgeo_ship.raster import Scene

from conftest import PX, SMALL_HULLS, UTM, in_crs, run_cli, write_raster, write_truth

DEFAULT_MODEL = default_model()

T = Affine(10, 0, 500000, 0, -10, 4000000)  # 10 m pixels, UTM


def test_ring_contrast_reads_the_water_beside_a_quay(tmp_path):
    nir = np.full((1, 60, 60), 300, np.uint16)
    nir[0, 10:14, 10:30] = 3000  # a ship at sea
    nir[0, 30:34, 10:30] = 2400  # a ship moored against ...
    nir[0, 34:40, 0:60] = 6000  # ... a bright quay below it
    path = write_raster(tmp_path / "nir.tif", nir, transform=T, descriptions=["B08"])
    to_crs = lambda c0, r0, c1, r1: box(*(T @ (c0, r1)), *(T @ (c1, r0)))
    ships = [to_crs(10, 10, 30, 14), to_crs(10, 30, 30, 34), to_crs(40, 15, 50, 20)]  # the last on open water
    with Scene.open(path, bands=["B08"]) as scene:
        c = ring_contrast(scene, ships)
    assert c.tolist() == [2700.0, 2100.0, 0.0]
    assert keep(c, 1000.0).tolist() == [True, True, False] and keep(c, 0).all()
    assert keep(np.array([np.nan]), 500.0).tolist() == [True]  # nothing measured: not dropped


def four_band_harbour(path, dark_in_nir: int):
    """The small harbour with a near-infrared band in which hull ``dark_in_nir`` is no brighter than the water."""
    rng = np.random.default_rng(1)
    data = rng.integers(300, 400, size=(4, 96, 96)).astype(np.uint16)
    for k, hull in enumerate(SMALL_HULLS):
        pixels = rasterize([hull], out_shape=(96, 96), transform=PX) > 0
        data[:3, pixels] = 3000
        data[3, pixels] = 350 if k == dark_in_nir else 3000
    return write_raster(path, data, descriptions=["B04", "B03", "B02", "B08"])


def test_detect_drops_ships_below_the_models_least_contrast(tmp_path, small_harbour):
    scene = four_band_harbour(tmp_path / "s2.tif", dark_in_nir=2)
    net, card = load_model(DEFAULT_MODEL, "cpu")
    plain = detect_scene(scene, (net, card), device="cpu")
    tested = detect_scene(scene, (net, dataclasses.replace(card, contrast={"band": "B08", "min": 1000.0})),
                          device="cpu")
    hulls = in_crs(SMALL_HULLS, UTM)
    found = lambda ships, hull: any(g.intersection(hull).area > 0.5 * hull.area for g in ships.geometry)
    assert all(found(plain, h) for h in hulls), "the default model finds the three hulls"
    assert found(tested, hulls[0]) and found(tested, hulls[1]) and not found(tested, hulls[2])
    assert len(tested) == len(plain) - 1
    # The same ships without a B08 band: the test is skipped, with a warning, and nothing is dropped.
    with pytest.warns(DetectWarning, match="no band named B08"):
        skipped = detect_scene(small_harbour, (net, dataclasses.replace(card, contrast={"band": "B08", "min": 1000.0})),
                               device="cpu")
    assert len(skipped) == len(detect_scene(small_harbour, (net, card), device="cpu")) > 0


def test_calibrate_chooses_the_least_contrast_with_the_threshold(tmp_path, small_harbour):
    scene = four_band_harbour(tmp_path / "s2.tif", dark_in_nir=-1)
    model = tmp_path / "m.safetensors"
    shutil.copy(DEFAULT_MODEL, model)
    truth = write_truth(tmp_path / "truth.geojson", SMALL_HULLS)
    result = calibrate(model, scene, truth, device="cpu", contrast_band="B08")
    card = read_card(model)
    assert card.contrast == result.contrast == {"band": "B08", "min": result.contrast["min"]}
    assert result.best.f1 == max(m.f1 for _, m in result.contrast_sweep) > 0
    # Every hull stands ~2,650 above its water in B08: the strictest contrast that keeps them all wins the tie.
    assert result.contrast["min"] == 2000.0
    before = model.read_bytes()
    missing = run_cli("calibrate", model, small_harbour, truth, "--contrast-band", "B08", "-q")
    assert missing.exit_code == 2 and "no band named 'B08'" in missing.stderr, missing.output
    assert len(missing.stderr.strip().splitlines()) == 1 and model.read_bytes() == before
