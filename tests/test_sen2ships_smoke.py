"""Smoke test on real Sentinel-2 data: fine-tune the synthetic-only base model briefly on a crop of one sen2ships
scene, then detect, with the code behind ``shipseg evaluate``, on a crop of another. It starts from
benchmarks/models/synthetic_base.safetensors (never saw Sentinel-2), not the bundled default model: that one was
trained on all nine scenes and has seen the test ships. From random weights nothing measurable is learned in a
test's budget, so the test starts where a user starts, from pretrained weights.

It checks the real path end to end on small crops (16 training tiles, 12 test tiles), not the model's quality
(benchmarks/sen2ships.py measures that); preparing whole scenes from their COCO labels is tested in test_prepare and
test_labels. The fine-tuned masks on the unseen scene must beat a bound that the base model alone misses, and
detection must find ships where they are."""

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.windows import Window

from samgeo_ship import ShipDetector, metrics
from samgeo_ship.dataset import prepare_dataset
from samgeo_ship.inference.evaluate import score_scene
from samgeo_ship.labels import load_labels
from samgeo_ship.raster import Scene
from samgeo_ship.training import TrainConfig, train

TRAIN_SCENE, TRAIN_WINDOW = "busan", Window(432, 384, 192, 192)  # 20 of busan's 54 ships, 16 tiles of 64 px
TEST_SCENE, TEST_WINDOW = "algiers", Window(192, 768, 192, 144)  # 13 of algiers' 27 ships, 12 tiles
PREP = dict(bands=["B04", "B03", "B02"], tile_size=64, overlap=8)  # the default model's recipe
# The starting point: a sam_tiny trained on synthetic harbours only (scripts/train_synthetic_base.sh), as a user
# starts from pretrained weights. The bundled default model cannot be one: it has seen every sen2ships scene.
BASE = Path(__file__).resolve().parents[1] / "benchmarks" / "models" / "synthetic_base.safetensors"
MIN_TOUCHED = 0.5
# Few tiles, so a higher rate than a full run's for a few epochs: enough to move the masks, not the prompter's scores.
TRAINING = dict(init=str(BASE), epochs=3, batch_size=8, lr=5e-4, negatives=0.1, val_fraction=0.0, seed=0, threads=1)


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


@pytest.mark.slow
@pytest.mark.sen2ships
def test_fine_tuned_on_a_crop_of_one_real_scene_masks_and_finds_ships_on_another(sen2ships, tmp_path):
    scene, labels = crop(sen2ships, TRAIN_SCENE, TRAIN_WINDOW, tmp_path)
    summary = prepare_dataset(scene, labels, tmp_path / "dataset", **PREP)
    assert (summary.ships, summary.ships_in_tiles) == (20, 20)
    result = train([tmp_path / "dataset"], tmp_path / "model.safetensors", TrainConfig(**TRAINING))
    losses = [h["loss"] for h in result.history if "loss" in h]
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses
    scene, truth = crop(sen2ships, TEST_SCENE, TEST_WINDOW, tmp_path)
    # Detection at the lowest threshold of calibrate's sweep: a brief fine-tune on real labels lowers the
    # prompter's scores below the card's threshold.
    detector = ShipDetector(result.path, device="cpu", score_threshold=min(metrics.SCORE_GRID))
    score = score_scene(detector, scene, truth)
    assert score.evaluation.truth_ships == 13
    # Each truth box comes back as a mask on its own ship, at least about as well as the filled box; the synthetic
    # base alone falls short of the mean (it never saw a Sentinel-2 ship), so the fine-tuned weights are in use.
    ious, baseline = np.array(score.box_prompt_iou), np.array(score.box_baseline_iou)
    assert np.mean(ious >= metrics.IOU_THRESHOLD) >= 0.6, ious.round(2)
    assert ious.mean() >= 0.9 * baseline.mean(), (ious.mean(), baseline.mean())
    # The learned prompter's ships lie where the window's ships are (tiles or masks in the wrong pixels of a cropped
    # scene touch none), and at least one is a whole ship (IoU >= 0.5).
    touched = [any(p.intersects(t) for p in score.pred.geometry) for t in score.truth.geometry]
    assert np.mean(touched) >= MIN_TOUCHED and score.evaluation.tp >= 1, (touched, score.evaluation)
