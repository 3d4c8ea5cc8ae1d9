import json
import shutil

import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine
from PIL import Image

from samgeo_ship import ShipDetector, calibrate, detect as detect_scene, evaluate as evaluate_scene
from samgeo_ship.errors import ShipsegError
from samgeo_ship.inference.detector import DetectWarning
from samgeo_ship.models.bundle import read_card
from samgeo_ship.models.zoo import default_model
from samgeo_ship.raster import Scene
from samgeo_ship.vector.parts import mask_polygon as _polygon
from samgeo_ship.vector.writers import write_ships

from conftest import (BANDS, HULLS, PX, SMALL_HULLS, UTM, in_crs, ring_is_ccw, run_cli, ship, write_harbour,
                      write_raster, write_truth)

DEFAULT_MODEL = default_model()


def test_detect_writes_valid_geojson_and_json_progress(tmp_path, tiny_bundle, harbour):
    out = tmp_path / "ships.geojson"
    result = run_cli("detect", harbour, "-m", tiny_bundle, "-o", out, "--progress", "json", "--batch-size", 3,
                 "--preview", tmp_path / "look.png")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert {e["event"] for e in events[:-1]} == {"progress", "plan"}
    plan = next(e for e in events if e["event"] == "plan")  # once, after the first batch, before the rest
    assert plan["tiles_total"] == 9 and plan["tiles_done"] <= 3 and plan["eta_s"] >= 0
    assert [e["event"] for e in events].count("plan") == 1
    assert events[-2]["tiles_done"] == events[-2]["tiles_total"] == 9  # 200 px / 96 px cores -> 3 x 3
    assert events[-1] == {"event": "done", "output": str(out), "ships": events[-1]["ships"]}
    doc = json.loads(out.read_text())
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == events[-1]["ships"]
    assert Image.open(tmp_path / "look.png").size == (200, 200)


def test_default_output_name_is_beside_the_current_folder(tmp_path, tiny_bundle, harbour, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli("detect", harbour, "-m", tiny_bundle, "-q")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "harbour.ships.geojson").exists()


def test_user_boxes_give_one_polygon_per_box_inside_the_scene(tmp_path, tiny_bundle, harbour):
    boxes = tmp_path / "boxes.geojson"
    with Scene.open(harbour) as s:
        transform, bounds = s.transform, shapely.box(*s.bounds)
    hulls = in_crs(HULLS, transform)
    gpd.GeoDataFrame(geometry=[h.envelope for h in hulls], crs="EPSG:32631").to_crs("EPSG:4326").to_file(boxes)
    out = tmp_path / "ships.gpkg"
    result = run_cli("detect", harbour, "-m", tiny_bundle, "--boxes", boxes, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    ships = gpd.read_file(out)
    assert len(ships) == 3 and sorted(ships["prompt"]) == [0, 1, 2]
    assert ships.crs.to_epsg() == 32631 and all(bounds.buffer(1e-6).contains(g) for g in ships.geometry)
    assert (ships.geom_type == "Polygon").all()


def test_detect_scene_in_degrees_scales_tiles_to_the_training_footprint(tmp_path, tiny_bundle):
    # ~5 m pixels at 43 N in degrees: windows of ~256 scene px cover the 1280 m of a 128 px, 10 m training tile
    t = Affine(0.00006, 0, 5.3, 0, -0.000045, 43.3)
    path = write_harbour(tmp_path / "deg.tif", size=300, transform=t, crs="EPSG:4326")
    with Scene.open(path) as s:
        grid = ShipDetector(tiny_bundle, device="cpu").grid(s)
        assert 0.8 * 256 < grid.tile_size < 1.2 * 256 and grid.overlap == round(16 * 10 / s.ground_pixel_size_m)
    ships = detect_scene(path, tiny_bundle, device="cpu")
    assert ships.crs.to_epsg() == 4326
    assert list(ships.columns[:10]) == ["ship_id", "score", "area_m2", "length_m", "beam_m", "heading_deg", "lon",
                                        "lat", "scene", "model"]


def test_resolution_far_from_the_models_is_refused_and_coarse_pixels_warn(tmp_path, tiny_bundle):
    coarse = write_harbour(tmp_path / "coarse.tif", transform=Affine(60.0, 0, 500_000, 0, -60.0, 4_800_000))
    result = run_cli("detect", coarse, "-m", tiny_bundle, "-o", tmp_path / "c.geojson", "-q")
    assert result.exit_code == 2 and "more than 4x apart" in result.stderr
    assert not (tmp_path / "c.geojson").exists()
    blurry = write_harbour(tmp_path / "blurry.tif", size=64, transform=Affine(20.0, 0, 500_000, 0, -20.0, 4_800_000))
    with pytest.warns(DetectWarning, match="below what the model resolves"):
        detect_scene(blurry, tiny_bundle, device="cpu")


def _bad_detect_input(case, tmp_path, bundle, scene):
    """(scene, model, extra arguments) of one kind of bad input to `shipseg detect`."""
    if case == "missing scene":
        return tmp_path / "missing.tif", bundle, []
    if case == "not a raster":
        (tmp_path / "broken.tif").write_text("not a raster")
        return tmp_path / "broken.tif", bundle, []
    if case == "not a bundle":
        (tmp_path / "model.safetensors").write_bytes(b"\x00" * 64)
        return scene, tmp_path / "model.safetensors", []
    if case == "boxes elsewhere":
        far = tmp_path / "far.geojson"
        gpd.GeoDataFrame(geometry=[shapely.box(10, 10, 10.01, 10.01)], crs="EPSG:4326").to_file(far)
        return scene, bundle, ["--boxes", far]
    if case == "missing model":
        return scene, tmp_path / "none.safetensors", []
    return scene, bundle, ["--bands", "B08"]  # "no such band"


@pytest.mark.parametrize("case", ["missing scene", "not a raster", "not a bundle", "boxes elsewhere",
                                  "missing model", "no such band"])
def test_bad_input_exits_2_with_one_line_and_no_output(tmp_path, tiny_bundle, harbour, case):
    scene, model, extra = _bad_detect_input(case, tmp_path, tiny_bundle, harbour)
    out = tmp_path / "out.geojson"
    result = run_cli("detect", scene, "-m", model, "-o", out, "-q", *extra)
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("Error: "), result.stderr
    assert not out.exists() and not list(tmp_path.glob(".*tmp*"))


def test_an_all_nodata_scene_gives_an_empty_valid_output(tmp_path, tiny_bundle):
    empty = write_raster(tmp_path / "empty.tif", np.zeros((3, 64, 64), np.uint16), nodata=0, descriptions=BANDS)
    out = tmp_path / "ships.geojson"
    result = run_cli("detect", empty, "-m", tiny_bundle, "-o", out, "--progress", "json",
                     "--preview", tmp_path / "look.png")
    assert result.exit_code == 0, result.output
    assert "no valid pixels" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[-2] == {"event": "progress", "tiles_done": 1, "tiles_total": 1, "ships": 0}
    assert events[-1] == {"event": "done", "output": str(out), "ships": 0}
    assert json.loads(out.read_text()) == {"type": "FeatureCollection", "features": []}
    boxes = detect_scene(empty, tiny_bundle, boxes=np.array([[500_100.0, 4_799_700.0, 500_200.0, 4_799_800.0]]))
    assert len(boxes) == 0 and "prompt" in boxes.columns and boxes.crs.to_epsg() == 32631


def test_detect_geojson_is_rfc7946(tmp_path, tiny_bundle, harbour):
    # box prompts, so there are ships to check whatever the random model makes of them
    with Scene.open(harbour) as s:
        boxes = np.array([h.bounds for h in in_crs(HULLS, s.transform)])
        lon_lat = gpd.GeoSeries([shapely.box(*s.bounds)], crs=s.crs).to_crs("EPSG:4326").total_bounds
    out = write_ships(detect_scene(harbour, tiny_bundle, boxes=boxes, device="cpu"), tmp_path / "ships.geojson")
    doc = json.loads(out.read_text())
    assert doc["type"] == "FeatureCollection" and "crs" not in doc and len(doc["features"]) == 3
    for feature in doc["features"]:
        assert feature["geometry"]["type"] == "Polygon" and feature["id"] == feature["properties"]["ship_id"]
        exterior, *holes = feature["geometry"]["coordinates"]
        assert ring_is_ccw(exterior) and not any(ring_is_ccw(h) for h in holes)  # the right-hand rule
        for ring in (exterior, *holes):
            assert ring[0] == ring[-1] and len(ring) >= 4
            lons, lats = np.asarray(ring).T
            assert np.all(np.abs(lons) <= 180) and np.all(np.abs(lats) <= 90)
            # lon, lat order, inside the scene's footprint
            assert np.all((lon_lat[0] - 1e-6 <= lons) & (lons <= lon_lat[2] + 1e-6))
            assert np.all((lon_lat[1] - 1e-6 <= lats) & (lats <= lon_lat[3] + 1e-6))


def test_bad_input_in_json_mode_reports_an_error_event(tmp_path, tiny_bundle):
    result = run_cli("detect", tmp_path / "missing.tif", "-m", tiny_bundle, "--progress", "json",
                     "-o", tmp_path / "o.geojson")
    assert result.exit_code == 2
    assert json.loads(result.stdout.splitlines()[-1])["event"] == "error"


def test_evaluate_reports_table_json_and_figure(tmp_path, tiny_bundle, harbour):
    truth = tmp_path / "truth.geojson"
    gpd.GeoDataFrame(geometry=in_crs(HULLS, UTM), crs="EPSG:32631").to_crs("EPSG:4326").to_file(truth)
    result = run_cli("evaluate", tiny_bundle, harbour, truth, "--json", tmp_path / "e.json",
                     "--figure", tmp_path / "e.png", "-q")
    assert result.exit_code == 0, result.output
    assert "precision" in result.stdout and "filled truth box" in result.stdout
    scores = json.loads((tmp_path / "e.json").read_text())
    assert scores["truth_ships"] == 3 and 0 <= scores["f1"] <= 1
    assert 0 <= scores["box_prompt_mean_iou"] <= 1
    assert 0.3 < scores["box_baseline_mean_iou"] < 0.9  # rotated hulls fill part of their box
    assert Image.open(tmp_path / "e.png").mode == "RGB"


def test_library_errors_are_shipseg_errors(tmp_path, tiny_bundle, harbour):
    with pytest.raises(ShipsegError, match="either box prompts or point prompts"):
        detect_scene(harbour, tiny_bundle, boxes=np.zeros((1, 4)), points=np.zeros((1, 2)))


def test_calibrate_writes_the_best_threshold_into_the_card(tmp_path, small_harbour):
    model = tmp_path / "m.safetensors"
    shutil.copy(DEFAULT_MODEL, model)
    truth = write_truth(tmp_path / "truth.geojson", SMALL_HULLS)
    before = model.read_bytes()
    dry = run_cli("calibrate", model, small_harbour, truth, "--dry-run", "-q")
    assert dry.exit_code == 0, dry.output
    assert "would change" in dry.stdout and model.read_bytes() == before
    result = calibrate(model, small_harbour, truth, device="cpu")
    card = read_card(model)
    assert card.thresholds["score"] == result.threshold == max(
        (t for t, m in result.sweep if m.f1 == max(mm.f1 for _, mm in result.sweep)))
    assert card.weights_sha256 == read_card(DEFAULT_MODEL).weights_sha256
    # Detection at the written threshold scores what the sweep promised.
    again = evaluate_scene(model, small_harbour, truth, device="cpu")
    assert again.f1 == pytest.approx(result.best.f1) and again.tp == result.best.tp
    missing = run_cli("calibrate", model, small_harbour, tmp_path / "nope.geojson", "-q")
    assert missing.exit_code == 2 and len(missing.stderr.strip().splitlines()) == 1


def test_calibrate_leaves_the_model_alone_when_it_finds_no_ship(tmp_path, small_harbour):
    """Truth ships where the scene has only water: F1 is 0 at every threshold, which says nothing about the
    threshold (the tie rule alone would write the strictest, 0.9, and the model would detect nothing anywhere)."""
    model = tmp_path / "m.safetensors"
    shutil.copy(DEFAULT_MODEL, model)
    truth = write_truth(tmp_path / "elsewhere.geojson", [ship(74, 82, 20, 5, 0, PX), ship(86, 10, 16, 4, 90, PX)])
    before = model.read_bytes()
    result = calibrate(model, small_harbour, truth, device="cpu")
    assert result.found_none and result.best.tp == 0 and all(m.f1 == 0 for _, m in result.sweep)
    assert result.threshold == result.previous == read_card(DEFAULT_MODEL).thresholds["score"]
    assert model.read_bytes() == before
    said = run_cli("calibrate", model, small_harbour, truth, "-q")
    assert said.exit_code == 0 and "no ship of the scene found at any threshold" in said.stdout
    assert "<- chosen" not in said.stdout and model.read_bytes() == before


@pytest.mark.slow
def test_calibrate_pools_the_ships_of_several_scenes(tmp_path, small_harbour):
    """With more (scene, truth) pairs the sweep scores every scene's ships together: here the same scene twice, once
    with all three hulls as truth and once with two (the third then counts as a false detection)."""
    scene = small_harbour
    truths = [write_truth(tmp_path / f"{name}.geojson", hulls)
              for name, hulls in (("all", SMALL_HULLS), ("two", SMALL_HULLS[:2]))]
    alone = [calibrate(DEFAULT_MODEL, scene, t, device="cpu", write=False) for t in truths]
    both = calibrate(DEFAULT_MODEL, scene, truths[0], device="cpu", write=False, more=[(scene, truths[1])])
    for (t, pooled), (_, a), (_, b) in zip(both.sweep, alone[0].sweep, alone[1].sweep):
        assert (pooled.tp, pooled.fp, pooled.fn) == (a.tp + b.tp, a.fp + b.fp, a.fn + b.fn), t
    assert max(m.tp for _, m in both.sweep) > 0  # the default model finds these hulls: the sum is not 0 + 0
    odd = run_cli("calibrate", DEFAULT_MODEL, scene, truths[0], scene, "--dry-run", "-q")
    assert odd.exit_code == 2 and "come in pairs" in odd.stderr and len(odd.stderr.strip().splitlines()) == 1
    ok = run_cli("calibrate", DEFAULT_MODEL, scene, truths[0], scene, truths[1], "--dry-run", "-q")
    assert ok.exit_code == 0 and f"to {both.threshold:g}" in ok.stdout, ok.output


def test_specks_are_dropped_but_not_ships():
    """A learned-prompter mask whose largest polygon is shorter than min_px (a glint's lone pixels) is no ship; a
    ship is kept, georeferenced in the tile's affine; with min_px 0 (user prompts) every mask is answered."""
    speckle = np.zeros((64, 64), bool)
    speckle[[20, 40, 50, 31], [30, 12, 45, 63]] = True  # lone pixels, one on the tile's edge
    hull = np.zeros((64, 64), bool)
    hull[30:33, 20:34] = True  # 14 x 3 px
    assert _polygon(speckle, Affine.identity(), min_px=4) is None
    assert _polygon(speckle, Affine.identity(), min_px=0) is not None
    kept = _polygon(hull, Affine(10, 0, 0, 0, -10, 640), min_px=4)
    assert kept is not None and 120 < kept.bounds[2] - kept.bounds[0] < 150  # 14 px of 10 m
    assert 300 < kept.bounds[1] < 340  # rows 30-33 below y = 640
