"""Shared pieces of the benchmarks: synthetic scenes and model bundles, cached on disk."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from samgeo_ship.models.bundle import BundleCard, save_bundle
from samgeo_ship.models.shipsam import ShipSam
from samgeo_ship.models.zoo import load_model
from samgeo_ship.synthetic import SynthSpec, make_scene

RESULTS = Path(__file__).resolve().parent / "results"


def scene(size: int, work: Path) -> Path:
    """A size x size px synthetic harbour (RGB uint8, 10 m), written window by window in bounded memory."""
    path = work / f"harbour_{size}.tif"
    if not path.exists():
        make_scene(SynthSpec(size, size, bands="rgb8", n_ships=max(10, size * size // 100_000), seed=5), path)
    return path


def harbour_scene(size: int, work: Path, bands: str, px_per_ship: int, least: int, prefix: str) -> tuple[Path, Path]:
    """A size x size px synthetic harbour at 10 m (seed ``size``) with one ship per ``px_per_ship`` px (at least
    ``least``), and its truth; made once in ``work`` as PREFIX_SIZE.tif/.geojson, window by window."""
    tif, truth = work / f"{prefix}_{size}.tif", work / f"{prefix}_{size}.geojson"
    if not tif.exists():
        make_scene(SynthSpec(size, size, bands=bands, n_ships=max(least, size * size // px_per_ship), seed=size),
                   tif, truth)
    return tif, truth


def s2_scene(size: int, work: Path) -> tuple[Path, Path]:
    """A size x size px Sentinel-2-like harbour (4 x uint16, 10 m) with one ship per 40,000 px, and its truth."""
    return harbour_scene(size, work, "s2", 40_000, 20, "scene")


def default_model_at(work: Path, pixel_size_m: float, tile_size: int, overlap: int) -> Path:
    """The bundled default model (sam_tiny, 256 px input) with a card that tiles scenes of ``pixel_size_m`` into
    ``tile_size`` px windows: with 256 the model sees each window at 1:1, so the cost of a tile is the production
    cost (one 256 px encoder pass) while a large scene needs 16x fewer tiles than with the production 64 px
    windows. Detection quality is not the point: the ships look 4x smaller to the model than in training."""
    path = work / f"default_{tile_size}_{overlap}.safetensors"
    if not path.exists():
        net, card = load_model()
        card = dataclasses.replace(card, pixel_size_m=pixel_size_m, tile_size=tile_size, overlap=overlap)
        save_bundle(net, card, path)
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
