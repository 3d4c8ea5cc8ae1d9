"""The models that ship with the package, and the one place that resolves what -m names: the bundled default when
none is named, a bundle, or an official SAM checkpoint (a .pth file, or vit_b/vit_l/vit_h from the weights cache)."""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

from samgeo_ship.bands import same_bands
from samgeo_ship.errors import fail
from samgeo_ship.models import official
from samgeo_ship.models.bundle import BundleCard, load_bundle, read_card
from samgeo_ship.models.shipsam import ShipSam

DEFAULT_NAME = "default.safetensors"
MAX_RESAMPLE = 4.0  # beyond 4x up or down a model sees textures unlike anything it was trained on


def bundled_dir() -> Path:
    """The folder of the bundled models inside the installed package (wherever it is installed)."""
    return Path(str(resources.files("samgeo_ship") / "data"))


def default_model() -> Path:
    """The bundled default model (Sentinel-2-like RGB at 10 m)."""
    return bundled_dir() / DEFAULT_NAME


DEFAULT_ALIAS = "default"  # what a user types for the bundled default: -m default, --init default


def bundled_models() -> list[Path]:
    """The zoo: every bundle in ``bundled_dir()``, by name."""
    folder = bundled_dir()
    return sorted(folder.glob("*.safetensors")) if folder.is_dir() else []


def bundled_cards() -> list[tuple[Path, BundleCard]]:
    """The zoo with each member's card (read from its header; no weights loaded)."""
    return [(path, read_card(path)) for path in bundled_models()]


def resolution_band(model_m: float) -> tuple[float, float]:
    """The scene pixel sizes (m) a model made for ``model_m`` m pixels reads: within MAX_RESAMPLE times of it."""
    return model_m / MAX_RESAMPLE, model_m * MAX_RESAMPLE


def fitting_models(pixel_size_m: float, band_names=None) -> list[tuple[Path, BundleCard]]:
    """The bundled models that read a scene of ``pixel_size_m`` m pixels (within their resolution band): those
    whose bands the scene has (by name, Sentinel-2 and colour names alike) first, then those measured on real imagery
    (card ``quality.real``: a model's figures on synthetic scenes say little about real ones, and the user's scene is
    real), then nearest in log-ratio of pixel sizes. ``band_names``: the scene's band descriptions; None or all
    empty: bands unchecked."""
    fits = []
    for path, card in bundled_cards():
        low, high = resolution_band(card.pixel_size_m)
        if low <= pixel_size_m <= high:
            fits.append((not _has_bands(band_names, card.bands), card.quality.get("real") is not True,
                         _distance(pixel_size_m, card), path.name, path, card))
    return [(path, card) for *_, path, card in sorted(fits)]


def choose_model(pixel_size_m: float, band_names=None, source=None) -> Path:
    """The bundled model for a scene of ``pixel_size_m`` m pixels with bands ``band_names`` (see fitting_models);
    refused, naming the nearest bundled model, when none is made for pixels within MAX_RESAMPLE times of it.
    ``source``: the scene, named in the error."""
    fits = fitting_models(pixel_size_m, band_names)
    if fits:
        return fits[0][0]
    cards = bundled_cards()
    if not cards:
        return model_path(None)  # refused there: the default model is not installed
    path, card = min(cards, key=lambda pc: _distance(pixel_size_m, pc[1]))
    model_m = card.pixel_size_m
    low, high = resolution_band(model_m)
    raise fail(source or "the scene",
               f"its pixels are {pixel_size_m:.3g} m and no bundled model is made for pixels within "
               f"{MAX_RESAMPLE:g}x of that; the nearest, {path.name}, is made for {model_m:g} m pixels (resample "
               f"the scene to between {low:g} and {high:g} m, or pass a model with -m)")


# A bundled model measured below this F1 (its card's ``quality``) is picked with a warning that it is experimental.
EXPERIMENTAL_F1 = 0.5


def describe_choice(name: str, card: BundleCard, pixel_size_m: float) -> str:
    """One line saying which bundled model was picked for a scene, and why; a model whose card measures it below
    EXPERIMENTAL_F1 says so, so that nobody takes its ships for a finished result."""
    line = (f"Model: {name} ({card.pixel_size_m:.3g} m, {','.join(map(str, card.bands))}) for a "
            f"{pixel_size_m:.3g} m scene")
    f1 = card.quality.get("f1")
    if isinstance(f1, (int, float)) and f1 < EXPERIMENTAL_F1:
        line += (f" (experimental: F1 {f1:.3g} on {card.quality.get('on', 'its test scenes')}; expect missed and "
                 "false ships)")
    return line


def _has_bands(band_names, bands) -> bool:
    names = [n.lower() for n in band_names or () if n]
    return not names or all(any(same_bands([b], [n]) for n in names) for b in bands)


def _distance(pixel_size_m: float, card: BundleCard) -> float:
    return abs(math.log(pixel_size_m / card.pixel_size_m))


def model_path(model=None) -> Path:
    """``model`` (what -m gives) as a file: None or "default" mean the bundled default (refused when it is not
    installed); vit_b, vit_l and vit_h the official SAM checkpoints in the weights cache (`shipseg weights
    download`); the name of a bundled model without its suffix (``aerial``, as `shipseg models` lists them) that
    model, unless a file of that name is there; anything else a path, a bundle (.safetensors) or an official
    checkpoint file (.pth)."""
    if model is None or str(model) == DEFAULT_ALIAS:
        path = default_model()
        if not path.is_file():
            raise fail(path, "the default model is not installed; pass a model bundle with -m MODEL "
                             "(train one with `shipseg train`)")
        return path
    if official.is_official(model):
        return official.official_path(model)
    bundled = bundled_dir() / f"{model}.safetensors"
    if not Path(model).exists() and Path(str(model)).name == str(model) and bundled.is_file():
        return bundled
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
