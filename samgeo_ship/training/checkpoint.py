"""Training checkpoints for --resume, without pickle: tensors (model, best weights, optimizer moments) in a
safetensors file, the rest of the TrainState and the optimizer settings as JSON in its header."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from samgeo_ship.atomic import atomic_file
from samgeo_ship.errors import fail
from samgeo_ship.training.state import TrainState

META_KEY = "shipseg_training_state"


def checkpoint_path(output) -> Path:
    """Where training of bundle ``output`` keeps its resumable state: ``MODEL.ckpt.safetensors`` beside it."""
    output = Path(output)
    return output.with_name(f"{output.stem}.ckpt.safetensors")


def save_state(path, state: TrainState, model: dict, optimizer: dict) -> None:
    """Write ``state`` (its best weights included), ``model`` tensors and an optimizer state_dict atomically."""
    tensors = {f"model/{k}": v for k, v in model.items()}
    tensors.update({f"best/{k}": v for k, v in (state.best or {}).items()})
    scalars = {}
    for idx, moments in optimizer["state"].items():
        for name, value in moments.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{idx}/{name}"] = value
            else:
                scalars[f"{idx}/{name}"] = value
    meta = {**state.meta(), "optimizer": {"param_groups": optimizer["param_groups"], "scalars": scalars}}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_file(path) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)})


def load_state(path) -> tuple[TrainState, dict, dict]:
    """(TrainState, model tensors, optimizer state_dict) from save_state's file."""
    path = Path(path)
    if not path.exists():
        raise fail(path, "no training checkpoint to resume from (it is written after each epoch)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})[META_KEY])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        opt = meta.pop("optimizer")
        model, best, moments = {}, {}, {}
        for key, value in tensors.items():
            kind, rest = key.split("/", 1)
            if kind == "model":
                model[rest] = value
            elif kind == "best":
                best[rest] = value
            else:
                idx, name = rest.split("/", 1)
                moments.setdefault(int(idx), {})[name] = value
        for key, value in opt["scalars"].items():
            idx, name = key.split("/", 1)
            moments.setdefault(int(idx), {})[name] = value
        state = TrainState.from_meta(meta, best)
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise fail(path, f"is not a shipseg training checkpoint ({exc})") from None
    return state, model, {"state": moments, "param_groups": opt["param_groups"]}
