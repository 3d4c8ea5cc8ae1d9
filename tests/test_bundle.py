"""Model bundles from training: exact round trip in a fresh process, tamper detection, `shipseg info`."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open

from shipseg_cli.main import cli
from samgeo_ship.errors import ShipsegError
from samgeo_ship.models.bundle import BundleCard, load_bundle, save_bundle
from samgeo_ship.models.prompter import Prompter
from samgeo_ship.models.registry import CONFIGS, build_sam
from samgeo_ship.models.shipsam import PROMPTER_PIXELS, ShipSam
from samgeo_ship.training import TrainConfig, train
from samgeo_ship.training.trainer import DEFAULT_BOX_PRIOR
from samgeo_ship.training.data import load_sample, open_datasets, split_tiles

from conftest import FAST

PREDICT = """
import sys, numpy as np, torch
torch.set_num_threads(1)
from samgeo_ship.models.bundle import BundleCard, load_bundle, save_bundle
from samgeo_ship.models.prompter import Prompter
from samgeo_ship.models.registry import CONFIGS, build_sam
from samgeo_ship.models.shipsam import PROMPTER_PIXELS, ShipSam
from samgeo_ship.training.data import load_sample, open_datasets, split_tiles
model, card = load_bundle(sys.argv[1])
train, _ = split_tiles(open_datasets([sys.argv[2]]), [], 0.0, 0)
sample = load_sample(train[int(sys.argv[3])], model.img_size)
with torch.no_grad():
    emb = model.encode(sample.image[None])
    logits, iou = model.decode(emb[0], boxes=sample.boxes)
    heat, _ = model.prompt_maps(emb, sample.image[None])
np.savez(sys.argv[4], logits=logits.numpy(), heat=heat.numpy())
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory, datasets):
    """A LoRA bundle trained one epoch on one dataset: (bundle path, dataset)."""
    path = tmp_path_factory.mktemp("bundle") / "m.safetensors"
    train([datasets[1]], path, TrainConfig(**FAST, epochs=1, encoder="lora"))
    return path, datasets[1]


def _tile_with_ships(dataset):
    refs, _ = split_tiles(open_datasets([dataset]), [], 0.0, 0)
    return next(i for i, r in enumerate(refs) if len(r.dataset.boxes[r.tile])), refs


@pytest.mark.slow
def test_a_fresh_process_predicts_exactly_the_same_masks(tmp_path, trained):
    path, dataset = trained
    torch.set_num_threads(1)
    index, refs = _tile_with_ships(dataset)
    model, card = load_bundle(path)
    assert card.lora["rank"] == 8 and "image_encoder.lora" in card.trained
    assert card.box_prior == model.box_prior == DEFAULT_BOX_PRIOR > 0
    assert card.prompter_pixels == model.prompter.pixel_chans == PROMPTER_PIXELS > 0
    sample = load_sample(refs[index], model.img_size)
    with torch.no_grad():
        emb = model.encode(sample.image[None])
        here, _ = model.decode(emb[0], boxes=sample.boxes)
        heat, _ = model.prompt_maps(emb, sample.image[None])
    out = tmp_path / "there.npz"
    subprocess.run([sys.executable, "-c", PREDICT, str(path), str(dataset), str(index), str(out)], check=True)
    there = np.load(out)
    assert np.array_equal(here.numpy(), there["logits"]) and np.array_equal(heat.numpy(), there["heat"])


def test_a_bundle_from_before_the_pixel_branch_loads_as_it_was(tmp_path):
    model = ShipSam(build_sam(CONFIGS["sam_tiny"]), CONFIGS["sam_tiny"], Prompter(128, pixels=0))
    card = BundleCard(model_type="sam_tiny", bands=["R", "G", "B"], pixel_size_m=10.0, tile_size=64, overlap=8)
    path = save_bundle(model, card, tmp_path / "old.safetensors")
    loaded, card = load_bundle(path)
    assert card.prompter_pixels == 0 and not hasattr(loaded.prompter, "pixels")
    emb = torch.randn(1, 128, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.prompt_maps(emb)[0], model.prompt_maps(emb)[0])
        # A new model's prompter looks at the pixels too, and says so when they are missing.
        with pytest.raises(ValueError, match="pixels"):
            ShipSam.from_config("sam_tiny").prompt_maps(emb)


def test_a_tampered_bundle_is_refused(tmp_path, trained):
    path, _ = trained
    data = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    data[header + (len(data) - header) // 2] ^= 0x01  # one bit in the middle of the tensor bytes
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(ShipsegError, match="do not match the hash in its card"):
        load_bundle(bad)


def test_info_prints_the_card(trained):
    path, _ = trained
    result = CliRunner().invoke(cli, ["info", str(path)])
    assert result.exit_code == 0, result.output
    assert "model_type" in result.output and "sam_tiny" in result.output and "encoder_mode" in result.output
    assert "validation.mask_iou" in result.output
    raw = CliRunner().invoke(cli, ["info", str(path), "--json"])
    card = json.loads(raw.output)
    assert card["bands"] == ["R", "G", "B"] and card["tile_size"] == 128 and card["encoder_mode"] == "lora"
    with safe_open(str(path), framework="pt") as f:
        assert any(k.endswith(".lora_a") for k in f.keys())


def test_info_refuses_a_file_that_is_not_a_bundle(tmp_path):
    other = tmp_path / "notes.safetensors"
    other.write_text("not a model")
    result = CliRunner().invoke(cli, ["info", str(other)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a safetensors model bundle" in lines[0]


def test_a_card_whose_recipe_holds_paths_serialises():
    card = BundleCard("sam_tiny", ["B04", "B03", "B02"], 10.0, 64, 8, training={"recipe": {"cache": Path("/c")}})
    assert BundleCard.from_json(card.to_json()).training["recipe"]["cache"] == "/c"
