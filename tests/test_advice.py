"""Few-shot advice before training, and `shipseg train --init BASE --encoder frozen` on one small labelled scene:
only the decoder and the prompter change."""

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open

from shipseg_cli.main import cli
from samgeo_ship.models.zoo import default_model
from samgeo_ship.models.bundle import load_bundle, read_card, save_bundle
from samgeo_ship.oneshot.proposer import personalised
from samgeo_ship.training import TrainConfig
from samgeo_ship.training.advice import advise
from samgeo_ship.training.data import open_dataset

from conftest import ship_dataset

DEFAULT_MODEL = default_model()
BASE = str(DEFAULT_MODEL)


@pytest.mark.parametrize("config, words", [
    (TrainConfig(init=BASE, encoder="full"), "`--encoder full` with 3 ships will overfit; pass --encoder frozen"),
    (TrainConfig(model_type="sam_tiny"), "the default encoder mode for sam_tiny (full) with 3 ships will overfit; "
                                         "use --init BASE"),
    (TrainConfig(model_type="sam_tiny", encoder="frozen"), "randomly initialised encoder, which will never learn"),
    (TrainConfig(init=BASE, encoder="lora"), "`--encoder lora` with 3 ships is likely to overfit"),
])
def test_few_ships_get_a_warning_that_names_the_fix(config, words):
    lines = advise(config, ships=3, tiles=4)
    assert any(words in line for line in lines), lines
    assert any("shipseg oneshot" in line for line in lines)


def test_enough_ships_or_the_right_mode_get_no_overfitting_warning():
    assert advise(TrainConfig(init=BASE, encoder="frozen"), ships=40, tiles=20) == []
    assert advise(TrainConfig(init=BASE, encoder="full"), ships=400, tiles=200) == []
    assert advise(TrainConfig(model_type="sam_tiny"), ships=2000, tiles=800) == []
    assert "from random initialisation on 300 ships" in advise(TrainConfig(model_type="sam_tiny"), 300, 100)[0]
    one_tile = advise(TrainConfig(init=BASE, encoder="frozen"), ships=40, tiles=1)
    assert len(one_tile) == 1 and "no validation" in one_tile[0]
    assert advise(TrainConfig(init=BASE, encoder="frozen"), ships=40, tiles=1, validation_given=True) == []


def test_few_shipless_tiles_get_a_warning_about_false_alarms():
    config = TrainConfig(init=BASE, encoder="frozen")
    few = advise(config, ships=40, tiles=82, empty_tiles=28)
    assert len(few) == 1 and few[0].startswith("28 shipless tiles for 54 tiles with ships") and "--labelled-area" in \
        few[0]
    assert advise(config, ships=40, tiles=54 * 11, empty_tiles=54 * 10) == []
    assert advise(config, ships=40, tiles=82) == []  # not counted
    assert not any("shipless" in line for line in advise(config, ships=0, tiles=10, empty_tiles=10))


def test_few_ships_among_many_shipless_tiles_each_epoch_get_the_negative_ratio_hint():
    config = TrainConfig(init=BASE, encoder="frozen")
    quiet = [line for line in advise(config, ships=20, tiles=54 + 4361, empty_tiles=4361) if "stay quiet" in line]
    assert len(quiet) == 1 and quiet[0].startswith("4361 shipless tiles each epoch for 54 tiles with ships")
    assert "--negative-ratio 10" in quiet[0]
    for fixed in (TrainConfig(init=BASE, encoder="frozen", negative_ratio=10),
                  TrainConfig(init=BASE, encoder="frozen", negatives=0.1)):  # 436 drawn: 8 per ship tile
        assert not any("stay quiet" in line for line in advise(fixed, ships=20, tiles=54 + 4361, empty_tiles=4361))
    # many ships at this ratio trained well (all 168 sen2ships training ships at 11 per ship tile; 400 at 80 here)
    assert not any("stay quiet" in line for line in advise(config, ships=400, tiles=200 * 81, empty_tiles=200 * 80))


def test_a_negative_ratio_sets_the_shipless_tiles_of_each_epoch(tmp_path):
    """1 ship on a scene of 64 tiles: --negative-ratio 3 trains (ship tiles) x 4 tiles an epoch, not all 64."""
    data = ship_dataset(tmp_path / "ds", ships=1, size=512, tile=64)
    ship_tiles = len(open_dataset(data).tiles) - sum(len(b) == 0 for b in open_dataset(data).boxes.values())
    out = tmp_path / "m.safetensors"
    result = CliRunner().invoke(cli, ["train", str(data), "-o", str(out), "--init", BASE, "--encoder", "frozen",
                                      "--epochs", "2", "--batch-size", "1", "--val-fraction", "0", "--threads", "1",
                                      "--negative-ratio", "3", "--device", "cpu", "-q",
                                      "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    card = read_card(out)
    assert 1 <= ship_tiles <= 4 and card.training["steps"] == 2 * 4 * ship_tiles
    assert card.training["recipe"]["negative_ratio"] == 3


def test_train_from_a_base_with_a_frozen_encoder_on_one_scene(tmp_path):
    data = ship_dataset(tmp_path / "ds", ships=3)
    out = tmp_path / "m.safetensors"
    result = CliRunner().invoke(cli, ["train", str(data), "-o", str(out), "--init", BASE, "--encoder", "frozen",
                                      "--epochs", "1", "--threads", "1", "--device", "cpu", "-q",
                                      "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning: ")]
    # 3 ships on 4 tiles: the oneshot hint, and too few shipless tiles to learn what is not a ship
    assert len(warnings) == 2 and "shipseg oneshot" in warnings[0] and "shipless tiles for" in warnings[1]
    card = read_card(out)
    assert card.encoder_mode == "frozen" and "image_encoder" not in card.trained
    assert set(card.trained) == {"mask_decoder", "prompt_encoder", "prompter"}
    assert card.box_prior == read_card(DEFAULT_MODEL).box_prior  # the base's decoder was trained with its own
    with safe_open(str(out), framework="pt") as new, safe_open(str(DEFAULT_MODEL), framework="pt") as old:
        encoder = [k for k in old.keys() if k.startswith("sam.image_encoder.")]
        assert encoder and all(new.get_tensor(k).equal(old.get_tensor(k)) for k in encoder)
        heads = [k for k in old.keys() if k.startswith(("sam.mask_decoder.", "prompter."))]
        assert any(not new.get_tensor(k).equal(old.get_tensor(k)) for k in heads)


def test_a_oneshot_bundle_is_no_starting_point(tmp_path):
    net, card = load_bundle(DEFAULT_MODEL)
    card.kind, card.oneshot, card.stored = "oneshot", {"targets": 1, "base_bundle": "default.safetensors"}, \
        card.stored + ["oneshot"]
    path = save_bundle(personalised(net, torch.ones(1, 128)), card, tmp_path / "p.safetensors")
    data = ship_dataset(tmp_path / "ds", ships=3)
    result = CliRunner().invoke(cli, ["train", str(data), "-o", str(tmp_path / "m.safetensors"), "--init",
                                      str(path), "--epochs", "1", "--threads", "1", "-q"])
    assert result.exit_code == 2
    assert "a oneshot bundle cannot be a starting point; start from its base model default.safetensors" \
        in result.stderr
