"""Prompt sampling for training: a jittered box per ship, and sometimes points, as a user or the prompter would
give them at detection time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class PromptRecipe:
    """How prompts are drawn for one tile in one step.

    jitter: each box side moves by up to this fraction of the box's width (x) or height (y).
    box_and_points: probability that a tile's boxes come with one positive point (and maybe a negative one).
    points_only: probability of points without boxes (the one-click case).
    negative: probability, given points, of adding a negative point outside the ship but inside its box.
    max_instances: at most this many ships per tile per step (a random subset), for speed.
    negative_boxes: at most this many box prompts per tile on no ship, whose target is an empty mask: the
        prompter's own false proposals of the step (quays, breakwaters, wakes), topped up with ship-sized boxes
        at random places that touch no ship. Detection drops empty masks, so a decoder that learns to answer a
        box on no ship with nothing removes the prompter's false alarms (with a box prior it would otherwise
        return the filled box). Off by default: on real Sentinel-2 scenes it can teach the decoder to empty faint
        real ships too.
        """

    jitter: float = 0.1
    box_and_points: float = 0.2
    points_only: float = 0.1
    negative: float = 0.5
    max_instances: int = 16
    negative_boxes: int = 0


@dataclass
class Prompts:
    """Prompts for N ships of one image: ``boxes`` (N, 4) or None; ``points`` = (coords (N, P, 2) in input
    pixels, labels (N, P), 1 ship / 0 background) or None; ``index`` (N,) the instances they belong to."""

    index: torch.Tensor
    boxes: torch.Tensor | None
    points: tuple[torch.Tensor, torch.Tensor] | None


def select_instances(n: int, cap: int, rng: np.random.Generator) -> torch.Tensor:
    """Indices of at most ``cap`` of ``n`` instances, chosen at random when there are more."""
    idx = np.arange(n) if n <= cap else np.sort(rng.choice(n, cap, replace=False))
    return torch.from_numpy(idx.astype(np.int64))


def jitter_boxes(boxes: torch.Tensor, fraction: float, size: int, rng: np.random.Generator) -> torch.Tensor:
    """(N, 4) boxes with each side moved by up to ``fraction`` of the box side, clipped to [0, size]."""
    if fraction <= 0 or len(boxes) == 0:
        return boxes.clone()
    wh = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    shift = torch.from_numpy(rng.uniform(-fraction, fraction, size=tuple(boxes.shape)).astype(np.float32))
    out = (boxes + shift * wh).clamp(0, size)
    # A box must keep a positive size whatever the draw.
    out[:, 2:] = torch.maximum(out[:, 2:], out[:, :2] + 1).clamp(max=size)
    out[:, :2] = torch.minimum(out[:, :2], out[:, 2:] - 1)
    return out


def _random_pixel(mask: np.ndarray, rng: np.random.Generator):
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    i = rng.integers(len(ys))
    return float(xs[i]) + 0.5, float(ys[i]) + 0.5


def sample_points(masks: torch.Tensor, boxes: torch.Tensor, negative: float, rng: np.random.Generator):
    """One positive point per mask (a random mask pixel centre) and, with probability ``negative`` for the
    whole set, a negative point in the box but off the mask (label -1 padding where none exists, which
    SAM's prompt encoder treats as no point).

    Returns coords (N, P, 2) float32 and labels (N, P) int64, P = 1 or 2."""
    with_negative = rng.random() < negative
    coords, labels = [], []
    for mask, box in zip(masks.numpy(), boxes.numpy()):
        cs, ls = [_random_pixel(mask, rng) or (0.0, 0.0)], [1]
        if with_negative:
            x0, y0, x1, y1 = np.clip(np.round(box), 0, mask.shape[-1]).astype(int)
            off = np.zeros_like(mask)
            off[y0:y1, x0:x1] = ~mask[y0:y1, x0:x1]
            point = _random_pixel(off, rng)
            cs.append(point or (0.0, 0.0))
            ls.append(0 if point else -1)
        coords.append(cs)
        labels.append(ls)
    return torch.tensor(coords, dtype=torch.float32), torch.tensor(labels, dtype=torch.int64)


def sample_prompts(masks: torch.Tensor, boxes: torch.Tensor, recipe: PromptRecipe, size: int,
                   rng: np.random.Generator) -> Prompts:
    """Training prompts for the ships of one image.

    Args:
        masks: (N, S, S) bool instance masks; boxes: (N, 4) truth boxes in input pixels; size: S."""
    index = select_instances(len(boxes), recipe.max_instances, rng)
    masks, boxes = masks[index], boxes[index]
    draw = rng.random()
    use_points = draw < recipe.points_only + recipe.box_and_points
    use_boxes = draw >= recipe.points_only
    jittered = jitter_boxes(boxes, recipe.jitter, size, rng)
    points = sample_points(masks, boxes, recipe.negative, rng) if use_points else None
    return Prompts(index, jittered if use_boxes else None, points)


def _clear_of(boxes: torch.Tensor, ships: torch.Tensor, margin: float) -> torch.Tensor:
    """(N,) bool: each of ``boxes`` (N, 4) keeps at least ``margin`` pixels from every ship box (M, 4)."""
    if len(ships) == 0 or len(boxes) == 0:
        return torch.ones(len(boxes), dtype=torch.bool)
    grown = torch.cat([ships[:, :2] - margin, ships[:, 2:] + margin], dim=1)
    apart = ((boxes[:, None, 2] <= grown[None, :, 0]) | (boxes[:, None, 0] >= grown[None, :, 2])
             | (boxes[:, None, 3] <= grown[None, :, 1]) | (boxes[:, None, 1] >= grown[None, :, 3]))
    return apart.all(1)


def negative_boxes(proposals: torch.Tensor, ships: torch.Tensor, count: int, size: int,
                   rng: np.random.Generator, margin: float = 2.0) -> torch.Tensor:
    """Up to ``count`` (K, 4) box prompts on no ship of one image (input pixels, S = ``size``): first the
    ``proposals`` (the prompter's boxes, best first) that keep ``margin`` px clear of every ``ships`` box, then
    random boxes of the tile's ship sizes (or 4-40 px where it has none), also clear of every ship."""
    if count <= 0:
        return torch.zeros((0, 4))
    picked = proposals[_clear_of(proposals, ships, margin)][:count].float().clamp(0, size)
    picked = picked[(picked[:, 2] - picked[:, 0] >= 1) & (picked[:, 3] - picked[:, 1] >= 1)]
    missing = count - len(picked)
    if missing > 0:
        n = 4 * missing
        if len(ships):
            wh = (ships[:, 2:] - ships[:, :2])[torch.from_numpy(rng.integers(0, len(ships), n))]
        else:
            wh = torch.from_numpy(rng.uniform(4, 40, (n, 2)).astype(np.float32))
        wh = wh.clamp(min=2, max=size / 2)
        xy = torch.from_numpy(rng.uniform(0, 1, (n, 2)).astype(np.float32)) * (size - wh)
        random = torch.cat([xy, xy + wh], dim=1)
        picked = torch.cat([picked, random[_clear_of(random, ships, margin)][:missing]])
    return picked
