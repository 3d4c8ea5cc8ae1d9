"""One training batch: its image embeddings (through the embedding cache when the encoder is frozen) and its
loss (masks, IoU head, negative box prompts and the prompter)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from samgeo_ship.models.prompter import prompter_loss, prompter_targets
from samgeo_ship.training.cache import EmbeddingCache, embedding_key, encoder_sha256
from samgeo_ship.training.data import Sample
from samgeo_ship.training.losses import mask_loss
from samgeo_ship.training.prompts import PromptRecipe, negative_boxes, sample_prompts

# Prompter proposals scored at least this are candidates for negative box prompts (a detection threshold is
# chosen on validation from 0.1 up, so anything it could let through is covered).
NEGATIVE_SCORE = 0.1


class Encoder:
    """Image embeddings for a batch of Samples; with a frozen encoder, through the embedding cache.

    ``encoded`` counts the images that went through the image encoder (cache misses included)."""

    def __init__(self, model, cache: EmbeddingCache | None, autocast: Callable):
        self.model, self.cache, self.autocast = model, cache, autocast
        self.encoder_hash = encoder_sha256(model.sam) if cache else None
        self.encoded = 0

    def _run(self, images: torch.Tensor) -> torch.Tensor:
        self.encoded += len(images)
        with self.autocast():
            return self.model.encode(images.to(self.model.device)).float()

    def __call__(self, samples: list[Sample], grad: bool = False) -> torch.Tensor:
        if grad:
            return self._run(torch.stack([s.image for s in samples]))
        with torch.no_grad():
            if self.cache is None:
                return self._run(torch.stack([s.image for s in samples]))
            keys = [embedding_key(s.chip, s.variant, self.encoder_hash, self.model.img_size) for s in samples]
            found = [self.cache.get(k) for k in keys]
            missing = [i for i, e in enumerate(found) if e is None]
            if missing:
                fresh = self._run(torch.stack([samples[i].image for i in missing])).cpu()
                for i, emb in zip(missing, fresh):
                    self.cache.put(keys[i], emb)
                    found[i] = emb
            return torch.stack(found).to(self.model.device)


def batch_loss(model, samples: list[Sample], emb: torch.Tensor, recipe: PromptRecipe, prompter_weight: float,
               rng: np.random.Generator) -> tuple[torch.Tensor, dict]:
    """Mask + IoU-head loss over the ships of a batch, the same loss with an empty target over box prompts on no
    ship (PromptRecipe.negative_boxes), and the prompter loss over all its tiles (shipless tiles too)."""
    device = emb.device
    heat, geometry = model.prompt_maps(emb, torch.stack([s.image for s in samples]).to(device))
    stride = model.img_size / heat.shape[-1]
    targets = prompter_targets([s.boxes for s in samples], tuple(heat.shape[-2:]), stride)
    p_loss = prompter_loss(heat.float(), geometry.float(), *(t.to(device) for t in targets))
    proposals = (model.prompter.propose(heat.detach().float(), geometry.detach().float(), stride, NEGATIVE_SCORE,
                                        max_ships=4 * recipe.negative_boxes)
                 if recipe.negative_boxes else [None] * len(samples))
    terms, empty = [], []
    for b, s in enumerate(samples):
        if len(s.boxes):
            p = sample_prompts(s.masks, s.boxes, recipe, model.img_size, rng)
            points = tuple(t.to(device) for t in p.points) if p.points is not None else None
            boxes = p.boxes.to(device) if p.boxes is not None else None
            logits, iou_pred = model.decode(emb[b], boxes=boxes, points=points)
            terms.append(mask_loss(logits, iou_pred, s.masks[p.index].to(device)))
        if proposals[b] is not None:
            nothing = negative_boxes(proposals[b].boxes.cpu(), s.boxes, recipe.negative_boxes, model.img_size, rng)
            if len(nothing):
                logits, iou_pred = model.decode(emb[b], boxes=nothing.to(device))
                empty.append(mask_loss(logits, iou_pred, torch.zeros_like(logits, dtype=torch.bool)))
    total = prompter_weight * p_loss
    stats = {"prompter": float(p_loss.detach())}
    if terms:
        total = total + torch.stack([t["total"] for t in terms]).mean()
        stats["iou"] = float(np.mean([float(t["iou"]) for t in terms]))
    if empty:
        total = total + torch.stack([t["total"] for t in empty]).mean()
        stats["empty_iou"] = float(np.mean([float(t["iou"]) for t in empty]))
    stats["loss"] = float(total.detach())
    return total, stats
