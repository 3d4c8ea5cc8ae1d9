"""The models that ship with the package, and the one place that resolves what -m names: the bundled default when
none is named, a bundle, or an official SAM checkpoint (a .pth file, or vit_b/vit_l/vit_h from the weights cache)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from samgeo_ship.errors import fail
from samgeo_ship.models import official
from samgeo_ship.models.bundle import BundleCard, load_bundle, read_card
from samgeo_ship.models.shipsam import ShipSam

DEFAULT_NAME = "default.safetensors"


def bundled_dir() -> Path:
    """The folder of the bundled models inside the installed package (wherever it is installed)."""
    return Path(str(resources.files("samgeo_ship") / "data"))


def default_model() -> Path:
    """The bundled default model (Sentinel-2-like RGB at 10 m)."""
    return bundled_dir() / DEFAULT_NAME


DEFAULT_ALIAS = "default"  # what a user types for the bundled default: -m default, --init default


def model_path(model=None) -> Path:
    """``model`` (what -m gives) as a file: None or "default" mean the bundled default (refused when it is not
    installed); vit_b, vit_l and vit_h the official SAM checkpoints in the weights cache (`shipseg weights
    download`); anything else a path, a bundle (.safetensors) or an official checkpoint file (.pth)."""
    if model is None or str(model) == DEFAULT_ALIAS:
        path = default_model()
        if not path.is_file():
            raise fail(path, "the default model is not installed; pass a model bundle with -m MODEL "
                             "(train one with `shipseg train`)")
        return path
    if official.is_official(model):
        return official.official_path(model)
    return Path(model)


def load_model(model=None, device="cpu") -> tuple[ShipSam, BundleCard]:
    """Load ``model`` (as ``model_path`` reads it) onto ``device``; never unpickles. A bundle loads as the ShipSam
    it holds (see ``load_bundle``); an official checkpoint as an OfficialSam with a card built in memory (kind
    "sam": no ship prompter, any resolution; see samgeo_ship.models.official)."""
    path = model_path(model)
    if official.is_official(path):
        return official.load_official(path, device)
    return load_bundle(path, device)


def model_card(model=None) -> BundleCard:
    """The card of ``model`` without loading its weights: a bundle's own, an official checkpoint's built in memory."""
    path = model_path(model)
    return official.read_official_card(path) if official.is_official(path) else read_card(path)
