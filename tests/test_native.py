"""The native-pixel proposer (models.native): its targets keep moored ships apart, it trains apart from SAM, its
bundle stores and loads it, and detection, evaluation and calibration use it with no option of their own."""

from __future__ import annotations

import json
import shutil
import warnings

import geopandas as gpd
import numpy as np
import pytest
import shapely
import torch

from samgeo_ship import ShipDetector, calibrate, evaluate as evaluate_scene, metrics
from samgeo_ship.inference.predictor import own_masks
from samgeo_ship.metrics import match
from samgeo_ship.inference.detector import DetectWarning
from samgeo_ship.models.bundle import load_bundle, read_card, update_card
from samgeo_ship.models.native import (DEFAULT_WIDTH, NativeProposer, box_masks, decode, native_loss, native_targets,
                                       regions)
from samgeo_ship.models.prompter import Prompter
from samgeo_ship.training.native import MASK_THRESHOLDS, ProposerConfig, box_f1, train_proposer

from conftest import SMALL_HULLS, run_cli, ship_dataset, write_truth


def _side_by_side(size=32):
    """Two ships moored side by side, one pixel of water between them: (2, T, T) masks and their boxes."""
    masks = torch.zeros(2, size, size, dtype=torch.bool)
    masks[0, 10:13, 4:24] = True  # rows 10-12
    masks[1, 14:17, 6:26] = True  # rows 14-16
    return masks, torch.tensor([[4, 10, 24, 13], [6, 14, 26, 17]], dtype=torch.float32)


def test_targets_give_ships_moored_side_by_side_one_peak_each_and_their_own_boxes():
    masks, boxes = _side_by_side()
    heat, edges, weight, ship = native_targets([masks], 32)
    # Decoding the targets themselves (edges as regressed, heat as logits) must give back both boxes exactly.
    found = decode(torch.logit(heat.clamp(1e-6, 1 - 1e-6)), edges, 1.0, 0.99)[0]
    assert len(found.boxes) == 2
    got = found.boxes[found.boxes[:, 1].argsort()]
    assert torch.allclose(got, boxes, atol=1e-4)
    # The water row between them is a valley, and no ship's Gaussian reaches onto the other's hull.
    assert heat[0, 0, 13, 14] < 0.5 and heat[0, 0, 14, 15] < 1
    assert ship[0, 0].sum() == masks.sum() and (weight[0, 0][~masks.any(0)] == 0).all()


def test_the_loss_is_lowest_for_the_targets_themselves():
    masks, _ = _side_by_side()
    targets = native_targets([masks], 32)
    heat, edges, _, ship = targets
    perfect = (torch.logit(heat.clamp(1e-4, 1 - 1e-4)), edges, torch.where(ship > 0, 20.0, -20.0))
    worse = (perfect[0].roll(3, -1), edges + 0.5, -perfect[2])
    assert native_loss(perfect, targets)[0] < native_loss(worse, targets)[0]


def test_box_f1_matches_one_to_one_at_iou_half():
    truth = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)]
    found = [(torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [40, 40, 45, 45]], dtype=torch.float32),
              torch.tensor([0.9, 0.8, 0.2]))]
    sweep = box_f1(found, truth, thresholds=(0.1, 0.5))
    assert sweep[0.1]["tp"] == 1 and sweep[0.1]["precision"] == pytest.approx(1 / 3)
    assert sweep[0.5]["tp"] == 1 and sweep[0.5]["precision"] == 0.5 and sweep[0.5]["recall"] == 0.5


@pytest.fixture(scope="module")
def native_sets(tmp_path_factory):
    """Two prepared datasets cut in 64 px tiles (as the Sentinel-2 models are)."""
    root = tmp_path_factory.mktemp("native")
    return [ship_dataset(root / f"ds{i}", seed=i, size=192, ships=8, tile=64) for i in range(2)]


@pytest.fixture(scope="module")
def native_bundle(tmp_path_factory, native_sets, tiny_bundle):
    out = tmp_path_factory.mktemp("native_model") / "native.safetensors"
    config = ProposerConfig(epochs=40, batch_size=4, lr=5e-3, negatives=1.0, patience=40, threads=1,
                            init=str(tiny_bundle))
    return train_proposer(native_sets[:1], out, config, val_datasets=native_sets[1:])


def test_it_learns_to_find_ships_in_a_scene_it_did_not_train_on(native_bundle):
    history = native_bundle.history
    assert history[0]["f1"] < native_bundle.card.validation["f1"]
    assert native_bundle.card.validation["f1"] >= 0.3


def test_the_bundle_stores_the_proposer_and_the_sam_of_init(native_bundle, tiny_bundle):
    model, card = load_bundle(native_bundle.path)
    assert card.kind == "native" and isinstance(model.proposer, NativeProposer)
    assert not hasattr(model, "prompter") and "native" in card.stored
    assert card.proposer["width"] == DEFAULT_WIDTH and card.proposer["sam_from"] == tiny_bundle.name
    assert 0 < card.thresholds["score"] < 1
    base, _ = load_bundle(tiny_bundle)
    assert torch.equal(model.sam.mask_decoder.iou_token.weight, base.sam.mask_decoder.iou_token.weight)


def test_a_bundle_without_a_proposer_field_still_loads_with_its_prompter(tiny_bundle):
    model, card = load_bundle(tiny_bundle)
    assert card.kind == "shipsam" and card.proposer == {} and isinstance(model.proposer, Prompter)


def test_detect_evaluate_and_calibrate_use_it_without_options(tmp_path, native_bundle, small_harbour, monkeypatch):
    proposed = []
    original = NativeProposer.proposals

    def spy(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        proposed.append(sum(len(p.boxes) for p in out))
        return out

    monkeypatch.setattr(NativeProposer, "proposals", spy)
    truth = write_truth(tmp_path / "truth.geojson", SMALL_HULLS)
    ShipDetector(str(native_bundle.path), device="cpu", score_threshold=0.1).detect(small_harbour)
    assert proposed and sum(proposed) >= 3  # bright hulls on dark water: the proposer finds them
    proposed.clear()
    assert evaluate_scene(native_bundle.path, small_harbour, truth, device="cpu").truth_ships == 3 and proposed
    model = tmp_path / "m.safetensors"
    shutil.copy(native_bundle.path, model)
    result = calibrate(model, small_harbour, truth, device="cpu")
    assert read_card(model).thresholds["score"] == result.threshold


def test_shipseg_train_native_writes_a_native_bundle(tmp_path, native_sets, tiny_bundle):
    out = tmp_path / "cli.safetensors"
    result = run_cli("train", native_sets[0], "--proposer", "native", "--init", tiny_bundle, "--epochs", 2,
                     "--val", native_sets[1], "-o", out, "-q", "--threads", 1)
    assert result.exit_code == 0, result.output
    card = read_card(out)
    assert card.kind == "native" and card.proposer["width"] == DEFAULT_WIDTH
    assert json.loads(card.to_json())["training"]["recipe"]["proposer"] == "native"


# ---- its own masks (--masks native) --------------------------------------------------------------------------------
def test_own_masks_become_detections_at_the_tiles_pixels():
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0, 2:4, 1:6] = True
    masks[1, 5:7, 2:7] = True
    got = own_masks(masks, torch.tensor([0.9, 0.6]), 16)  # the tile is read at twice the proposer's pixels
    assert [d.score for d in got] == pytest.approx([0.9, 0.6]) and all(np.isnan(d.iou_pred) for d in got)
    assert got[0].mask.shape == (16, 16) and got[0].mask.sum() == 4 * masks[0].sum()
    assert got[1].mask[10:14, 4:14].all() and got[1].mask.sum() == 4 * masks[1].sum()


def test_ships_touching_side_by_side_become_regions_of_their_own():
    masks = torch.zeros(2, 24, 24, dtype=torch.bool)
    masks[0, 5:8, 3:20] = True  # rows 5-7
    masks[1, 8:11, 4:21] = True  # rows 8-10: touching the first, no water between
    _, _, _, ship = native_targets([masks], 24)
    assert not ship[0, 0, 7].any() and not ship[0, 0, 8].any()  # the touching rows are left out of the target
    proposer = NativeProposer(24, mask_threshold=0.5)
    logits = torch.where(ship > 0, 4.0, -4.0)
    logits[0, 0, 6, 10] = 6.0  # the first ship's strongest pixel
    (found,) = regions(logits, 0.5, 2.0, 0.9)
    assert len(found.boxes) == 2 and found.scores[0] > found.scores[1]
    assert torch.equal(found.pixel_masks[0], masks[0] & ship[0, 0].bool())
    assert torch.equal(found.pixel_masks[1], masks[1] & ship[0, 0].bool())
    assert found.boxes[0].tolist() == [6, 10, 40, 14] and found.boxes[1].tolist() == [8, 18, 42, 22]
    assert regions(logits, 0.5, 2.0, 0.99)[0].boxes.shape == (1, 4)  # the score threshold on each region's best
    monkey = lambda x: (torch.zeros(1, 1, 24, 24), torch.zeros(1, 4, 24, 24), logits)
    proposer.forward = monkey
    (via,) = proposer.proposals(None, None, 0.9, images=torch.zeros(1, 3, 48, 48))
    assert not proposer.needs_embeddings and NativeProposer(24).needs_embeddings
    assert torch.equal(via.boxes, found.boxes) and torch.equal(via.pixel_masks, found.pixel_masks)


@pytest.fixture(scope="module")
def own_masks_bundle(tmp_path_factory, native_sets):
    out = tmp_path_factory.mktemp("native_own") / "own.safetensors"
    config = ProposerConfig(epochs=40, batch_size=4, lr=5e-3, negatives=1.0, patience=40, threads=1, masks="native")
    return train_proposer(native_sets[:1], out, config, val_datasets=native_sets[1:])


def test_its_own_masks_are_chosen_on_validation_and_detection_runs_no_sam(tmp_path, own_masks_bundle, small_harbour,
                                                                          sam_forbidden):
    card = own_masks_bundle.card
    assert card.proposer["mask_threshold"] in MASK_THRESHOLDS and card.validation["what"].startswith("ship region boxes")
    history = own_masks_bundle.history
    assert history[0]["f1"] < card.validation["f1"] and card.validation["f1"] >= 0.3  # it learned the regions

    ships = ShipDetector(str(own_masks_bundle.path), device="cpu").detect(small_harbour)
    truth = gpd.read_file(write_truth(tmp_path / "truth.geojson", SMALL_HULLS)).geometry
    matched = match(list(ships.geometry), list(truth))
    assert len(ships) >= 1 and len(matched.pairs) >= 1  # a ship of the three drawn at IoU 0.5 from its own pixels


def test_box_masks_take_the_largest_ship_region_in_each_box_or_the_box_when_it_holds_none():
    prob = torch.full((16, 16), 0.05)
    prob[2:5, 2:10] = 0.9  # a hull
    prob[2:4, 12:14] = 0.8  # a smaller one, also in the first box
    boxes = torch.tensor([[1.0, 1.0, 15.0, 6.0],  # both: the larger
                          [0.5, 9.5, 6.2, 12.0],  # open water: the box itself, the pixels whose centres it holds
                          [-5.0, 3.0, 11.0, 4.0]])  # past the tile's edge: clipped; the hull's part inside it
    masks, scores = box_masks(prob, 0.5, boxes)
    expected = torch.zeros(3, 16, 16, dtype=torch.bool)
    expected[0, 2:5, 2:10] = True
    expected[1, 9:12, 0:6] = True
    expected[2, 3:4, 2:10] = True
    assert torch.equal(masks, expected)
    assert scores.tolist() == pytest.approx([0.9, 0.05, 0.9])
    tiny, _ = box_masks(prob, 0.5, torch.tensor([[6.6, 3.1, 6.9, 3.4]]))  # between pixel centres: the one under it
    assert tiny.sum() == 1 and tiny[0, 3, 6]
    sliver, _ = box_masks(prob, 0.5, torch.tensor([[10.0, 8.0, 30.0, 12.0]]))  # its centre in the next tile
    assert not sliver.any()


def test_box_prompts_to_own_masks_are_answered_by_its_ship_pixels_without_sam(tmp_path, own_masks_bundle,
                                                                                small_harbour, sam_forbidden):
    truth = gpd.read_file(write_truth(tmp_path / "truth.geojson", SMALL_HULLS)).to_crs("EPSG:4326")
    boxes = tmp_path / "boxes.geojson"
    gpd.GeoDataFrame(geometry=[shapely.box(*b) for b in truth.geometry.bounds.to_numpy()],
                     crs="EPSG:4326").to_file(boxes)  # in another CRS than the scene's
    path = tmp_path / "b08.safetensors"
    shutil.copy(own_masks_bundle.path, path)
    card = read_card(path)
    card.proposer = {**card.proposer, "sam_bands": ["B08"]}  # a SAM that never saw these bands: not asked
    update_card(path, card)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DetectWarning)
        ships = ShipDetector(str(path), device="cpu").detect(small_harbour, boxes=boxes)
    assert sorted(ships["prompt"]) == [0, 1, 2]  # one polygon per box
    truth = truth.to_crs(ships.crs).geometry.values
    ious = [metrics.polygon_iou(g, truth[i]) for g, i in zip(ships.geometry, ships["prompt"])]
    baseline = [metrics.polygon_iou(shapely.box(*truth[i].bounds), truth[i]) for i in ships["prompt"]]
    assert np.mean(ious) > np.mean(baseline)  # its outlines of the hulls beat the filled boxes
    with pytest.warns(DetectWarning, match="trained on B08"):  # point prompts still go to SAM, and say so
        with pytest.raises(AssertionError, match="SAM ran"):
            ShipDetector(str(path), device="cpu").detect(small_harbour, points=np.array([[500_250.0, 4_799_780.0]]))


def test_shipseg_train_masks_native_needs_the_native_proposer(tmp_path, native_sets):
    result = run_cli("train", native_sets[0], "--masks", "native", "-o", tmp_path / "m.safetensors")
    assert result.exit_code == 2 and "--proposer native" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m.safetensors").exists()


def test_prompts_to_a_sam_trained_on_other_bands_say_so(tmp_path, native_bundle, small_harbour):
    box = np.array([[500_150.0, 4_799_500.0, 500_450.0, 4_799_900.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", DetectWarning)  # the proposer and its SAM read the same bands: no warning
        ShipDetector(str(native_bundle.path), device="cpu").detect(small_harbour, boxes=box)
    path = tmp_path / "b08.safetensors"
    shutil.copy(native_bundle.path, path)
    card = read_card(path)
    card.proposer = {**card.proposer, "sam_bands": ["B08"]}
    update_card(path, card)
    with pytest.warns(DetectWarning, match="trained on B08"):
        ShipDetector(str(path), device="cpu").detect(small_harbour, boxes=box)


def test_shipseg_train_native_takes_a_width_and_its_own_masks(tmp_path, native_sets):
    out = tmp_path / "w8.safetensors"
    result = run_cli("train", native_sets[0], "--proposer", "native", "--masks", "native", "--proposer-width", 8,
                     "--epochs", 1, "--val", native_sets[1], "-o", out, "-q", "--threads", 1)
    assert result.exit_code == 0, result.output
    model, card = load_bundle(out)
    assert card.proposer["width"] == 8 and model.proposer.width == 8 and card.proposer["mask_threshold"] is not None
    assert not model.proposer.needs_embeddings and "its own ship regions above" in result.output


# ---- training options for large tiles and a range of pixel sizes (--crop, --coarsen) --------------------------------
def test_coarsen_blurs_as_a_coarser_scene_resampled_up_does():
    from samgeo_ship.training.native import _coarsen

    x = torch.zeros(3, 32, 32)
    x[:, ::2] = 1.0  # one-pixel stripes: detail a scene of 2 m pixels cannot hold at 1 m
    assert torch.equal(_coarsen(x, 1.0), x)
    blurred = _coarsen(x, 2.0)
    assert blurred.shape == x.shape and blurred.std() < 0.1 * x.std()
    assert float(blurred.mean()) == pytest.approx(float(x.mean()), abs=0.02)  # levels kept, only detail lost


def test_crops_cut_tiles_and_their_ships_alike(native_sets):
    from samgeo_ship.training.native import _batch, _load

    from samgeo_ship.training.data import open_datasets, split_tiles

    refs, _ = split_tiles(open_datasets([native_sets[0]]), [], 0.0, 0)
    tiles = _load(refs, NativeProposer(64), 256)
    config = ProposerConfig(crop=24, augment=False)
    rng = np.random.default_rng(0)
    idx = np.flatnonzero(tiles.has_ships)
    x, (heat, edges, weight, ship) = _batch(tiles, idx, rng, config)
    assert x.shape == (len(idx), 3, 24, 24) and ship.shape == (len(idx), 1, 24, 24)
    # The cropped ship pixels are the tile's own ship pixels at the crop's place: re-draw the crops and compare.
    rng = np.random.default_rng(0)
    for k, i in enumerate(idx):
        r, c = rng.integers(0, 64 - 24 + 1, 2)
        whole = tiles.masks[i].any(0)[r:r + 24, c:c + 24]
        assert torch.equal(x[k], tiles.inputs[i].float()[:, r:r + 24, c:c + 24])
        assert (ship[k, 0].bool() <= torch.from_numpy(whole)).all()
    assert ship.sum() > 0


def test_components_joins_8_connected_pixels_however_winding_and_keeps_regions_apart():
    from samgeo_ship.models.native import components

    mask = torch.zeros(2, 20, 20, dtype=torch.bool)
    for r in range(0, 20, 4):  # a snake: rows 0, 4, 8, ... joined at alternate ends, one region 100+ px long
        mask[0, r, 1:19] = True
        if r + 4 < 20:
            mask[0, r:r + 4, 18 if (r // 4) % 2 == 0 else 1] = True
    mask[1, 2, 2] = mask[1, 3, 3] = True  # diagonal neighbours: one region (8-connected)
    mask[1, 10:12, 10:12] = True  # another
    labels = components(mask)
    assert ((labels > 0) == mask).all()
    assert len(torch.unique(labels[0][mask[0]])) == 1
    assert labels[1, 2, 2] == labels[1, 3, 3] != labels[1, 10, 10]
    assert len(torch.unique(labels[1][mask[1]])) == 2 and labels[0, 0, 1] not in labels[1]


def test_waves_are_laid_over_training_tiles_with_texture(native_sets):
    from samgeo_ship.training.native import _batch, _load, _waves

    from samgeo_ship.training.data import open_datasets, split_tiles

    waves = _waves(64, np.random.default_rng(3))
    assert waves.shape == (1, 64, 64) and waves.dtype == torch.float32 and float(waves.std()) == pytest.approx(1, abs=0.01)
    assert abs(float(waves[0, :, 1:].sub(waves[0, :, :-1]).abs().mean())) > 0.05  # texture, not a flat offset
    refs, _ = split_tiles(open_datasets([native_sets[0]]), [], 0.0, 0)
    tiles = _load(refs, NativeProposer(64), 256)
    idx = np.arange(4)
    plain, _ = _batch(tiles, idx, np.random.default_rng(0), ProposerConfig(augment=True))
    rough, _ = _batch(tiles, idx, np.random.default_rng(0), ProposerConfig(augment=True, texture=0.5))
    local = lambda x: (x[..., 1:] - x[..., :-1]).abs().mean()  # noqa: E731
    assert local(rough) > 1.2 * local(plain)


def test_a_models_narrowest_stretch_comes_from_its_datasets(tmp_path, small_harbour):
    from samgeo_ship.models.card_schema import CardProblem, check_card
    from samgeo_ship.training.trainer import _card_normalisation

    scene, labels = tmp_path / "s.tif", tmp_path / "s.geojson"
    shutil.copy(small_harbour, scene)
    write_truth(labels, SMALL_HULLS)
    result = run_cli("prepare", scene, labels, "-o", tmp_path / "ds", "--tile-size", 64, "--overlap", 8, "--min-span", 5000, "-q")
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert card["normalisation"]["min_span"] == 5000
    assert card["normalisation"]["high"][0] - card["normalisation"]["low"][0] == pytest.approx(5000)
    spec = _card_normalisation(card)
    assert spec == {"method": "percentile", "percentiles": [1.0, 99.0], "min_span": 5000}
    assert "min_span" not in _card_normalisation(json.loads(json.dumps(card).replace('"min_span": 5000', '"x": 0')))
    with pytest.raises(CardProblem, match="min_span"):
        check_card({"model_type": "sam_tiny", "bands": ["R"], "pixel_size_m": 1.0, "tile_size": 64, "overlap": 0,
                    "normalisation": {"min_span": -1}})


def test_detection_stretches_scenes_no_narrower_than_the_cards_min_span(tmp_path, own_masks_bundle, small_harbour):
    path = tmp_path / "wide.safetensors"
    shutil.copy(own_masks_bundle.path, path)
    card = read_card(path)
    card.normalisation = {**card.normalisation, "min_span": 5000}
    update_card(path, card)
    with ShipDetector(str(path), device="cpu").open(small_harbour) as scene:
        norm = scene.normalisation
    assert all(h - lo == pytest.approx(5000) for lo, h in zip(norm.low, norm.high)) and norm.min_span == 5000


def test_a_region_may_be_scored_by_its_mean_probability_which_a_ripple_with_one_bright_pixel_does_not_reach():
    p = torch.full((1, 1, 16, 16), 0.01)
    p[0, 0, 2:5, 2:12] = 0.9  # a hull: every pixel confident
    p[0, 0, 10:13, 10:13] = 0.55  # rough water: one confident pixel among weak ones
    p[0, 0, 11, 11] = 0.99
    logits = torch.logit(p)
    by_max = regions(logits, 0.5, 1.0, 0.8)[0]
    by_mean = regions(logits, 0.5, 1.0, 0.8, score="mean")[0]
    assert len(by_max.scores) == 2 and by_max.scores[0] == pytest.approx(0.99)
    assert len(by_mean.scores) == 1 and by_mean.scores[0] == pytest.approx(0.9)
    assert by_mean.boxes[0].tolist() == [2, 2, 12, 5]
    proposer = NativeProposer.from_card(None, type("Card", (), {"tile_size": 16, "proposer": {
        "mask_threshold": 0.5, "region_score": "mean"}})())
    assert proposer.region_score == "mean"
    from samgeo_ship.models.card_schema import CardProblem, check_card
    with pytest.raises(CardProblem, match="region_score"):
        check_card({"model_type": "sam_tiny", "bands": ["R"], "pixel_size_m": 1.0, "tile_size": 64, "overlap": 0,
                    "proposer": {"region_score": "median"}})


@pytest.mark.parametrize("option, value", [("--crop", 32), ("--texture", 0.3), ("--region-score", "max")])
def test_native_only_training_options_without_the_native_proposer_are_refused(tmp_path, native_sets, option, value):
    result = run_cli("train", native_sets[0], option, value, "-o", tmp_path / "m.safetensors")
    assert result.exit_code == 2 and "--proposer native" in result.output and option in result.output
    assert "Traceback" not in result.output and not (tmp_path / "m.safetensors").exists()
