"""shipseg: find ships in aerial and satellite imagery with Segment Anything, as georeferenced polygons.

The public API (everything else is documented per submodule)::

    import samgeo_ship as ss

    ships = ss.detect("scene.tif")                         # GeoDataFrame, one row per ship, in the scene CRS
    detector = ss.ShipDetector("ships.safetensors", device="cpu")   # load once ...
    for path in scenes:
        detector.detect(path).to_file(...)                 # ... detect many
    ss.prepare_dataset("scene.tif", "labels.gpkg", "dataset/", bands=["B04", "B03", "B02"])
    ss.train(["dataset/"], "ships.safetensors", ss.TrainConfig(model_type="sam_tiny", epochs=10))
    ss.calibrate("ships.safetensors", "val.tif", "val_truth.geojson")
    print(ss.evaluate("ships.safetensors", "test.tif", "test_truth.geojson").table())
    net, card = ss.load_model("ships.safetensors")         # the ShipSam module and its card

Bad input raises ``ShipsegError`` with a one-line message naming the file. The names are imported on first use:
``import samgeo_ship`` loads the model layer (every bundle kind registers itself), not detection or training.
"""

from __future__ import annotations

import importlib

from samgeo_ship.version import __version__

# Bundle kinds defined above models register themselves on import (samgeo_ship.models.bundle.BUNDLE_KINDS), so every
# program that imports samgeo_ship loads every kind of bundle.
from samgeo_ship.oneshot import proposer as _oneshot_proposer  # noqa: F401

# public name -> (module, attribute)
_EXPORTS = {
    "ShipDetector": ("samgeo_ship.inference.detector", "ShipDetector"),
    "detect": ("samgeo_ship.inference.detector", "detect"),
    "prepare_dataset": ("samgeo_ship.dataset", "prepare_dataset"),
    "train": ("samgeo_ship.training.trainer", "train"),
    "TrainConfig": ("samgeo_ship.training.trainer", "TrainConfig"),
    "evaluate": ("samgeo_ship.inference.evaluate", "evaluate_scene"),
    "calibrate": ("samgeo_ship.inference.calibrate", "calibrate"),
    "load_model": ("samgeo_ship.models.zoo", "load_model"),
    "ShipsegError": ("samgeo_ship.errors", "ShipsegError"),
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'samgeo_ship' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *_EXPORTS})
