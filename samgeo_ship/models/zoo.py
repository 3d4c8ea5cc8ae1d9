"""The models that ship with the package, and the one lookup of "the model to use" when a user names none."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from samgeo_ship.errors import fail
from samgeo_ship.models.bundle import BundleCard, load_bundle
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
    """``model`` as a bundle path: None or "default" mean the bundled default. Refuses a default that is not
    installed."""
    if model is None or str(model) == DEFAULT_ALIAS:
        path = default_model()
        if not path.is_file():
            raise fail(path, "the default model is not installed; pass a model bundle with -m MODEL "
                             "(train one with `shipseg train`)")
        return path
    return Path(model)


def load_model(model=None, device="cpu") -> tuple[ShipSam, BundleCard]:
    """Load a model bundle (None: the bundled default) onto ``device``; never unpickles (see ``load_bundle``)."""
    return load_bundle(model_path(model), device)
