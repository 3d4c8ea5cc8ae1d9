"""The image encoder of a detection run, in the arithmetic it runs in (``device.resolve_precision``), timed.

The encoder is nearly all of a large model's work per tile, so it alone runs in reduced
precision on a CPU; the prompter and the mask decoder stay in float32, where the mask edges are placed."""

from __future__ import annotations

import contextlib
import copy
import time
import warnings

import torch
from torch import nn

from samgeo_ship.device import autocaster


class TimedEncoder:
    """``encoder(inputs)``: (B, 3, S, S) model inputs in [0, 255] -> image embeddings, float32 on a CPU (on CUDA in
    the device's autocast dtype, as the decoder runs there too). ``seconds``: the wall time spent in it so far, so a
    run can say how much of its time the encoder took."""

    def __init__(self, model, precision: str, device: torch.device):
        self.precision, self.device = precision, torch.device(device)
        self.seconds = 0.0
        int8 = quantised(model.sam.image_encoder) if precision == "int8" else None
        self._encode = (lambda x: int8(model.normalise(x))) if int8 is not None else (lambda x: model.encode(x))
        if self.device.type == "cuda":
            self._context = autocaster(self.device) if precision != "fp32" else contextlib.nullcontext
        elif precision == "bf16":
            self._context = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
        else:
            self._context = contextlib.nullcontext

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        try:
            with torch.no_grad(), self._context():
                out = self._encode(inputs)
            return out if self.device.type == "cuda" else out.float()
        finally:
            self.seconds += time.perf_counter() - start


def quantised(encoder: nn.Module) -> nn.Module:
    """A copy of ``encoder`` whose Linear layers (the attention projections and MLPs: most of a ViT's arithmetic)
    multiply in int8 with weights quantised once and activations quantised per call; the model's own encoder, which
    training and other detectors share, is left as it is."""
    with warnings.catch_warnings():  # torch marks its eager quantisation API deprecated in favour of torchao
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(encoder), {nn.Linear}, dtype=torch.qint8)
