"""How many tiles a run encodes at once, chosen from what one input costs the encoder in memory and what the machine
has free; and the memory the run will need, said before it starts (the "plan")."""

from __future__ import annotations

import psutil
import torch

from samgeo_ship.inference.predictor import MASK_CHUNK
from samgeo_ship.models.attention import CHUNK_ENTRIES
from samgeo_ship.models.registry import SamConfig

FLOAT_BYTES = 4
# Bytes of an encoder activation at each precision: bf16 autocast stores the attention scores in bfloat16; int8
# quantises the Linear layers' inputs only, its activations stay float32.
ACTIVATION_BYTES = {"fp32": 4, "bf16": 2, "int8": 4}
# Share of the free memory a run's activations may take: the rest is the system's, and other programs'.
FREE_SHARE = 0.5
# On a CPU an input of vit_b's 4096 embedding cells already keeps every core busy in the encoder's matrix products,
# so a larger batch buys no speed (it was slower: benchmarks/README.md) and costs its activations in full. Small
# encoders batch up to this many cells at once.
CPU_BATCH_CELLS = 4096
CPU_ACTIVATION_BUDGET = 1 << 30
MAX_BATCH = {"cpu": 4, "cuda": 16}


def encoder_bytes_per_input(config: SamConfig, precision: str = "fp32",
                            device: torch.device | str = "cpu") -> int:
    """Peak activation bytes one more input adds to the encoder's forward pass. In an attention block the scores,
    the scores with relative positions added and their softmax are alive at once: (heads, N, N) each on a GPU, at
    most CHUNK_ENTRIES each on a CPU (``models.attention``), beside the relative-position terms (heads, N, 2 * side);
    then a block's token maps, (N, width) each and the MLP's 4x wider hidden layer, a few alive at a time; N the
    embedding cells."""
    side = config.image_embedding_size
    cells = side ** 2
    scores = config.encoder_num_heads * cells * cells
    attention = 3 * (scores if torch.device(device).type == "cuda" else min(scores, CHUNK_ENTRIES))
    positions = config.encoder_num_heads * cells * 2 * side
    tokens = 16 * cells * config.encoder_embed_dim
    return ACTIVATION_BYTES[precision] * (attention + positions + tokens)


def decoder_bytes(config: SamConfig) -> int:
    """Peak bytes of decoding one chunk of prompts: MASK_CHUNK masks of logits at the model's input size, the box
    prior beside them and their resizing to the tile."""
    return FLOAT_BYTES * 3 * MASK_CHUNK * config.img_size ** 2


def available_bytes(device: torch.device) -> int:
    """Memory free for a run now: the GPU's free memory on CUDA, else the RAM the system can give without swapping."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return psutil.virtual_memory().available


def auto_batch_size(config: SamConfig, device: torch.device, precision: str = "fp32",
                    available: int | None = None) -> int:
    """The most tiles whose encoder activations at ``precision`` fit FREE_SHARE of the free memory (``available``
    bytes, probed when None), and on a CPU CPU_ACTIVATION_BUDGET and CPU_BATCH_CELLS; at least 1, at most
    MAX_BATCH."""
    device = torch.device(device)
    budget = FREE_SHARE * (available_bytes(device) if available is None else available)
    most = MAX_BATCH.get(device.type, 1)
    if device.type != "cuda":
        budget = min(budget, CPU_ACTIVATION_BUDGET)
        most = min(most, CPU_BATCH_CELLS // config.image_embedding_size ** 2)
    return max(1, min(most, int(budget // encoder_bytes_per_input(config, precision, device))))


def run_memory_mb(config: SamConfig, precision: str, batch_size: int, tile_px: int, bands: int,
                  device: torch.device) -> float:
    """The memory a run will take at its peak, in MB: what the process (or, on CUDA, the GPU) holds now, model
    included, plus a batch's encoder activations, one chunk of decoded masks and the tiles in flight (those read
    ahead, the batch and its model inputs)."""
    device = torch.device(device)
    held = (torch.cuda.memory_allocated(device) if device.type == "cuda"
            else psutil.Process().memory_info().rss)
    read = 3 * batch_size * FLOAT_BYTES * (bands + 1) * tile_px ** 2  # read ahead, in the batch, stacked
    tiles = read + batch_size * FLOAT_BYTES * 3 * config.img_size ** 2
    work = batch_size * encoder_bytes_per_input(config, precision, device) + decoder_bytes(config) + tiles
    return round((held + work) / 1e6, 1)
