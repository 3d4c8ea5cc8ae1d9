"""Similarity maps and their peaks: where a tile's image embedding looks like the reference ships (PerSAM's location
prior), which peaks seed a ship, and how a found ship is taken off the map so that it is not found again."""

from __future__ import annotations

import torch
import torch.nn.functional as F

SUPPRESSED = -1.0  # the lowest cosine similarity: a suppressed cell is below any threshold, even one <= 0


def similarity_map(embedding: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(C, h, w) image embedding and (K, C) target features -> (h, w) cosine similarity to the most alike target."""
    emb = F.normalize(embedding.float(), dim=0)
    return torch.einsum("kc,chw->khw", F.normalize(targets.float(), dim=1), emb).amax(0)


def find_peaks(sim: torch.Tensor, threshold: float, max_peaks: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Local maxima (3 x 3) of an (h, w) map at or above ``threshold``, most similar first.

    Returns (N, 2) ``row, col`` cells and their (N,) values; of a plateau every cell is a peak (the first one found
    suppresses the rest, see ``select``)."""
    pooled = F.max_pool2d(sim[None, None], 3, stride=1, padding=1)[0, 0]
    rows, cols = torch.nonzero((sim == pooled) & (sim >= threshold), as_tuple=True)
    values = sim[rows, cols]
    order = values.argsort(descending=True)[:max_peaks]
    return torch.stack([rows[order], cols[order]], dim=1), values[order]


def least_similar(sim: torch.Tensor) -> torch.Tensor:
    """(2,) ``row, col`` of the least similar cell (PerSAM's negative point)."""
    flat = int(sim.argmin())
    return torch.tensor([flat // sim.shape[1], flat % sim.shape[1]], device=sim.device)


def cell_centres(cells: torch.Tensor, stride: float) -> torch.Tensor:
    """(..., 2) ``row, col`` cells -> (..., 2) ``x, y`` of their centres in input pixels (``stride`` px per cell)."""
    return (cells.flip(-1).float() + 0.5) * stride


def mask_cells(low_logits: torch.Tensor, grid: tuple[int, int], mask_logit: float = 0.0) -> torch.Tensor:
    """(N, 1, H, W) low-resolution mask logits -> (N, h, w) bool: the cells of the ``grid`` each mask touches."""
    return F.adaptive_max_pool2d((low_logits > mask_logit).float(), grid)[:, 0] > 0


def suppress(sim: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """A copy of ``sim`` with the (h, w) bool ``cells`` of a found ship set to SUPPRESSED."""
    return sim.masked_fill(cells, SUPPRESSED)


def select(sim: torch.Tensor, peaks: torch.Tensor, cells: torch.Tensor, threshold: float) -> list[int]:
    """Greedy suppression, most similar peak first: a peak seeds a ship if its cell is still at or above
    ``threshold`` and its mask is not empty; that ship's ``cells`` are then suppressed on the map, so that the peaks
    inside it (the same ship) are skipped. Returns the indexes of the kept peaks.

    Args:
        sim: (h, w) similarity map; peaks: (N, 2) cells from ``find_peaks``; cells: (N, h, w) each peak's mask."""
    kept = []
    for i, (r, c) in enumerate(peaks.tolist()):
        if sim[r, c] < threshold or not cells[i].any():
            continue
        kept.append(i)
        sim = suppress(sim, cells[i])
    return kept
