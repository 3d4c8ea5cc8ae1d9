"""Model bundles: one .safetensors file holding a ShipSam's weights and, in its header, a JSON card that records
everything detection must reproduce from training (bands, normalisation, pixel size, tile size, thresholds)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from samgeo_ship.version import __version__
from samgeo_ship.atomic import atomic_file
from samgeo_ship.errors import fail
from samgeo_ship.models.lora import add_lora, is_lora_key
from samgeo_ship.models.card_schema import check_card, check_config
from samgeo_ship.models.native import KIND as NATIVE, NativeProposer
from samgeo_ship.models.prompter import Prompter
from samgeo_ship.models.proposer import Proposer
from samgeo_ship.models.registry import (CONFIGS, SamConfig, build_sam, expected_shapes, load_assigned,
                                         read_checkpoint)
from samgeo_ship.models.shipsam import ShipSam

CARD_KEY = "shipseg_card"
FORMAT = "shipseg-bundle/1"

# The proposer class (models.proposer.Proposer) each bundle ``kind`` carries. A feature package that adds a kind
# registers it where its proposer is defined (samgeo_ship.oneshot: "oneshot"), so that models imports nothing above
# it; samgeo_ship's __init__ imports those packages, so any loader finds every kind.
BUNDLE_KINDS: dict[str, type[Proposer]] = {"shipsam": Prompter, NATIVE: NativeProposer}


def register_kind(kind: str, proposer: type[Proposer]) -> None:
    """Let ``load_bundle`` load bundles of ``kind``, whose ships ``proposer`` proposes."""
    BUNDLE_KINDS[kind] = proposer


@dataclass
class BundleCard:
    """What a bundle is and how to use it. Units: pixel_size_m in metres per pixel of the scene; tile_size and
    overlap in scene pixels (a tile is resampled to ``img_size`` model pixels)."""

    model_type: str
    bands: list[str]
    pixel_size_m: float
    tile_size: int
    overlap: int
    normalisation: dict = field(default_factory=lambda: {"method": "percentile", "percentiles": [1.0, 99.0]})
    thresholds: dict = field(default_factory=lambda: {"score": 0.3, "mask_logit": 0.0, "nms_iou": 0.5})
    base_model: str = "random-init"
    base_sha256: str | None = None
    trained: list[str] = field(default_factory=lambda: ["image_encoder", "mask_decoder", "prompt_encoder",
                                                        "prompter"])
    encoder_mode: str = "full"
    stored: list[str] = field(default_factory=lambda: ["sam", "prompter"])
    lora: dict = field(default_factory=dict)  # {"rank": r, "alpha": a, "target": "attn.qkv"} when adapted
    training: dict = field(default_factory=dict)
    validation: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    weights_sha256: str = ""
    # SHA-256 of the card without this field (see card_sha256): it covers weights_sha256, so the tensors too.
    card_sha256: str = ""
    shipseg_version: str = __version__
    format: str = FORMAT
    # The proposer (BUNDLE_KINDS) - "shipsam": the learned prompter proposes ships; "oneshot": their likeness to
    # reference ships does (samgeo_ship.oneshot; its settings and provenance are in ``oneshot``); "native": a
    # convolutional network at the model's own pixels does (models.native; its shape and recipe in ``proposer``).
    kind: str = "shipsam"
    box_prior: float = 0.0  # ShipSam.box_prior the weights were trained with
    prompter_pixels: int = 0  # channels of the prompter's pixel branch (0: none, bundles older than it)
    oneshot: dict = field(default_factory=dict)
    # The native proposer's shape and provenance, e.g. {"width": 16, "sam_from": "default.safetensors"}.
    proposer: dict = field(default_factory=dict)
    # {"band": "B08", "min": 2.0}: detection drops ships whose contrast with the water around them in that band is
    # below min (samgeo_ship.inference.contrast; set by ``shipseg calibrate --contrast-band``); empty: no test.
    contrast: dict = field(default_factory=dict)
    # Measured detection figures, e.g. {"f1": 0.949, "on": "harbour_s2_16bit"}: what `shipseg models` shows.
    quality: dict = field(default_factory=dict)

    def to_json(self) -> str:
        # default=str: a recipe may hold paths (TrainConfig from Python rather than the CLI).
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> "BundleCard":
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, data: dict) -> "BundleCard":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def card_sha256(data: dict) -> str:
    """SHA-256 of a parsed card's every field but ``card_sha256`` itself, in a canonical JSON form."""
    rest = {k: v for k, v in data.items() if k != "card_sha256"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def sealed_json(card: BundleCard) -> str:
    """The card as a bundle stores it: JSON with its hash filled in (computed on the JSON form, as read_card sees
    it)."""
    card.card_sha256 = ""
    card.card_sha256 = card_sha256(json.loads(card.to_json()))
    return card.to_json()


def save_bundle(model: ShipSam, card: BundleCard, path) -> Path:
    """Write ``model``'s stored parts and ``card`` to ``path`` atomically; fills in card.config and the hash.

    With a frozen official encoder (``card.stored`` without "sam.image_encoder") the encoder weights are not
    copied: the bundle names the base checkpoint and its SHA-256 instead. The entry "lora" in ``card.stored``
    selects the encoder's low-rank adapters (see samgeo_ship.models.lora)."""
    path = Path(path)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items() if is_stored(k, card.stored)}
    card.config = dataclasses.asdict(model.config)
    card.box_prior = model.box_prior
    card.prompter_pixels = getattr(model.proposer, "pixel_chans", 0)  # 0 without a learned prompter
    card.weights_sha256 = tensors_sha256(state)
    with atomic_file(path) as tmp:
        save_file(state, str(tmp), metadata={CARD_KEY: sealed_json(card)})
    return path


def update_card(path, card: BundleCard) -> Path:
    """Replace the card in the header of the bundle at ``path`` (atomically), with its hash renewed. The tensors are
    copied byte for byte, never loaded, so a threshold change costs a file copy and the weights hash stays valid."""
    path = Path(path)
    if read_card(path).weights_sha256 != card.weights_sha256:
        raise ValueError("update_card keeps the tensors: the new card must carry their hash")
    with open(path, "rb") as src:
        size = struct.unpack("<Q", src.read(8))[0]
        header = json.loads(src.read(size))
        header.setdefault("__metadata__", {})[CARD_KEY] = sealed_json(card)
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)  # safetensors pads the header with spaces so the data starts 8-aligned
        with atomic_file(path) as tmp, open(tmp, "wb") as dst:
            dst.write(struct.pack("<Q", len(text)))
            dst.write(text)
            shutil.copyfileobj(src, dst, 2**20)
    return path


def is_stored(key: str, stored: list[str]) -> bool:
    """Whether the state_dict ``key`` belongs to one of the ``stored`` parts (module prefixes, or "lora")."""
    return any(key == p or key.startswith(p + ".") for p in stored) or ("lora" in stored and is_lora_key(key))


def read_card(path) -> BundleCard:
    """The card of a bundle, without loading its tensors."""
    path = Path(path)
    if not path.exists():
        raise fail(path, "no such model file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise fail(path, f"is not a safetensors model bundle ({str(exc).splitlines()[0]})") from None
    if CARD_KEY not in meta:
        raise fail(path, "is a safetensors file without a shipseg card, so it is not a shipseg model bundle")
    try:
        data = json.loads(meta[CARD_KEY])
    except (json.JSONDecodeError, RecursionError) as exc:
        raise fail(path, f"has an unreadable card ({exc})") from None
    if not isinstance(data, dict):
        raise fail(path, f"has a card that is a JSON {type(data).__name__}, not an object")
    if not data.get("card_sha256"):
        raise fail(path, "has a card without its hash (edited, or made before cards were hashed), so what it "
                         "says cannot be trusted; save the bundle again with a current shipseg")
    if card_sha256(data) != data["card_sha256"]:
        raise fail(path, "its card does not match the hash stored with it (the card was edited or damaged)")
    try:
        check_card(data)
        if data.get("config"):
            check_config(data["config"])
    except ValueError as exc:
        raise fail(path, f"has an invalid card: {exc}") from None
    return BundleCard.from_dict(data)


def verify_bundle(path) -> tuple[BundleCard, dict]:
    """The card and the tensors of a bundle, after checking the card's hash and fields and the tensors against
    the card's hash; builds no model."""
    path = Path(path)
    card = read_card(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise fail(path, f"is damaged ({str(exc).splitlines()[0]})") from None
    if tensors_sha256(state) != card.weights_sha256:
        raise fail(path, "its weights do not match the hash in its card (the file was modified or damaged)")
    return card, state


def _config(path: Path, card: BundleCard, state: dict) -> SamConfig:
    """The card's SamConfig, refused unless the shapes it gives are those of the stored SAM tensors (measured on
    the meta device, so an absurd config allocates nothing) and, without a stored encoder, it is the registry's
    config of the model type (the base checkpoint's)."""
    if card.model_type not in CONFIGS and not card.config:
        raise fail(path, f"names an unknown model type {card.model_type!r}")
    config = check_config(card.config) if card.config else CONFIGS[card.model_type]
    expected = expected_shapes(config)
    for key, tensor in state.items():
        name = key[len("sam."):]
        if key.startswith("sam.") and not is_lora_key(key) and expected.get(name) != tuple(tensor.shape):
            raise fail(path, f"its card's config does not fit its weights ({name} is {tuple(tensor.shape)})")
    has_encoder = any(k.startswith("sam.image_encoder.") and not is_lora_key(k) for k in state)
    if not has_encoder and CONFIGS.get(card.model_type) != config:
        raise fail(path, f"its card's config is not that of {card.model_type}, whose checkpoint it builds on")
    return config


def load_bundle(path, device="cpu", base_checkpoint=None) -> tuple[ShipSam, BundleCard]:
    """Load a bundle; never unpickles. Refuses a file whose tensors do not match the hash in its card (tampered
    or damaged), a card for an unknown model, or a base checkpoint whose SHA-256 is not the one recorded."""
    path = Path(path)
    card, state = verify_bundle(path)
    config = _config(path, card, state)
    proposer = proposer_class(path, card)
    with torch.device("meta"):  # weights come from the file: none made only to be overwritten (load_assigned)
        model = ShipSam(build_sam(config), config, proposer.from_card(config, card), float(card.box_prior))
        if card.lora:
            add_lora(model.sam.image_encoder, int(card.lora["rank"]), float(card.lora["alpha"]))
    # Parts an older bundle of this kind stored but its proposer does not use (a oneshot bundle's base prompter).
    state = {k: v for k, v in state.items() if k.split(".", 1)[0] not in proposer.unused_parts}
    if not any(k.startswith("sam.image_encoder.") and not is_lora_key(k) for k in state):
        state.update(_base_encoder(path, card, base_checkpoint))
    try:
        load_assigned(model, state)
    except RuntimeError:
        raise fail(path, f"its weights do not fit the {card.model_type} model its card describes") from None
    return model.eval().to(device), card


def proposer_class(path, card: BundleCard) -> type[Proposer]:
    """The proposer a card's ``kind`` carries."""
    if card.kind not in BUNDLE_KINDS:
        raise fail(path, f"is a {card.kind!r} model bundle, which this version of shipseg cannot use")
    return BUNDLE_KINDS[card.kind]


def _base_encoder(path: Path, card: BundleCard, base_checkpoint) -> dict:
    from samgeo_ship.models import weights

    base = Path(base_checkpoint) if base_checkpoint else weights.cached_path(card.model_type)
    if not base.exists():
        raise fail(path, f"needs the base checkpoint {card.base_model} (shipseg weights download "
                         f"{card.model_type}), which is not at {base}")
    if card.base_sha256 and weights.sha256_file(base) != card.base_sha256:
        raise fail(base, f"is not the base model this bundle was trained on (SHA-256 differs from "
                         f"{card.base_sha256[:12]}...)")
    return {f"sam.{k}": v for k, v in read_checkpoint(base).items() if k.startswith("image_encoder.")}


def tensors_sha256(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of ``state``, in key order."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().to("cpu").contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()

