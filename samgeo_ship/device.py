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


PRECISIONS = ("auto", "fp32", "bf16", "int8")


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX): only there does a bfloat16 encoder
    run faster than float32; elsewhere oneDNN emulates it, slower."""
    try:
        with open("/proc/cpuinfo") as info:
            flags = next((line for line in info if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """The image encoder's arithmetic for a run: "fp32", "bf16" (autocast) or "int8" (dynamically quantised Linear
    layers, CPU only). "auto": on CUDA the device's autocast, reported as "bf16"; on a CPU, bf16 where the CPU has
    bfloat16 in hardware (faster there with the same ships: benchmarks/README.md, "vit_b on a CPU"), else fp32."""
    if precision not in PRECISIONS:
        raise ShipsegError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    cuda = torch.device(device).type == "cuda"
    if precision == "int8" and cuda:
        raise ShipsegError("--precision int8 runs on the CPU only; use bf16 or fp32 on a GPU")
    if precision != "auto":
        return precision
    return "bf16" if cuda or native_bf16() else "fp32"
