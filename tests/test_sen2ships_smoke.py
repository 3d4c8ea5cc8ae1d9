"""Smoke test on real Sentinel-2 data: prepare one sen2ships scene, fine-tune the synthetic-only base model on it
briefly, and score detection with the code behind ``shipseg evaluate`` on part of another scene. It starts from
benchmarks/models/synthetic_base.safetensors (never saw Sentinel-2), not the bundled default model: that one was
trained on all nine scenes and has seen the test ships.

From random weights nothing measurable is learned in a test's budget (measured at earlier stops: 1 to 25 epochs on
busan from random initialisation detect none of the test window's ships at any threshold), so the test starts
where a user starts, from pretrained weights. It checks the real path end to end, not the model's quality
(benchmarks/sen2ships.py measures that): detection must find some of the window's ships, and the truth boxes must
come back as masks on their own ships."""

from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.windows import Window

from samgeo_ship import metrics
from samgeo_ship.dataset import prepare_dataset
from samgeo_ship.inference.calibrate import calibrate
from samgeo_ship.inference.evaluate import score_scene
from samgeo_ship.labels import load_labels
from samgeo_ship.raster import Scene
from samgeo_ship.training import TrainConfig, train

TRAIN_SCENE = "busan"  # 54 ships, the most of the nine, in a small scene (330 tiles of 64 px)
TEST_SCENE, TEST_WINDOW = "algiers", Window(128, 672, 256, 256)  # 14 of algiers' 27 ships lie in this window
PREP = dict(bands=["B04", "B03", "B02"], tile_size=64, overlap=8)  # the default model's recipe
# The starting point: a sam_tiny trained on synthetic harbours only (scripts/train_synthetic_base.sh), as a user
# starts from pretrained weights. The bundled default model cannot be one: it has seen every sen2ships scene.
BASE = Path(__file__).resolve().parents[1] / "benchmarks" / "models" / "synthetic_base.safetensors"
EPOCHS = 2
MIN_RECALL = 0.1  # 2 of the window's 14 ships


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


def test_fine_tuned_on_one_real_scene_detection_finds_ships_on_another(sen2ships, tmp_path):
    dataset = tmp_path / TRAIN_SCENE
    summary = prepare_dataset(sen2ships / TRAIN_SCENE / "scene.tif", sen2ships / TRAIN_SCENE / "labels.coco.json",
                              dataset, **PREP)
    assert (summary.ships, summary.ships_in_tiles) == (54, 54)
    config = TrainConfig(init=str(BASE), epochs=EPOCHS, batch_size=8, lr=2e-4, negatives=0.1, val_fraction=0.0,
                         seed=0, threads=2)
    result = train([dataset], tmp_path / "model.safetensors", config)
    assert np.isfinite(result.history[-1]["loss"])
    scene, truth = crop(sen2ships, TEST_SCENE, TEST_WINDOW, tmp_path)
    # The real path end to end: detection (prompter, decoder, vectorising, matching at IoU 0.5) finds ships of a
    # scene the model never saw, at the lowest threshold of calibrate's sweep. Fine-tuning on real labels lowers the
    # prompter's scores (on this window nothing is found above 0.2, the card's 0.3 finds one ship), so the test
    # reads the sweep rather than the card's threshold. Measured: 3 of the 14 ships (recall 0.21, precision 0.05;
    # the base alone finds 2 at 0.1). A broken stage (tiles off their labels, prompts or masks in the wrong pixels
    # of a cropped scene, a fine-tuned bundle that cannot be used) finds none.
    sweep = dict(calibrate(result.path, scene, truth, device="cpu").sweep)
    lowest = sweep[min(sweep)]
    assert lowest.n_truth == 14
    assert lowest.recall >= MIN_RECALL, lowest
    # Each truth box must come back as a mask on its own ship, at least about as well as the filled box.
    score = score_scene(result.path, scene, truth, device="cpu")
    ious, baseline = np.array(score.box_prompt_iou), np.array(score.box_baseline_iou)
    assert np.mean(ious >= metrics.IOU_THRESHOLD) >= 0.6, ious.round(2)
    assert ious.mean() >= 0.9 * baseline.mean()
