"""Encoder modes: which parts of a ShipSam are trained and which a bundle stores.

frozen: the image encoder is fixed (its embeddings can be cached); decoder, prompt encoder and prompter train.
lora:   low-rank adapters on the encoder's attn.qkv layers train too; the base encoder stays fixed.
full:   everything trains (the default for the small configs, which start from random weights)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from samgeo_ship.errors import ShipsegError
from samgeo_ship.models import weights
from samgeo_ship.models.lora import TARGET, add_lora, lora_parameters
from samgeo_ship.models.registry import CONFIGS, load_sam
from samgeo_ship.models.prompter import Prompter
from samgeo_ship.models.shipsam import PROMPTER_PIXELS, ShipSam

MODES = ("frozen", "lora", "full")
HEADS = ["mask_decoder", "prompt_encoder", "prompter"]


@dataclass(frozen=True)
class EncoderPlan:
    """mode; ``trained``: part names for the card; ``stored``: state_dict prefixes the bundle keeps (BundleCard.stored);
    ``lora``: the adapter settings for the card ({} without adapters)."""

    mode: str
    trained: list
    stored: list
    lora: dict

    @property
    def cacheable(self) -> bool:
        """Embeddings can be cached only when the encoder does not change during training."""
        return self.mode == "frozen"


@dataclass(frozen=True)
class Base:
    """The weights training starts from: ``name`` (file name or "random-init"), ``sha256`` of the file (or None),
    ``official``: Meta's published checkpoint for this model type, verified by its hash."""

    name: str
    sha256: str | None
    official: bool


def load_base(model_type: str, checkpoint=None, prompter_pixels: int = PROMPTER_PIXELS) -> tuple[ShipSam, Base]:
    """A ShipSam of ``model_type`` (random prompter, with a pixel branch of ``prompter_pixels`` channels) from
    ``checkpoint``, or from the cached official checkpoint for vit_b/l/h, or randomly initialised for the small
    configs (seed torch before calling)."""
    if model_type not in CONFIGS:
        raise ShipsegError(f"unknown model type {model_type!r}; choose one of {', '.join(CONFIGS)}")
    config = CONFIGS[model_type]
    if checkpoint is None and config.official:
        checkpoint = weights.cached_path(model_type)
        if not checkpoint.exists():
            raise ShipsegError(f"{model_type} starts from Meta's checkpoint, which is not at {checkpoint}; run "
                               f"shipseg weights download {model_type} or pass --base-checkpoint")
    sam = load_sam(model_type, checkpoint)
    model = ShipSam(sam, config, Prompter(config.prompt_embed_dim, pixels=prompter_pixels))
    if checkpoint is None:
        return model, Base("random-init", None, False)
    sha = weights.sha256_file(checkpoint)
    official = config.official and sha == weights.checkpoint(model_type).sha256
    return model, Base(Path(checkpoint).name, sha, official)


def load_init(bundle_path) -> tuple[ShipSam, Base, str]:
    """Start from a shipseg bundle's weights (e.g. the default model, to adapt it to new data): the model, the
    bundle as the base, and its model type."""
    from samgeo_ship.models.bundle import load_bundle
    from samgeo_ship.models.zoo import model_path

    bundle_path = model_path(bundle_path)
    model, card = load_bundle(bundle_path)
    if card.kind != "shipsam":
        raise ShipsegError(f"{bundle_path}: a {card.kind} bundle cannot be a starting point; start from its base "
                           f"model {card.oneshot.get('base_bundle', '')}".rstrip())
    if card.lora:
        raise ShipsegError(f"{bundle_path}: a bundle with LoRA adapters cannot be a starting point yet; start "
                           "from its base checkpoint instead")
    return model, Base(Path(bundle_path).name, weights.sha256_file(bundle_path), False), card.model_type


def default_mode(model_type: str) -> str:
    """frozen for the official models (fine-tune the heads on cached embeddings), full for the small configs."""
    return "frozen" if CONFIGS[model_type].official else "full"


def configure(model: ShipSam, mode: str, official_base: bool, rank: int = 8, alpha: float = 16.0) -> EncoderPlan:
    """Set ``requires_grad`` on ``model`` for ``mode`` (adding LoRA adapters for "lora") and say what to store.

    ``official_base``: the encoder holds Meta's published weights, so a bundle can name them instead of copying
    them (load_bundle fetches and hash-checks the base checkpoint)."""
    if mode not in MODES:
        raise ShipsegError(f"unknown encoder mode {mode!r}; choose one of {', '.join(MODES)}")
    heads = ["sam.mask_decoder", "sam.prompt_encoder", "prompter"]
    lora = {}
    for p in model.parameters():
        p.requires_grad_(mode == "full")
    if mode == "full":
        return EncoderPlan(mode, ["image_encoder"] + HEADS, ["sam", "prompter"], lora)
    if mode == "lora":
        add_lora(model.sam.image_encoder, rank, alpha)
        lora = {"rank": rank, "alpha": alpha, "target": TARGET}
    for module in (model.sam.mask_decoder, model.sam.prompt_encoder, model.prompter):
        module.requires_grad_(True)
    for p in lora_parameters(model.sam.image_encoder):
        p.requires_grad_(True)
    trained = (["image_encoder.lora"] if lora else []) + HEADS
    stored = (heads + (["lora"] if lora else [])) if official_base else ["sam", "prompter"]
    return EncoderPlan(mode, trained, stored, lora)
