"""PerSAM-F's learning from reference ships: a target feature pooled from each ship's cells of the image embedding,
the weights that mix the decoder's outputs (fitted with Dice + focal loss, SAM frozen), and the similarity threshold
that separates ships from background on the reference tiles."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from samgeo_ship.oneshot.proposer import MaskMix
from samgeo_ship.training.losses import DICE_WEIGHT, FOCAL_WEIGHT, dice_loss, focal_loss, mask_iou

STEPS = 150
LR = 0.05
BACKGROUND_QUANTILE = 0.95  # robust to a few unlabelled ships among the reference tiles' background cells
# Where the threshold sits between background (0) and reference-ship (1) similarity. Other ships peak near the
# reference ship's mean and false ones clearly below it, so the threshold sits three quarters of the way up.
SHIP_SIDE = 0.75


def cell_fractions(mask: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(T, T) bool mask in tile pixels -> (h, w) share of each embedding cell it covers (the tile is resized to the
    model input as a whole, so the embedding grid divides the tile evenly)."""
    return F.adaptive_avg_pool2d(mask[None, None].float(), grid)[0, 0]


def ship_cells(fraction: torch.Tensor) -> torch.Tensor:
    """(h, w) bool: cells at least half covered by the ship, or the most covered cell for a ship smaller than one."""
    cells = fraction >= 0.5
    return cells if cells.any() else fraction == fraction.max()


def target_feature(embedding: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """PerSAM's target feature: the mean and the max of the (C, h, w) embedding over the ship's (h, w) ``cells``,
    averaged, as a (C,) unit vector."""
    feats = embedding.float()[:, cells]
    return F.normalize(feats.mean(1) / 2 + feats.amax(1) / 2, dim=0)


def mix_loss(logits: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Dice + focal loss (SAM's 1:20, as in training) of (N, H, W) logits against (N, H, W) bool truth."""
    return (DICE_WEIGHT * dice_loss(logits, truth) + FOCAL_WEIGHT * focal_loss(logits, truth)).mean()


@dataclass
class MixFit:
    """``loss`` and ``iou`` (of the mixed mask, logit > 0, against the reference ships) before and after fitting,
    ``iou_single``: the IoU of each mixed output alone."""

    loss_init: float
    loss: float
    iou_init: float
    iou: float
    iou_single: list[float]


def fit_mix(mix: MaskMix, outputs: torch.Tensor, truth: torch.Tensor, steps: int = STEPS, lr: float = LR) -> MixFit:
    """Fit ``mix`` in place with Adam: ``outputs`` (N, n, T, T) logits of the decoder outputs it mixes for the
    reference ships (computed once: SAM is frozen), ``truth`` (N, T, T) bool."""
    outputs = outputs.detach().float()

    def evaluate():
        with torch.no_grad():
            mixed = mix(outputs)[:, 0]
            return float(mix_loss(mixed, truth)), float(mask_iou(mixed > 0, truth).mean())

    loss_init, iou_init = evaluate()
    optimiser = torch.optim.Adam(mix.parameters(), lr=lr)
    for _ in range(steps):
        optimiser.zero_grad()
        mix_loss(mix(outputs)[:, 0], truth).backward()
        optimiser.step()
    loss, iou = evaluate()
    single = [float(mask_iou(outputs[:, k] > 0, truth).mean()) for k in range(outputs.shape[1])]
    return MixFit(loss_init, loss, iou_init, iou, single)


def choose_threshold(sims: list[torch.Tensor], ships: list[torch.Tensor],
                     known: list[torch.Tensor]) -> dict[str, float]:
    """The similarity a peak needs, from the reference tiles: SHIP_SIDE of the way from the background level (the
    BACKGROUND_QUANTILE of the cells away from every labelled ship) up to the ship level (the mean similarity over a
    reference ship's cells; the lowest of the ships). When the background is as alike as the ships, just below the
    ship level, so that the reference ships themselves are still found.

    Args:
        sims: per reference tile, the (h, w) similarity map.
        ships: per tile, (n, h, w) bool cells of each reference ship in it.
        known: per tile, (h, w) bool cells of every labelled ship (reference or not), grown by one cell.

    Returns {"ship", "background", "threshold"}."""
    ship = min(float(sim[c].mean()) for sim, cells in zip(sims, ships) for c in cells)
    background = torch.cat([sim[~k] for sim, k in zip(sims, known)])
    bg = float(torch.quantile(background, BACKGROUND_QUANTILE)) if len(background) else -1.0
    threshold = bg + SHIP_SIDE * (ship - bg) if bg < ship else ship - 1e-3
    return {"ship": ship, "background": bg, "threshold": threshold}


def grow(cells: torch.Tensor) -> torch.Tensor:
    """(h, w) bool cells grown by one cell in every direction."""
    return F.max_pool2d(cells[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0
