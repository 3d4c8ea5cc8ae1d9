"""Shared pieces of the detect benchmarks: a synthetic scene and a random sam_tiny bundle, both cached on disk."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from samgeo_ship.models.bundle import BundleCard, save_bundle
from samgeo_ship.models.shipsam import ShipSam
from samgeo_ship.synthetic import SynthSpec, make_scene

RESULTS = Path(__file__).resolve().parent / "results"


def scene(size: int, work: Path) -> Path:
    """A size x size px synthetic harbour (RGB uint8, 10 m), written window by window in bounded memory."""
    path = work / f"harbour_{size}.tif"
    if not path.exists():
        make_scene(SynthSpec(size, size, bands="rgb8", n_ships=max(10, size * size // 100_000), seed=5), path)
    return path


def bundle(work: Path) -> Path:
    """A randomly initialised sam_tiny bundle: the cost of a forward pass does not depend on the weights."""
    path = work / "tiny.safetensors"
    if not path.exists():
        torch.manual_seed(0)
        save_bundle(ShipSam.from_config("sam_tiny"), BundleCard("sam_tiny", ["red", "green", "blue"], 10.0, 128, 16),
                    path)
    return path


def save(name: str, result: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return path
