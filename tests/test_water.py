"""Tiles that hold no water are skipped: never one holding a truth ship, some on a scene with land, none on a scene
without the bands of the water test or with --all-tiles."""

import json
from pathlib import Path

import numpy as np
import pytest
from rasterio.features import rasterize

from samgeo_ship import ShipDetector
from samgeo_ship.inference import water
from samgeo_ship.inference.water import dry_tiles, water_bands
from samgeo_ship.labels import load_labels
from samgeo_ship.raster import Scene
from samgeo_ship.tiling import TileGrid

from conftest import PX, SMALL_HULLS, UTM, run_cli, write_raster

SAMPLES = Path(__file__).resolve().parents[1] / "sample_tiles"


def touched_tiles(grid: TileGrid, geom, inverse) -> set:
    """(row, col) of every tile whose core the pixel bounds of ``geom`` reach."""
    xmin, ymin, xmax, ymax = geom.bounds
    cols, rows = zip(*(inverse @ (x, y) for x in (xmin, xmax) for y in (ymin, ymax)))
    cs = grid.core_size
    return {(r, c) for r in range(int(min(rows) // cs), int(max(rows) // cs) + 1)
            for c in range(int(min(cols) // cs), int(max(cols) // cs) + 1)}


@pytest.mark.parametrize("name", ["harbour_s2_16bit", "harbour_rgb", "harbour_4326"])
def test_no_truth_ship_lies_in_a_skipped_tile_of_the_samples(name):
    detector = ShipDetector(None, device="cpu")
    with detector.open(SAMPLES / f"{name}.tif") as scene:
        grid, wet = detector.grid(scene), detector.wet_grid(scene)
        ships = load_labels(SAMPLES / f"{name}.geojson", scene).ships
        inverse = ~scene.transform
    assert len(ships) >= 30
    for geom in ships.geometry:
        assert not touched_tiles(grid, geom, inverse) & wet.skipped
    if name == "harbour_s2_16bit":  # land in a scene with near infrared: tiles are skipped, the rest still read
        assert 0.05 * len(grid) < detector.tiles_skipped == len(wet.skipped) < 0.5 * len(grid)
        assert len(wet) == len(list(wet)) == len(grid) - len(wet.skipped)
    else:  # RGB only: no water test
        assert detector.tiles_skipped == 0 and len(wet) == len(grid)


def land_and_sea(path, size=96, land_cols=48):
    """Water (bright green, dark near infrared) on the left, vegetated land on the right, with SMALL_HULLS at sea."""
    data = np.zeros((4, size, size), np.uint16)
    data[:] = np.array([330, 520, 680, 140], np.uint16)[:, None, None]  # B04, B03, B02, B08 of water
    data[:, :, size - land_cols:] = np.array([850, 1050, 820, 3200], np.uint16)[:, None, None]  # vegetation
    hulls = rasterize(SMALL_HULLS, out_shape=(size, size), transform=PX) > 0
    data[:, hulls] = 3000
    return write_raster(path, data, descriptions=["B04", "B03", "B02", "B08"])


def test_land_far_from_water_is_dry_and_the_margin_keeps_the_shore(tmp_path, monkeypatch):
    path = land_and_sea(tmp_path / "coast.tif", size=400, land_cols=300)
    monkeypatch.setattr(water, "MARGIN_M", 500.0)
    grid = TileGrid(400, 400, 40, 0, UTM)  # 10 m pixels: 40 px = 400 m tiles; water in columns 0-99
    with Scene.open(path) as scene:
        dry = dry_tiles(scene, grid)
    # Kept: every tile within 500 m (50 px) of the water: columns 0-149, tile columns 0-3 (tile 3 starts at 120).
    assert dry == {(r, c) for r in range(10) for c in range(4, 10)}
    # Without near infrared or short-wave infrared there is no test: nothing is dry.
    rgb = write_raster(tmp_path / "rgb.tif", np.full((3, 40, 40), 500, np.uint16), descriptions=["red", "green",
                                                                                                  "blue"])
    with Scene.open(rgb) as scene:
        assert dry_tiles(scene, grid) is None


def test_water_bands_take_either_index_and_colour_names():
    assert water_bands(["B04", "B03", "B02", "B08"]) == ["B03", "B08"]
    assert water_bands(["B04", "B03", "B02", "B08", "B11"]) == ["B03", "B08", "B11"]
    assert water_bands(["red", "green", "nir"]) == ["B03", "B08"]
    assert water_bands(["B08", "B11"]) is None and water_bands([None, None, None]) is None


def test_detect_skips_dry_tiles_unless_all_tiles(tmp_path, tiny_bundle):
    scene = land_and_sea(tmp_path / "coast.tif", size=400, land_cols=300)  # 128 px tiles, 96 px cores: 5 x 5
    totals = {}
    for flag in ([], ["--all-tiles"]):
        out = tmp_path / f"ships{len(flag)}.geojson"
        result = run_cli("detect", scene, "-m", tiny_bundle, "-o", out, "--progress", "json", *flag)
        assert result.exit_code == 0, result.output
        events = [json.loads(line) for line in result.stdout.splitlines()]
        totals[bool(flag)] = next(e for e in events if e["event"] == "plan")["tiles_total"]
    assert totals[True] == 25 and totals[False] == 10  # water in columns 0-99 (+ 600 m): tile columns 0-1 kept


def test_batch_passes_all_tiles_to_its_detectors(tiny_bundle):
    from samgeo_ship.batch.worker import detector_for
    skipping, everything = detector_for(tiny_bundle, "cpu"), detector_for(tiny_bundle, "cpu", all_tiles=True)
    assert not skipping.all_tiles and everything.all_tiles
    assert detector_for(tiny_bundle, "cpu", all_tiles=True) is everything  # each setting's model is loaded once
