"""Validation during training: mask IoU with the truth boxes as prompts, the filled-box baseline measured on the
same ships, the IoU head's calibration, and the prompter score threshold that maximises centre-detection F1."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torchvision.ops import nms

from samgeo_ship import metrics
from samgeo_ship.metrics import SCORE_GRID
from samgeo_ship.models.shipsam import filled_boxes
from samgeo_ship.training.data import Sample
from samgeo_ship.training.losses import mask_iou

NMS_IOU = 0.5  # the cards' thresholds.nms_iou, which the detection predictor applies to proposals
DEFAULT_SCORE = 0.3  # the cards' default thresholds.score


def centre_matches(boxes: torch.Tensor, scores: torch.Tensor, truth: torch.Tensor) -> np.ndarray:
    """(N,) bool per proposal: its centre falls inside a (M, 4) truth box not taken by a higher-scored proposal
    (greedy one-to-one matching in score order, nearest truth centre first)."""
    hit = np.zeros(len(boxes), bool)
    free = np.ones(len(truth), bool)
    t = truth.numpy()
    tc = (t[:, :2] + t[:, 2:]) / 2
    for i in scores.argsort(descending=True).tolist():
        c = ((boxes[i, :2] + boxes[i, 2:]) / 2).numpy()
        inside = free & (t[:, 0] <= c[0]) & (c[0] < t[:, 2]) & (t[:, 1] <= c[1]) & (c[1] < t[:, 3])
        if inside.any():
            j = np.flatnonzero(inside)[np.argmin(((tc[inside] - c) ** 2).sum(1))]
            free[j], hit[i] = False, True
    return hit


def best_threshold(found: list[tuple[np.ndarray, np.ndarray]], n_truth: int) -> tuple[float, float]:
    """(threshold, F1) maximising centre-detection F1 over SCORE_GRID (ties as in metrics.best_threshold);
    ``found``: per tile (scores, hits). With no hit at any threshold, the cards' default threshold."""
    scores = np.concatenate([s for s, _ in found]) if found else np.zeros(0)
    hits = np.concatenate([h for _, h in found]) if found else np.zeros(0, bool)
    sweep = [(float(t), 2 * int(hits[scores >= t].sum()) / max(int((scores >= t).sum()) + n_truth, 1))
             for t in SCORE_GRID]
    threshold, f1 = metrics.best_threshold(sweep, f1=float)
    return (threshold, f1) if f1 > 0 else (DEFAULT_SCORE, 0.0)


@torch.no_grad()
def validate(model, batches, embed: Callable[[list[Sample]], torch.Tensor]) -> dict:
    """Metrics over validation batches (lists of Samples in variant 0).

    Returns mask_iou (mean over ships, truth boxes as prompts), box_baseline_iou (the truth box filled, on the
    same ships), iou_head_mae (mean |predicted - real| IoU), score_threshold and centre_f1 (prompter), ships,
    tiles."""
    ious, box_ious, errors, found, n_truth, tiles = [], [], [], [], 0, 0
    for samples in batches:
        emb = embed(samples)
        images = torch.stack([s.image for s in samples]).to(emb.device)
        proposals = model.propose(emb, threshold=min(SCORE_GRID), images=images)
        for b, s in enumerate(samples):
            tiles += 1
            n_truth += len(s.boxes)
            boxes, scores = proposals[b].boxes.float().cpu(), proposals[b].scores.float().cpu()
            # Detection keeps a proposal only where no higher-scored one overlaps it (TilePredictor): the same
            # here, so that two peaks on one long hull, which detection treats as one ship, are not counted as a
            # false alarm and do not push the chosen threshold up (costing recall at detection).
            keep = nms(boxes, scores, NMS_IOU)
            boxes, scores = boxes[keep], scores[keep]
            found.append((scores.numpy(), centre_matches(boxes, scores, s.boxes)))
            if len(s.boxes) == 0:
                continue
            logits, iou_pred = model.decode(emb[b], boxes=s.boxes.to(emb.device))
            iou = mask_iou(logits.float().cpu() > 0, s.masks)
            ious.append(iou)
            errors.append((iou_pred.float().cpu() - iou).abs())
            box_ious.append(mask_iou(filled_boxes(s.boxes, s.masks.shape[-1]), s.masks))
    threshold, f1 = best_threshold(found, n_truth)
    mean = (lambda xs: float(torch.cat(xs).mean()) if xs else float("nan"))
    return {"mask_iou": mean(ious), "box_baseline_iou": mean(box_ious), "iou_head_mae": mean(errors),
            "score_threshold": threshold, "centre_f1": f1, "ships": n_truth, "tiles": tiles}
