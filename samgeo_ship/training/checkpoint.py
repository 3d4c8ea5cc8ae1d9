"""Training checkpoints for --resume, without pickle: tensors (model, best weights, optimizer moments) in a
safetensors file, everything else (epoch, step, history, optimizer settings, recipe) as JSON in its header."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from samgeo_ship.atomic import atomic_file
from samgeo_ship.errors import fail

META_KEY = "shipseg_training_state"


def checkpoint_path(output) -> Path:
    """Where training of bundle ``output`` keeps its resumable state: ``MODEL.ckpt.safetensors`` beside it."""
    output = Path(output)
    return output.with_name(f"{output.stem}.ckpt.safetensors")


def save_state(path, model: dict, best: dict, optimizer: dict, meta: dict) -> None:
    """Write model and best-weight tensors, an optimizer state_dict and ``meta`` (JSON-able) atomically."""
    tensors = {f"model/{k}": v for k, v in model.items()}
    tensors.update({f"best/{k}": v for k, v in best.items()})
    scalars = {}
    for idx, state in optimizer["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{idx}/{name}"] = value
            else:
                scalars[f"{idx}/{name}"] = value
    meta = {**meta, "optimizer": {"param_groups": optimizer["param_groups"], "scalars": scalars}}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_file(path) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)})


def load_state(path) -> tuple[dict, dict, dict, dict]:
    """(model tensors, best tensors, optimizer state_dict, meta) from save_state's file."""
    path = Path(path)
    if not path.exists():
        raise fail(path, "no training checkpoint to resume from (it is written after each epoch)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})[META_KEY])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, KeyError) as exc:
        raise fail(path, f"is not a shipseg training checkpoint ({exc})") from None
    model, best, state = {}, {}, {}
    for key, value in tensors.items():
        kind, rest = key.split("/", 1)
        if kind == "model":
            model[rest] = value
        elif kind == "best":
            best[rest] = value
        else:
            idx, name = rest.split("/", 1)
            state.setdefault(int(idx), {})[name] = value
    opt = meta.pop("optimizer")
    for key, value in opt["scalars"].items():
        idx, name = key.split("/", 1)
        state.setdefault(int(idx), {})[name] = value
    return model, best, {"state": state, "param_groups": opt["param_groups"]}, meta
