"""Low-rank adapters (LoRA) on the image encoder's ``attn.qkv`` layers: fine-tune the encoder by training
``rank * (in + out)`` numbers per block instead of the whole ViT."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

TARGET = "attn.qkv"


class LoRALinear(nn.Module):
    """``y = x W^T + b + (alpha / rank) * x A^T B^T`` with W, b frozen and A (rank, in), B (out, rank) trained.

    Keeps the wrapped layer's ``weight`` and ``bias`` names, so a state_dict of the adapted encoder still loads
    the official checkpoint's keys unchanged; the adapters add ``lora_a`` and ``lora_b`` beside them."""

    def __init__(self, linear: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.weight = linear.weight
        self.bias = linear.bias
        self.rank, self.scale = rank, alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, linear.in_features, device=linear.weight.device))
        # B = 0: the adapted model starts exactly equal to the base model.
        self.lora_b = nn.Parameter(torch.zeros(linear.out_features, rank, device=linear.weight.device))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias) + F.linear(F.linear(x, self.lora_a), self.lora_b) * self.scale


def add_lora(encoder: nn.Module, rank: int, alpha: float) -> list[str]:
    """Replace every ``blocks[i].attn.qkv`` Linear of a SAM ImageEncoderViT by a LoRALinear (in place).

    Returns the names of the adapted layers. Raises ValueError when the encoder has no such layer."""
    if rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, not {rank}")
    names = []
    for i, block in enumerate(encoder.blocks):
        qkv = block.attn.qkv
        if isinstance(qkv, nn.Linear):
            block.attn.qkv = LoRALinear(qkv, rank, alpha)
            names.append(f"blocks.{i}.{TARGET}")
    if not names:
        raise ValueError("the encoder has no attn.qkv Linear layers to adapt")
    return names


def is_lora_key(key: str) -> bool:
    """True for a state_dict key of an adapter tensor."""
    return key.endswith((".lora_a", ".lora_b"))


def lora_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The adapter parameters inside ``module``, in a fixed order."""
    return [p for name, p in module.named_parameters() if is_lora_key(name)]
