"""The SAM model registry: official vit_b/l/h and small configs, built from segment_anything's parts,
and safe checkpoint loading (weights_only, strict, with a one-sentence error for the wrong model type)."""

from __future__ import annotations

import functools
import pickle
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from samgeo_ship.errors import ShipsegError, fail
from samgeo_ship.models.attention import chunk_attention


@dataclass(frozen=True)
class SamConfig:
    """Every number that shapes a SAM model; two configs with equal fields give identical state_dict shapes.

    Args:
        img_size: side of the square encoder input, in pixels.
        patch_size: side of one ViT patch, in pixels; the embedding grid is img_size // patch_size square.
        encoder_embed_dim: channel width of the ViT blocks.
        encoder_depth: number of ViT blocks.
        encoder_num_heads: attention heads per ViT block.
        encoder_global_attn_indexes: blocks (0-based) with global attention; the others use windows.
        window_size: side of an attention window, in embedding cells.
        prompt_embed_dim: channels of the image embedding, the prompt tokens and the mask decoder
            (must be divisible by 8: the decoder upscales to prompt_embed_dim // 8 channels).
        decoder_depth: layers of the mask decoder's TwoWayTransformer.
        decoder_mlp_dim: hidden width of the TwoWayTransformer's MLPs.
        decoder_num_heads: attention heads in the TwoWayTransformer.
        mask_in_chans: hidden channels of the prompt encoder's mask-input downscaler.
        iou_head_hidden_dim: hidden width of the IoU prediction MLP.
        checkpoint: file name of the official Meta checkpoint for this config (a key's file in
            samgeo_ship.models.weights.CHECKPOINTS), or None for our own configs, which have no
            pretrained weights and are trained from scratch or fine-tuned by shipseg.
    """

    img_size: int
    patch_size: int
    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: Tuple[int, ...]
    window_size: int
    prompt_embed_dim: int
    decoder_mlp_dim: int
    decoder_num_heads: int
    decoder_depth: int = 2
    mask_in_chans: int = 16
    iou_head_hidden_dim: int = 256
    checkpoint: Optional[str] = field(default=None, compare=False)

    def __post_init__(self):
        # A tuple keeps the dataclass hashable (configs key the shape cache below).
        object.__setattr__(self, "encoder_global_attn_indexes", tuple(self.encoder_global_attn_indexes))
        problems = []
        if self.img_size % self.patch_size:
            problems.append(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.prompt_embed_dim % 8:
            problems.append(f"prompt_embed_dim {self.prompt_embed_dim} is not divisible by 8")
        if self.encoder_embed_dim % self.encoder_num_heads:
            problems.append("encoder_embed_dim is not divisible by encoder_num_heads")
        if any(not 0 <= i < self.encoder_depth for i in self.encoder_global_attn_indexes):
            problems.append(f"encoder_global_attn_indexes must lie in [0, {self.encoder_depth})")
        if problems:
            raise ValueError("invalid SamConfig: " + "; ".join(problems))

    @property
    def image_embedding_size(self) -> int:
        """Side of the square image embedding grid, in cells (64 for the official models)."""
        return self.img_size // self.patch_size

    @property
    def official(self) -> bool:
        """True for the configs Meta published weights for (vit_b, vit_l, vit_h)."""
        return self.checkpoint is not None


def _official(embed_dim: int, depth: int, heads: int, global_attn: Tuple[int, ...], checkpoint: str) -> SamConfig:
    # The numbers segment_anything/build_sam.py hard-codes in _build_sam, shared by the three official models.
    return SamConfig(img_size=1024, patch_size=16, encoder_embed_dim=embed_dim, encoder_depth=depth,
                     encoder_num_heads=heads, encoder_global_attn_indexes=global_attn, window_size=14,
                     prompt_embed_dim=256, decoder_mlp_dim=2048, decoder_num_heads=8, checkpoint=checkpoint)


CONFIGS: Dict[str, SamConfig] = {
    "vit_b": _official(768, 12, 12, (2, 5, 8, 11), "sam_vit_b_01ec64.pth"),
    "vit_l": _official(1024, 24, 16, (5, 11, 17, 23), "sam_vit_l_0b3195.pth"),
    "vit_h": _official(1280, 32, 16, (7, 15, 23, 31), "sam_vit_h_4b8939.pth"),
    # Small configs for training from scratch on a CPU. Patch 8 (not 16) so a 10-30 px ship covers
    # 2-4 embedding cells and the 4x-upsampled low-res mask has 2 px cells; window 8 divides the 32/64
    # cell grids exactly, so window attention needs no padding.
    "sam_tiny": SamConfig(img_size=256, patch_size=8, encoder_embed_dim=128, encoder_depth=4, encoder_num_heads=4,
                          encoder_global_attn_indexes=(3,), window_size=8, prompt_embed_dim=128,
                          decoder_mlp_dim=512, decoder_num_heads=4),
    # One global block only: global attention over 64x64 = 4096 cells dominates the cost (a second one nearly
    # doubles the forward's time). Patch 16 would be far cheaper but would put a 10 px ship inside one cell.
    "sam_small": SamConfig(img_size=512, patch_size=8, encoder_embed_dim=192, encoder_depth=6, encoder_num_heads=6,
                           encoder_global_attn_indexes=(5,), window_size=8, prompt_embed_dim=128,
                           decoder_mlp_dim=1024, decoder_num_heads=8),
}


# SAM's input normalisation (segment_anything's _build_sam): buffers its checkpoints do not store.
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


def build_sam(config: SamConfig) -> Sam:
    """Assemble an untrained Sam from segment_anything's parts, exactly as segment_anything's _build_sam does.

    For the official configs the state_dict keys and shapes equal those of Meta's checkpoints.
    Returns the model in eval mode, randomly initialised, on the current default device; its encoder's attention
    runs by blocks of queries (``attention.ChunkedAttention``: the same results, faster and in less memory).
    """
    c = config
    grid = c.image_embedding_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=c.encoder_depth,
            embed_dim=c.encoder_embed_dim,
            img_size=c.img_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=c.encoder_num_heads,
            patch_size=c.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=c.encoder_global_attn_indexes,
            window_size=c.window_size,
            out_chans=c.prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=c.prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(c.img_size, c.img_size),
            mask_in_chans=c.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=c.decoder_depth,
                embedding_dim=c.prompt_embed_dim,
                mlp_dim=c.decoder_mlp_dim,
                num_heads=c.decoder_num_heads,
            ),
            transformer_dim=c.prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=c.iou_head_hidden_dim,
        ),
        pixel_mean=list(PIXEL_MEAN),
        pixel_std=list(PIXEL_STD),
    )
    chunk_attention(sam.image_encoder)
    sam.eval()
    return sam


@functools.lru_cache(maxsize=None)
def expected_shapes(config: SamConfig) -> Dict[str, Tuple[int, ...]]:
    """The state_dict of ``config``'s model as {key: shape}, without allocating any weights."""
    # The meta device allocates no storage, so even vit_h's 2.5 GB of shapes cost milliseconds.
    with torch.device("meta"):
        model = build_sam(config)
    return {key: tuple(t.shape) for key, t in model.state_dict().items()}


def detect_model_type(state_dict: Mapping[str, torch.Tensor]) -> Optional[str]:
    """Name of the CONFIGS entry whose state_dict has exactly these keys and shapes, or None.

    Args:
        state_dict: {key: tensor}, already unwrapped (see load_sam).
    """
    shapes = {key: tuple(t.shape) for key, t in state_dict.items() if isinstance(t, torch.Tensor)}
    for name, config in CONFIGS.items():
        if shapes == expected_shapes(config):
            return name
    return None


def _encoder_shape(state_dict: Mapping[str, torch.Tensor]) -> tuple[Optional[tuple[int, int, int]], int]:
    """((width, grid rows, grid cols) of the image encoder's pos_embed, or None) and its number of blocks."""
    pos = state_dict.get("image_encoder.pos_embed")
    blocks = len({key.split(".")[2] for key in state_dict if key.startswith("image_encoder.blocks.")})
    shape = (pos.shape[3], pos.shape[1], pos.shape[2]) if pos is not None and pos.dim() == 4 else None
    return shape, blocks


def _describe_encoder(state_dict: Mapping[str, torch.Tensor]) -> str:
    """A few words on what a non-matching SAM state_dict is, for error messages (never a shape dump)."""
    shape, blocks = _encoder_shape(state_dict)
    if shape is None:
        return f"{blocks} encoder blocks"
    return f"encoder width {shape[0]}, {blocks} blocks, {shape[1]}x{shape[2]} embedding grid"


def _closest_type(state_dict: Mapping[str, torch.Tensor]) -> Optional[str]:
    """The CONFIGS entry with the same encoder width, grid and block count, when the rest does not match."""
    shape, blocks = _encoder_shape(state_dict)
    if shape is None:
        return None
    for name, config in CONFIGS.items():
        if (shape[0], shape[1], blocks) == (config.encoder_embed_dim, config.image_embedding_size,
                                            config.encoder_depth):
            return name
    return None


_WRAPPER_KEYS = ("model", "state_dict")
_PREFIXES = ("module.", "model.")


def unwrap_state_dict(obj) -> Optional[Dict[str, torch.Tensor]]:
    """The {key: tensor} inside a loaded checkpoint, or None if there is none.

    Training scripts save {"model": state_dict, "optimizer": ..., "epoch": ...} (MedSAM) or
    {"state_dict": ...} (Lightning), and DataParallel/DDP prefix every key with "module."; users of other
    tools find such files refused or, worse, silently not loaded (USERS.md). Unwrapping them is safe because
    the result must still match the model's keys and shapes exactly before it is loaded.
    """
    if isinstance(obj, Mapping):
        for wrapper in _WRAPPER_KEYS:
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping) or not obj:
        return None
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        return None
    for prefix in _PREFIXES:
        # Only a prefix on every key is a wrapper's; "model." on some keys would be a real module name.
        if all(key.startswith(prefix) for key in obj):
            obj = {key[len(prefix):]: t for key, t in obj.items()}
    return dict(obj)


def read_checkpoint(path) -> Dict[str, torch.Tensor]:
    """Read a checkpoint file as {key: tensor}, never unpickling anything but tensors.

    Raises ShipsegError, one sentence naming the file, when it is missing, truncated or corrupt, holds
    pickled code, or holds no dict of tensors.
    """
    path = Path(path)
    if not path.exists():
        raise fail(path, "checkpoint file not found")
    if not path.is_file():
        raise fail(path, "is not a file, so it cannot be a checkpoint")
    try:
        # weights_only=True: the unpickler accepts tensors and plain containers and refuses every other
        # global, so a malicious checkpoint cannot run code on load.
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower():
            raise fail(path, "contains pickled Python objects other than tensors (code that would run on "
                       "load), so it is refused") from None
        raise fail(path, "is not a readable PyTorch checkpoint (truncated or corrupt pickle data)") from None
    except OSError as exc:
        raise fail(path, f"cannot be read ({exc.strerror or exc})") from None
    except Exception:
        # torch's zip and legacy readers report a broken file as RuntimeError, EOFError, KeyError, ...
        raise fail(path, "is not a readable PyTorch checkpoint (truncated or corrupt: not a complete "
                   "zip/torch file); download it again") from None
    state_dict = unwrap_state_dict(obj)
    if state_dict is None:
        bad = next(((k, v) for k, v in obj.items() if not isinstance(v, torch.Tensor)), None) \
            if isinstance(obj, Mapping) else None
        if bad is not None:
            key, value = bad
            raise fail(path, f"is not a model checkpoint: it holds a dict whose entry {key!r} is a "
                       f"{type(value).__name__}, not a tensor")
        raise fail(path, f"is not a model checkpoint: it holds a {type(obj).__name__}, not a dict of tensors")
    return state_dict


def load_sam(model_type: str, checkpoint=None, device="cpu") -> Sam:
    """Build the ``model_type`` model and, given a checkpoint, load its weights strictly.

    Args:
        model_type: a key of CONFIGS ("vit_b", "vit_l", "vit_h", "sam_tiny", "sam_small").
        checkpoint: path to a .pth state_dict (official Meta file, or one saved from a model of the same
            config); None gives random weights. A {"model": ...} / {"state_dict": ...} wrapper or a
            "module." prefix is removed first (see unwrap_state_dict).
        device: torch device for the returned model.

    Returns the Sam in eval mode. Raises ShipsegError for an unknown model type or an unusable checkpoint;
    a checkpoint of another known type is named ("this is a vit_l checkpoint, not vit_b; ...").
    """
    if model_type not in CONFIGS:
        raise ShipsegError(f"unknown model type {model_type!r}; choose one of {', '.join(CONFIGS)}")
    config = CONFIGS[model_type]
    if checkpoint is None:
        return build_sam(config).to(device)

    state_dict = read_checkpoint(checkpoint)
    detected = detect_model_type(state_dict)
    if detected is None:
        raise _mismatch_error(checkpoint, model_type, state_dict)
    if detected != model_type:
        raise fail(checkpoint, f"this is a {detected} checkpoint, not {model_type}; use --model-type {detected}")

    return sam_from_state(config, state_dict).to(device)


def sam_from_state(config: SamConfig, state_dict: Mapping[str, torch.Tensor]) -> Sam:
    """The Sam of ``config`` holding ``state_dict`` (keys and shapes already checked to fit), strictly, in eval mode."""
    # Official checkpoints are float32; a half-precision save must not turn the model into fp16 below.
    state_dict = {k: (t.float() if t.is_floating_point() else t) for k, t in state_dict.items()}
    with torch.device("meta"):
        sam = build_sam(config)
    return load_assigned(sam, state_dict).eval()


def load_assigned(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    """Load ``state_dict`` strictly into ``module``, built on the meta device, by taking its tensors (each cast to
    the dtype the module declares) instead of copying them into random-initialised ones: no init time and no second
    copy of the weights in memory. SAM's input constants, which checkpoints do not store, are
    then given their values. Returns ``module``; raises RuntimeError (as ``load_state_dict``) when keys or shapes
    differ."""
    declared = module.state_dict()
    state = {k: (t.to(declared[k].dtype) if k in declared and t.dtype != declared[k].dtype else t)
             for k, t in state_dict.items()}
    module.load_state_dict(state, strict=True, assign=True)
    for sam in [m for m in module.modules() if isinstance(m, Sam)]:
        sam.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(-1, 1, 1), False)
        sam.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(-1, 1, 1), False)
    empty = [name for name, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if empty:
        raise ShipsegError(f"internal error: {empty[0]} was given no value when the model was loaded")
    return module


def _mismatch_error(path, model_type: str, state_dict: Mapping[str, torch.Tensor]) -> ShipsegError:
    """One sentence on why ``state_dict`` fits no config: another type's encoder, or counts of bad keys."""
    if not any(key.startswith("image_encoder.") for key in state_dict):
        example = next(iter(state_dict))
        return fail(path, f"is not a SAM checkpoint: none of its {len(state_dict)} tensors is an "
                    f"image_encoder weight (first key {example!r})")
    closest = _closest_type(state_dict)
    if closest is not None and closest != model_type:
        return fail(path, f"this is a {closest}-sized checkpoint, not {model_type}; use --model-type {closest}")
    expected = expected_shapes(CONFIGS[model_type])
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    reshaped = [k for k in expected if k in state_dict and tuple(state_dict[k].shape) != expected[k]]
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", reshaped)):
        if keys:
            parts.append(f"{len(keys)} {label} (e.g. {keys[0]!r})")
    return fail(path, f"does not fit {model_type} ({_describe_encoder(state_dict)}): tensors "
                + ", ".join(parts))
