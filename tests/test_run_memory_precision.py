"""Detection's batch size follows the free memory unless one is given, the plan says what a run needs, and the
encoder's reduced precisions (bf16 autocast, int8 Linear layers) give the float32 model's ships and masks."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from samgeo_ship import ShipDetector
from samgeo_ship.device import resolve_precision
from samgeo_ship.errors import ShipsegError
from samgeo_ship.inference import memory
from samgeo_ship.models.registry import CONFIGS
from shipseg_cli.main import cli

GB = 10 ** 9


def free_memory(monkeypatch, nbytes):
    monkeypatch.setattr(memory, "available_bytes", lambda device: nbytes)


def test_the_automatic_batch_is_smaller_with_less_free_memory(monkeypatch, tiny_bundle):
    sizes = []
    for free in (16 * GB, 0.2 * GB, 0.05 * GB):
        free_memory(monkeypatch, free)
        sizes.append(ShipDetector(tiny_bundle, device="cpu").batch_size)
    assert sizes[0] > sizes[1] >= sizes[2] == 1
    free_memory(monkeypatch, 0.05 * GB)
    assert ShipDetector(tiny_bundle, device="cpu", batch_size=3).batch_size == 3  # a given batch size wins


def test_vit_b_encodes_one_tile_at_a_time_on_a_cpu_and_more_on_a_large_gpu():
    # On a CPU a vit_b batch buys no speed, so even 24 GB free gives 1; on a GPU the free memory decides.
    vit_b = CONFIGS["vit_b"]
    assert memory.encoder_bytes_per_input(vit_b) > memory.encoder_bytes_per_input(CONFIGS["sam_tiny"]) * 4
    for free in (8 * GB, 24 * GB):
        for precision in ("fp32", "bf16"):
            assert memory.auto_batch_size(vit_b, torch.device("cpu"), precision, free) == 1
    assert memory.auto_batch_size(vit_b, torch.device("cuda"), "bf16", 80 * GB) > memory.auto_batch_size(
        vit_b, torch.device("cuda"), "bf16", 8 * GB) >= 1


def test_cpu_attention_by_blocks_is_counted_in_the_memory_estimate():
    # On a CPU a global block's scores are held a block of queries at a time, not as a (heads, N, N) matrix.
    vit_b = CONFIGS["vit_b"]
    cells = vit_b.image_embedding_size ** 2
    whole = 4 * 3 * vit_b.encoder_num_heads * cells ** 2
    assert memory.encoder_bytes_per_input(vit_b, "fp32", "cuda") > whole
    assert memory.encoder_bytes_per_input(vit_b, "fp32", "cpu") < whole / 4


def plan_of(monkeypatch, tmp_path, scene, model, free, *extra):
    free_memory(monkeypatch, free)
    result = CliRunner().invoke(cli, ["detect", str(scene), "-m", str(model), "-o", str(tmp_path / "s.geojson"),
                                      "--progress", "json", "--device", "cpu", *extra])
    assert result.exit_code == 0, result.output
    return next(e for e in map(json.loads, result.stdout.splitlines()) if e["event"] == "plan")


def test_the_plan_says_the_batch_and_the_memory_it_needs(monkeypatch, tmp_path, harbour, tiny_bundle):
    roomy = plan_of(monkeypatch, tmp_path, harbour, tiny_bundle, 16 * GB)
    tight = plan_of(monkeypatch, tmp_path, harbour, tiny_bundle, 0.05 * GB)
    given = plan_of(monkeypatch, tmp_path, harbour, tiny_bundle, 0.05 * GB, "--batch-size", "3")
    assert roomy["batch_size"] > tight["batch_size"] == 1 and given["batch_size"] == 3
    assert roomy["memory_mb"] > tight["memory_mb"] > 0


def matched_ious(reference, other):
    """Each reference ship's best IoU with a ship of ``other``."""
    return [max((g.intersection(h).area / g.union(h).area for h in other.geometry), default=0.0)
            for g in reference.geometry]


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reduced_precision_finds_the_float32_ships_with_the_same_masks(small_harbour, precision):
    ships = {p: ShipDetector(None, device="cpu", precision=p).detect(small_harbour) for p in ("fp32", precision)}
    assert len(ships["fp32"]) == 3 and len(ships[precision]) == 3
    assert min(matched_ious(ships["fp32"], ships[precision])) >= 0.9


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reduced_precision_masks_of_box_prompts_agree_with_float32(harbour, tiny_bundle, precision):
    # Around the harbour's first two ships (conftest.HULLS), in its UTM coordinates.
    boxes = np.array([[500_400.0, 4_799_300.0, 500_800.0, 4_799_700.0],
                      [501_150.0, 4_798_750.0, 501_650.0, 4_799_250.0]])
    ships = {p: ShipDetector(tiny_bundle, device="cpu", precision=p).detect(harbour, boxes=boxes)
             for p in ("fp32", precision)}
    assert len(ships["fp32"]) == 2
    assert np.mean(matched_ious(ships["fp32"], ships[precision])) >= 0.9


def test_precision_auto_follows_the_hardware_and_int8_is_cpu_only(monkeypatch):
    from samgeo_ship import device

    monkeypatch.setattr(device, "native_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "fp32" and ShipDetector(None, device="cpu").precision == "fp32"
    monkeypatch.setattr(device, "native_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16" and resolve_precision("fp32", "cpu") == "fp32"
    assert ShipDetector(None, device="cpu").precision == "bf16"
    assert resolve_precision("auto", "cuda") == "bf16"
    with pytest.raises(ShipsegError, match="CPU only"):
        resolve_precision("int8", "cuda")
    with pytest.raises(ShipsegError, match="unknown precision"):
        resolve_precision("fp16", "cpu")
