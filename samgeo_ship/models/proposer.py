"""Proposers: what finds the candidate ships of a tile for SAM's mask decoder. The learned prompter
(samgeo_ship.models.prompter) and a one-shot reference (samgeo_ship.oneshot) are strategies behind one interface,
``Proposer``; a bundle's ``kind`` names which one it carries (samgeo_ship.models.bundle.BUNDLE_KINDS)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from samgeo_ship.models.shipsam import ShipSam


@dataclass
class Proposals:
    """Boxes for one image: ``boxes`` (N, 4) ``x0, y0, x1, y1`` in model-input pixels, ``scores`` (N,) in [0, 1].

    A proposer may prompt the decoder with more than the box (samgeo_ship.oneshot does): ``points`` (N, P, 2) ``x, y``
    in model-input pixels with ``labels`` (N, P) (1 ship, 0 background), and ``masks`` (N, 1, 4h, 4w), the
    low-resolution mask logits of an earlier decoder pass.

    A proposer that segments the ships itself (models.native with its own masks) gives ``pixel_masks`` (N, t, t)
    bool at its own pixels instead: those are the ships' masks, and the decoder is not asked."""

    boxes: torch.Tensor
    scores: torch.Tensor
    points: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    masks: torch.Tensor | None = None
    pixel_masks: torch.Tensor | None = None

    def prompts(self, index) -> dict:
        """The prompts besides the box of the proposals at ``index``, as keyword arguments of ShipSam.decode."""
        extra = {}
        if self.points is not None:
            extra["points"] = (self.points[index], self.labels[index])
        if self.masks is not None:
            extra["masks"] = self.masks[index]
        return extra


class Proposer(Protocol):
    """A strategy that proposes ships on image embeddings. An ``nn.Module`` whose weights a bundle stores under the
    state-dict prefix ``part``; ``from_card`` builds it untrained in the shape a bundle card records.
    ``unused_parts``: prefixes that bundles of its kind may hold and it does not use (skipped on loading)."""

    part: str
    unused_parts: tuple[str, ...]

    @classmethod
    def from_card(cls, config, card) -> "Proposer": ...

    def proposals(self, model: ShipSam, embeddings: torch.Tensor, threshold: float, max_ships: int = 200,
                  images: torch.Tensor | None = None) -> list[Proposals]:
        """Per image of ``embeddings`` (B, C, h, w), the ships scoring at least ``threshold``, at most
        ``max_ships``. ``model``: the ShipSam whose embeddings they are (its decoder, input size and input
        normalisation); ``images``: the (B, 3, S, S) model inputs in [0, 255] they came from."""
        ...


def heat_peaks(heat_logits: torch.Tensor, threshold: float, max_ships: int = 200):
    """Per image of (B, 1, H, W) heatmap logits, its 3x3 local maxima scoring at least ``threshold``, at most
    ``max_ships``, strongest first: (rows, cols, scores) tensors (what the heatmap proposers decode boxes at)."""
    heat = heat_logits.float().sigmoid()
    peaks = (heat == F.max_pool2d(heat, 3, stride=1, padding=1)) & (heat >= threshold)
    for b in range(heat.shape[0]):
        ys, xs = torch.nonzero(peaks[b, 0], as_tuple=True)
        scores = heat[b, 0, ys, xs]
        order = scores.argsort(descending=True)[:max_ships]
        yield ys[order], xs[order], scores[order]
