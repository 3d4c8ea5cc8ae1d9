"""Which tiles a training epoch sees, in which order and augmentation: the sampler, apart from the trainer."""

from __future__ import annotations

import numpy as np

from samgeo_ship.training.augment import VARIANTS
from samgeo_ship.training.data import TileRef


def negative_share(positive: np.ndarray, negatives: float, ratio: float | None) -> float:
    """The share of the tiles without ships (``~positive``) drawn each epoch: ``negatives``, or with a ``ratio``
    that many per tile with ships (at most all of them)."""
    if ratio is None:
        return negatives
    empty = int((~positive).sum())
    return min(1.0, ratio * int(positive.sum()) / empty) if empty else 0.0


class EpochSampler:
    """Every tile with ships each epoch, and a fresh draw of a ``share`` of the tiles without.

    Most tiles of a harbour scene are open water, and all of them every epoch would spend most steps on the
    prompter alone; a fresh draw each epoch still shows the prompter all of the water over a run.

    positive: (N,) bool, whether tile i holds a ship. share: of the tiles without ships, drawn each epoch.
    augment: draw a square-symmetry variant per tile (else variant 0, the tile as stored)."""

    def __init__(self, positive: np.ndarray, share: float = 1.0, augment: bool = True):
        self.positive, self.share, self.augment = np.asarray(positive, bool), share, augment

    @classmethod
    def for_tiles(cls, refs: list[TileRef], negatives: float = 1.0, ratio: float | None = None,
                  augment: bool = True) -> EpochSampler:
        """The sampler of ``refs``, drawing ``negatives`` of their shipless tiles, or ``ratio`` per ship tile."""
        positive = np.array([len(r.dataset.boxes[r.tile]) > 0 for r in refs], bool)
        return cls(positive, negative_share(positive, negatives, ratio), augment)

    def __len__(self) -> int:
        """Tiles per epoch."""
        return int(self.positive.sum() + round(self.share * (~self.positive).sum()))

    def order(self, rng: np.random.Generator) -> np.ndarray:
        """Indices of this epoch's tiles in random order."""
        empty = np.flatnonzero(~self.positive)
        chosen = rng.choice(empty, int(round(self.share * len(empty))), replace=False) if len(empty) else empty
        return rng.permutation(np.concatenate([np.flatnonzero(self.positive), chosen]))

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(order, variants) of one epoch: the tile indices in order, and the augmentation variant of every tile
        (indexed by tile, not by position in the order)."""
        order = self.order(rng)
        n = len(self.positive)
        variants = rng.integers(0, VARIANTS, n) if self.augment else np.zeros(n, int)
        return order, variants
