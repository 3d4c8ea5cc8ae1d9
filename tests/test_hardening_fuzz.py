"""Property tests: random bytes, truncated files and random JSON fed to the raster, label and bundle readers raise
nothing but ShipsegError, and never allocate more than 2 GB on the way."""

import json
import os
import resource
import sys
import tracemalloc

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file

from samgeo_ship.errors import ShipsegError
from samgeo_ship.labels import load_labels
from samgeo_ship.models.bundle import CARD_KEY, BundleCard, card_sha256, load_bundle, save_bundle
from samgeo_ship.models.shipsam import ShipSam
from samgeo_ship.raster import Scene
from samgeo_ship.tiling import TileGrid

from conftest import write_raster
from test_hardening_outputs import BANDS, scene_and_labels

LIMIT = 2 * 2**30
# Derandomized, so every run tries the same inputs; SHIPSEG_FUZZ_EXAMPLES=1000 explores further by hand.
FAST = settings(max_examples=int(os.environ.get("SHIPSEG_FUZZ_EXAMPLES", 25)), deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck), database=None)

CARD_FIELDS = ["bands", "box_prior", "config", "contrast", "format", "kind", "lora", "model_type", "normalisation",
               "overlap", "pixel_size_m", "prompter_pixels", "stored", "thresholds", "tile_size"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=16)


def _peak_rss() -> int:
    """The process's peak resident memory in bytes (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


RSS_AT_START = 0  # set when the module's files are made


def only_shipseg_errors(read):
    """Run ``read()``; it may succeed or raise ShipsegError, nothing else; its traced allocations (numpy and Python
    objects) stay under LIMIT, and so does the rise of the process's peak memory (GDAL's and torch's too) since this
    module's files were made."""
    tracemalloc.start()
    try:
        read()
    except ShipsegError as exc:
        assert str(exc).strip() and "\n" not in str(exc).strip()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < LIMIT
    assert _peak_rss() - RSS_AT_START < LIMIT


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    scene, labels = scene_and_labels(root / "in")
    data = np.random.default_rng(0).integers(300, 400, size=(3, 64, 64)).astype(np.uint16)
    tiff = write_raster(root / "tiff.tif", data, nodata=0, descriptions=BANDS).read_bytes()
    torch.manual_seed(0)
    bundle = save_bundle(ShipSam.from_config("sam_tiny"), BundleCard("sam_tiny", BANDS, 10.0, 128, 16),
                         root / "tiny.safetensors")
    with safe_open(str(bundle), framework="pt") as f:
        meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    global RSS_AT_START
    RSS_AT_START = _peak_rss()
    return {"root": root, "scene": scene, "labels": labels.read_bytes(), "tiff": tiff,
           "bundle": bundle.read_bytes(), "card": json.loads(meta[CARD_KEY]), "meta": meta, "state": state}


def _read_scene(path):
    with Scene.open(path) as scene:
        scene.normalisation  # the whole-scene statistics read
        for tile in TileGrid.for_scene(scene, 32, overlap_px=4):
            scene.read(tile.window)


@FAST
@given(cut=st.floats(0, 1), noise=st.binary(max_size=256), flip=st.integers(0, 2**31))
def test_damaged_rasters_raise_only_shipseg_errors(files, cut, noise, flip):
    data = bytearray(files["tiff"][:int(len(files["tiff"]) * cut)] + noise)
    if data:
        data[flip % len(data)] ^= 0xFF
    path = files["root"] / "damaged.tif"
    path.write_bytes(bytes(data))
    only_shipseg_errors(lambda: _read_scene(path))


coco = st.fixed_dictionaries({
    "images": st.lists(st.dictionaries(st.sampled_from(["id", "width", "height", "file_name"]), json_values),
                       max_size=2) | json_values,
    "annotations": st.lists(st.dictionaries(st.sampled_from(["id", "image_id", "segmentation", "iscrowd"]),
                                            json_values | st.fixed_dictionaries(
                                                {"size": st.lists(st.integers(-5, 100), max_size=3),
                                                 "counts": st.lists(st.integers(-10, 2**40), max_size=6)
                                                 | st.text(max_size=12)})), max_size=3)})
geojson_like = st.fixed_dictionaries({
    "type": st.just("FeatureCollection"),
    "features": st.lists(st.fixed_dictionaries({
        "type": st.just("Feature"), "properties": st.dictionaries(st.sampled_from(["id", "ship_id"]), json_values),
        "geometry": st.fixed_dictionaries({"type": st.sampled_from(["Polygon", "Point", "LineString", "Bogus"]),
                                           "coordinates": json_values})}), max_size=3)})


@FAST
@given(doc=coco | geojson_like | json_values, suffix=st.sampled_from([".json", ".geojson"]))
def test_random_label_json_raises_only_shipseg_errors(files, doc, suffix):
    path = files["root"] / f"labels{suffix}"
    path.write_text(json.dumps(doc))
    with Scene.open(files["scene"]) as scene:
        only_shipseg_errors(lambda: load_labels(path, scene))


def _read_labels(files, path):
    with Scene.open(files["scene"]) as scene:
        load_labels(path, scene)


@FAST
@given(kind=st.sampled_from(["labels", "bundle"]), cut=st.floats(0, 1), noise=st.binary(max_size=64))
def test_truncated_label_files_and_bundles_raise_only_shipseg_errors(files, kind, cut, noise):
    path = files["root"] / ("cut.geojson" if kind == "labels" else "cut.safetensors")
    path.write_bytes(files[kind][:int(len(files[kind]) * cut)] + noise)
    only_shipseg_errors(lambda: _read_labels(files, path) if kind == "labels" else load_bundle(path))


@FAST
@given(changes=st.dictionaries(st.sampled_from(CARD_FIELDS), json_values, min_size=1, max_size=3), whole=json_values)
def test_random_cards_raise_only_shipseg_errors(files, changes, whole):
    """A forged card with its hash recomputed: only the field checks stand between it and the model builder."""
    card = {**files["card"], **changes}
    for text in (json.dumps({**card, "card_sha256": card_sha256(card)}), json.dumps(whole)):
        path = files["root"] / "forged.safetensors"
        save_file(files["state"], str(path), metadata={**files["meta"], CARD_KEY: text})
        only_shipseg_errors(lambda: load_bundle(path))
