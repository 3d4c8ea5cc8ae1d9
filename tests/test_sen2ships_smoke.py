"""Smoke test on real Sentinel-2 data: prepare one sen2ships scene, train a sam_tiny on it from random
initialisation, and score it with the code behind ``shipseg evaluate`` on part of another scene. It starts from
random weights, not the bundled default model: that one was trained on all nine scenes and has seen the test ships.

It checks the pipeline on real data, not what the model learned: nothing measurable is learned in 90 s. Measured on
2 busy CPU cores (busan -> the algiers window below, 14 ships): after 1 epoch (58 tiles, ~40 s) and even after 8
epochs (~6 min, lr 5e-3) the prompter's heatmap stays below 0.1 everywhere, so detection finds no ship (recall 0 at
IoU 0.5, 0.3 and 0.1); box-prompted masks score mean IoU 0.71, the same as the filled box (0.71) that the decoder's
box prior (TrainConfig.box_prior) starts from, and 0.00 without the prior. On 5 scenes, 3 epochs (~12 min) still
find no ship on the validation scene (benchmarks/README.md). With the prompter's pixel branch, 1, 3, 10 and 25
epochs on busan (11-213 s) still detect none of the window's ships at any threshold from 0.1, so the recall this
test was asked to assert is not there to assert. What this test can catch is a broken stage: labels that
miss their tiles, prompts or masks placed in the wrong pixels of a cropped scene, a bundle that cannot be used."""

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.windows import Window

from samgeo_ship import metrics
from samgeo_ship.dataset import prepare_dataset
from samgeo_ship.inference.evaluate import score_scene
from samgeo_ship.labels import load_labels
from samgeo_ship.raster import Scene
from samgeo_ship.training import TrainConfig, train

TRAIN_SCENE = "busan"  # 54 ships, the most of the nine, in a small scene (330 tiles of 64 px)
TEST_SCENE, TEST_WINDOW = "algiers", Window(128, 672, 256, 256)  # 14 of algiers' 27 ships lie in this window
PREP = dict(bands=["B04", "B03", "B02"], tile_size=64, overlap=8)  # the default model's recipe


def crop(data, name: str, window: Window, out) -> tuple:
    """``window`` of a sen2ships scene as a GeoTIFF, and its ships clipped to the window as GeoJSON."""
    tif, truth = out / f"{name}.tif", out / f"{name}.geojson"
    with rasterio.open(data / name / "scene.tif") as src:
        transform = src.transform @ Affine.translation(window.col_off, window.row_off)
        profile = {**src.profile, "width": window.width, "height": window.height, "transform": transform}
        with rasterio.open(tif, "w", **profile) as dst:
            dst.write(src.read(window=window))
            dst.descriptions = src.descriptions
    (left, top), (right, bottom) = transform @ (0, 0), transform @ (window.width, window.height)
    with Scene.open(data / name / "scene.tif") as scene:
        ships = load_labels(data / name / "labels.coco.json", scene).ships
    clipped = ships.geometry.intersection(shapely.box(left, bottom, right, top))
    gpd.GeoDataFrame(geometry=clipped[~clipped.is_empty].values, crs=ships.crs).to_file(truth)
    return tif, truth


def test_real_scenes_prepare_train_and_evaluate_from_random_init(sen2ships, tmp_path):
    dataset = tmp_path / TRAIN_SCENE
    summary = prepare_dataset(sen2ships / TRAIN_SCENE / "scene.tif", sen2ships / TRAIN_SCENE / "labels.coco.json",
                              dataset, **PREP)
    assert (summary.ships, summary.ships_in_tiles) == (54, 54)
    config = TrainConfig(model_type="sam_tiny", epochs=1, batch_size=4, lr=3e-3, negatives=0.0, val_fraction=0.0,
                         seed=0, threads=1)
    result = train([dataset], tmp_path / "model.safetensors", config)
    assert np.isfinite(result.history[-1]["loss"])
    scene, truth = crop(sen2ships, TEST_SCENE, TEST_WINDOW, tmp_path)
    score = score_scene(result.path, scene, truth, device="cpu")
    assert score.evaluation.truth_ships == 14
    # Each truth box must come back as a mask on its own ship: with the box prior that is about the filled box
    # (0.71 both, measured); prompts placed off their ships, or masks in the wrong pixels, would score far less.
    ious, baseline = np.array(score.box_prompt_iou), np.array(score.box_baseline_iou)
    assert np.mean(ious >= metrics.IOU_THRESHOLD) >= 0.6, ious.round(2)
    assert ious.mean() >= 0.9 * baseline.mean()
