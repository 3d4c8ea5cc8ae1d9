"""Where a training run stands after each epoch: what the resumable checkpoint holds beside the model and the
optimizer."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable

import torch


@dataclass
class TrainState:
    """The run's progress and its best epoch so far.

    setup: what a resume must match (model type, encoder mode, seed, batch size, datasets, LoRA).
    epoch: the last finished epoch (0 before the first). step: optimiser steps so far.
    best_score / best_epoch / best: the best ``selection_score`` so far, its epoch and its stored weights.
    bad_epochs: epochs since the best one. stopped: early stopping or the time budget ended the run.
    history: one record per epoch (epoch 0: validation before training)."""

    setup: dict
    epoch: int = 0
    step: int = 0
    best_score: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped: bool = False
    history: list[dict] = field(default_factory=list)
    best: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def add_epoch(self, record: dict, score: float, weights: Callable[[], dict], patience: int | None) -> None:
        """Record finished epoch ``record``; keep ``weights()`` if its ``score`` beats the best so far, and stop
        after ``patience`` epochs without a better one (None: never stop early)."""
        self.history.append(record)
        self.epoch = record["epoch"]
        if self.best is None or score > self.best_score + 1e-6:
            self.best, self.best_score, self.best_epoch, self.bad_epochs = weights(), score, self.epoch, 0
        else:
            self.bad_epochs += 1
            self.stopped = patience is not None and self.bad_epochs >= patience

    def meta(self) -> dict:
        """Everything but the best weights, as JSON-able values."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "best"}

    @classmethod
    def from_meta(cls, meta: dict, best: dict[str, torch.Tensor] | None) -> TrainState:
        """The state of ``meta()`` with its best weights; ValueError if ``meta`` is not one."""
        names = {f.name for f in dataclasses.fields(cls)} - {"best"}
        if set(meta) != names:
            raise ValueError(f"training state fields {sorted(set(meta) ^ names)} missing or unknown")
        return cls(**meta, best=best or None)
