"""Official SAM checkpoints used directly with -m: a .pth file or vit_b from the weights cache segments box prompts at
the scene's own resolution (one polygon per box, across a seam, larger than a tile), refuses to run without prompts,
and refuses a file that claims an official name but not its bytes.

The checkpoint is an official-format vit_b state_dict with random weights, so the masks are arbitrary: the tests
assert geometry (count, place, CRS), never mask quality. Each vit_b encoder pass is a 1024 px input, many seconds on
a small CPU, so the detection runs once, with three boxes that need three passes (about 2 minutes on 2 busy cores,
hence slow)."""

import dataclasses

import geopandas as gpd
import numpy as np
import pytest
import shapely
import torch
from affine import Affine
from click.testing import CliRunner
from segment_anything import build_sam_vit_b

from conftest import write_raster
from samgeo_ship import ShipDetector, evaluate
from samgeo_ship.errors import ShipsegError
from samgeo_ship.models import official, weights
from samgeo_ship.models.registry import CONFIGS, build_sam
from samgeo_ship.models.zoo import load_model
from shipseg_cli.main import cli

PIXEL_M = 0.3  # an aerial scene, 30x finer than the bundled Sentinel-2 model's pixels
ORIGIN = (500_000.0, 5_700_000.0)
TILE = 256  # scene px: a 512 px scene is 2 x 2 tiles, each seen at the model's 1024 px input
# Boxes in scene pixels (col0, row0, col1, row1): one inside tile (0, 0), one across the seam at column 256, one
# longer than a tile (360 px), which gets a decimated window of its own.
BOXES_PX = {"small": (40, 150, 100, 200), "seam": (200, 50, 320, 120), "large": (100, 300, 460, 420)}
TRANSFORM = Affine(PIXEL_M, 0, ORIGIN[0], 0, -PIXEL_M, ORIGIN[1])


def run(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def one_error_line(result, *words):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def utm_box(col0, row0, col1, row1):
    x0, y1 = TRANSFORM @ (col0, row0)
    x1, y0 = TRANSFORM @ (col1, row1)
    return shapely.box(x0, y0, x1, y1)


@pytest.fixture(scope="module")
def vit_b(tmp_path_factory):
    """An official-format vit_b file: segment_anything's own builder, a plain state_dict, torch.save (~375 MB)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("official") / "my_vit_b.pth"
    torch.save(build_sam_vit_b(checkpoint=None).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A 512 px RGB scene at 0.3 m in UTM, bands without names (as most orthophotos)."""
    data = np.random.default_rng(0).integers(0, 255, (3, 512, 512), dtype=np.uint8)
    return write_raster(tmp_path_factory.mktemp("scene") / "harbour.tif", data, transform=TRANSFORM)


@pytest.fixture
def cache(tmp_path, monkeypatch, vit_b):
    """A weights cache holding the random vit_b under the official file name, with its hash as the known one."""
    monkeypatch.setenv("SHIPSEG_HOME", str(tmp_path / "home"))
    known = weights.CHECKPOINTS["vit_b"]
    monkeypatch.setitem(weights.CHECKPOINTS, "vit_b", dataclasses.replace(
        known, sha256=weights.sha256_file(vit_b), size_bytes=vit_b.stat().st_size))
    cached = weights.cached_path("vit_b")
    cached.parent.mkdir(parents=True)
    cached.symlink_to(vit_b)
    return cached


@pytest.mark.slow
def test_vit_b_from_cache_segments_boxes_in_any_crs_at_the_scene_resolution(cache, scene, tmp_path):
    boxes = gpd.GeoDataFrame(geometry=[utm_box(*b) for b in BOXES_PX.values()], crs="EPSG:32631")
    boxes_file = tmp_path / "boxes.geojson"
    boxes.to_crs("EPSG:4326").to_file(boxes_file)  # drawn in a GIS in WGS84
    out = tmp_path / "ships.gpkg"
    result = run("detect", scene, "-m", "vit_b", "--boxes", boxes_file, "--tile-size", TILE, "--overlap", 0,
                 "--batch-size", 1, "--device", "cpu", "-o", out, "-q")
    assert result.exit_code == 0, result.output
    ships = gpd.read_file(out)
    assert ships.crs.to_epsg() == 32631  # the scene's CRS, not the boxes'
    assert sorted(ships["prompt"]) == [0, 1, 2]  # one polygon per box: across the seam, larger than a tile
    assert (ships.geom_type == "Polygon").all()
    assert set(ships["model"]) == {cache.name}
    for (name, (c0, r0, c1, r1)), prompt in zip(BOXES_PX.items(), range(3)):
        ship = ships.geometry[ships["prompt"] == prompt].iloc[0]
        # The mask is kept within its box grown by the model's margin (plus a pixel for the reprojected corners).
        grow_c, grow_r = official.BOX_MARGIN * (c1 - c0) + 1, official.BOX_MARGIN * (r1 - r0) + 1
        assert ship.within(utm_box(c0 - grow_c, r0 - grow_r, c1 + grow_c, r1 + grow_r)), name
        assert ship.area > 0


@pytest.mark.slow
def test_evaluate_scores_the_truth_boxes_only(vit_b, scene, tmp_path):
    truth = tmp_path / "truth.geojson"
    gpd.GeoDataFrame(geometry=[utm_box(*BOXES_PX["small"])], crs="EPSG:32631").to_file(truth)
    detector = ShipDetector(vit_b, device="cpu", tile_size=TILE, overlap=0, batch_size=1)
    result = evaluate(detector, scene, truth)
    assert result.truth_ships == 1 and result.box_prompt_mean_iou is not None
    assert result.box_baseline_mean_iou == pytest.approx(1.0, abs=0.05)  # the truth is its own box
    assert (result.f1, result.tp, result.predicted_ships) == (None, None, None)  # it cannot detect: not scored 0
    assert "n/a / n/a / n/a" in result.table()


def test_vit_b_missing_from_cache_names_the_download(tmp_path):
    result = run("detect", tmp_path / "any.tif", "-m", "vit_b", "-q", env={"SHIPSEG_HOME": str(tmp_path)})
    one_error_line(result, "vit_b", "shipseg weights download vit_b")


def test_no_prompts_is_one_line_naming_the_commands_that_make_a_detector(vit_b, scene, tmp_path):
    result = run("detect", scene, "-m", vit_b, "-o", tmp_path / "ships.geojson", "-q")
    one_error_line(result, vit_b.name, "no ship prompter", "shipseg train --model-type vit_b", "shipseg oneshot")
    assert not (tmp_path / "ships.geojson").exists()
    folder = tmp_path / "scenes"
    folder.mkdir()
    (folder / scene.name).symlink_to(scene)
    batch = run("batch", folder, "-o", tmp_path / "out", "-m", vit_b, "-q")
    one_error_line(batch, "no ship prompter")


def test_loaded_directly_the_model_has_an_any_resolution_card(vit_b):
    model, card = load_model(vit_b)
    assert (card.kind, card.model_type, card.pixel_size_m, card.tile_size) == ("sam", "vit_b", None, 1024)
    assert all(key.startswith("sam.") for key in model.state_dict()) and not model.training  # no prompter weights
    detector = ShipDetector((model, card), device="cpu")
    assert detector.any_resolution and not detector.finds_ships and detector.tile_size == 1024
    with pytest.raises(ShipsegError, match="has no ship prompter"):
        detector.detect("any.tif")


def test_official_name_with_other_bytes_is_refused(vit_b, tmp_path):
    fake = tmp_path / weights.CHECKPOINTS["vit_b"].filename
    fake.symlink_to(vit_b)
    with pytest.raises(ShipsegError, match="download it again"):
        load_model(fake)
    one_error_line(run("detect", tmp_path / "any.tif", "-m", fake, "-q"), fake.name, "download it again")


def test_pth_of_another_model_is_refused(tmp_path):
    small = tmp_path / "tiny.pth"
    torch.save(build_sam(CONFIGS["sam_tiny"]).state_dict(), small)
    with pytest.raises(ShipsegError, match="fit none of vit_b, vit_l and vit_h"):
        load_model(small)


def test_decimated_window_read_keeps_place_and_validity(tmp_path):
    """A window twice the output size, half outside the scene: each output pixel is the mean of 2 x 2 scene pixels,
    and the part outside the scene is invalid."""
    values = np.arange(64 * 64, dtype=np.float32).reshape(1, 64, 64)
    path = write_raster(tmp_path / "ramp.tif", values, transform=TRANSFORM)
    from samgeo_ship.raster import Normalisation, Scene
    from rasterio.windows import Window

    with Scene.open(path, normalisation=Normalisation((0.0,), (64.0 * 64,))) as scene:
        image, valid = scene.read_decimated(Window(-64, 0, 128, 128), 64)
    assert valid[:32, 32:].all() and not valid[:, :32].any() and not valid[32:].any()
    expected = values[0].reshape(32, 2, 32, 2).mean(axis=(1, 3)) / (64 * 64)
    np.testing.assert_allclose(image[0, :32, 32:], expected, atol=1e-6)


def test_a_box_longer_than_a_tile_gets_one_window_and_a_seam_box_both_tiles(scene):
    """Where each box of the end-to-end test goes: the small one to its tile, the seam one to both tiles it crosses
    (their parts are unioned), the long one out of the grid into a window of its own that holds all of it."""
    from samgeo_ship.inference.prompts import assign_prompts
    from samgeo_ship.inference.windows import split_large_boxes
    from samgeo_ship.raster import Scene
    from samgeo_ship.tiling import TileGrid

    boxes = np.array([utm_box(*b).bounds for b in BOXES_PX.values()])
    with Scene.open(scene) as opened:
        grid = TileGrid.for_scene(opened, TILE, overlap_px=0)
        prompts, windows = split_large_boxes(grid, opened, boxes, assign_prompts(grid, opened, boxes=boxes))
    tiles_of = {i: sorted(k for k, p in prompts.items() if i in p.ids) for i in range(3)}
    assert tiles_of[0] == [(0, 0)] and tiles_of[1] == [(0, 0), (0, 1)]
    assert len(windows) == 1 and tiles_of[2] == [(windows[0].row, windows[0].col)]
    window_box = prompts[tiles_of[2][0]].boxes[0]
    assert (window_box >= 0).all() and (window_box <= TILE).all()  # the whole box, inside the decimated window
    corners = np.array([windows[0].transform @ tuple(window_box[[0, 1]]),
                        windows[0].transform @ tuple(window_box[[2, 3]])])
    np.testing.assert_allclose([*corners.min(axis=0), *corners.max(axis=0)], boxes[2], atol=1e-6)
