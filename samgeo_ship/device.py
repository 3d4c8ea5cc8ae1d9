"""The compute device a run uses and the reduced precision it runs in: one rule for training and detection."""

from __future__ import annotations

import contextlib
import re
from typing import Callable, ContextManager

import torch

from samgeo_ship.errors import ShipsegError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" -> cuda when available, else cpu; "cpu", "cuda" and "cuda:N" as given. A GPU asked for but absent,
    or a name that is no device, is bad input (a ShipsegError)."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"(cpu|cuda)(:\d+)?", name):
        raise ShipsegError(f"unknown device {name!r}; choose auto, cpu or cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ShipsegError(f"--device {name} was asked for, but no CUDA GPU is available; use --device cpu or auto")
    return torch.device(name)


def autocaster(device: torch.device) -> Callable[[], ContextManager]:
    """A factory of the autocast context for ``device``: bfloat16 (float16 where the GPU lacks it) on CUDA, none on
    the CPU, where bfloat16 is slower on most cores and changes the masks for nothing."""
    if torch.device(device).type != "cuda":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return lambda: torch.autocast("cuda", dtype=dtype)
