"""Training losses on SAM's outputs: focal + Dice on mask logits, MSE on the IoU prediction, and the mask IoU
itself (used by the loss, validation and tests alike)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# SAM's own recipe: focal and Dice at 20:1, plus the IoU-head MSE.
FOCAL_WEIGHT = 20.0
DICE_WEIGHT = 1.0
IOU_WEIGHT = 1.0


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """(N,) sigmoid focal loss per mask, averaged over pixels; logits and target (N, H, W)."""
    target = target.float()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = logits.sigmoid()
    p_t = p * target + (1 - p) * (1 - target)
    a_t = alpha * target + (1 - alpha) * (1 - target)
    return (a_t * ce * (1 - p_t) ** gamma).flatten(1).mean(1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """(N,) soft Dice loss per mask; logits and target (N, H, W)."""
    p = logits.sigmoid().flatten(1)
    t = target.float().flatten(1)
    return 1 - (2 * (p * t).sum(1) + eps) / (p.sum(1) + t.sum(1) + eps)


def mask_iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N,) IoU of boolean masks (N, H, W); two empty masks count as IoU 1."""
    pred, target = pred.flatten(1).bool(), target.flatten(1).bool()
    inter = (pred & target).sum(1).float()
    union = (pred | target).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def mask_loss(logits: torch.Tensor, iou_pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Loss terms for N predicted masks of one image.

    Args:
        logits: (N, S, S) mask logits; iou_pred: (N,) SAM's predicted IoU; target: (N, S, S) bool truth.

    Returns {"focal", "dice", "iou_mse", "iou", "total"}: means over the N masks; "iou" is the real IoU of the
    thresholded prediction (no gradient), the target of the IoU head so its scores stay calibrated."""
    with torch.no_grad():
        iou = mask_iou(logits > 0, target)
    focal = focal_loss(logits.float(), target).mean()
    dice = dice_loss(logits.float(), target).mean()
    iou_mse = F.mse_loss(iou_pred.float(), iou)
    total = FOCAL_WEIGHT * focal + DICE_WEIGHT * dice + IOU_WEIGHT * iou_mse
    return {"focal": focal, "dice": dice, "iou_mse": iou_mse, "iou": iou.mean(), "total": total}
