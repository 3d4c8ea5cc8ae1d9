"""ShipSam: a SAM model plus the learned prompter, with the three steps detection and training share:
encode images, propose boxes, decode one mask per box."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from torch import nn

from samgeo_ship.models.prompter import Prompter, Proposals
from samgeo_ship.models.registry import CONFIGS, SamConfig, build_sam


def model_input(images: torch.Tensor, img_size: int) -> torch.Tensor:
    """(B, C, T, T) tiles in SAM's 0-255 range, C = 1 or 3 -> (B, 3, S, S), S = ``img_size`` (bilinear,
    antialiased when shrinking). Training and detection both go through here, so the encoder sees alike pixels."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if images.shape[-1] != img_size or images.shape[-2] != img_size:
        images = F.interpolate(images, size=(img_size, img_size), mode="bilinear", align_corners=False,
                               antialias=images.shape[-1] > img_size)
    return images.contiguous()


class ShipSam(nn.Module):
    """``sam`` (segment_anything's Sam) and ``prompter`` (ship proposals on its image embeddings).

    Images go in as (B, 3, S, S) float tensors in SAM's 0-255 range, S = ``config.img_size``."""

    def __init__(self, sam: Sam, config: SamConfig, prompter: Prompter | None = None):
        super().__init__()
        self.sam = sam
        self.config = config
        self.prompter = prompter or Prompter(config.prompt_embed_dim)

    @classmethod
    def from_config(cls, model_type: str) -> "ShipSam":
        return cls(build_sam(CONFIGS[model_type]), CONFIGS[model_type])

    @property
    def img_size(self) -> int:
        return self.config.img_size

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) images in [0, 255] -> (B, C, S/patch, S/patch) image embeddings."""
        x = (images - self.sam.pixel_mean) / self.sam.pixel_std
        return self.sam.image_encoder(x)

    def prompt_maps(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompter outputs: heatmap logits (B, 1, H, W) and geometry (B, 4, H, W)."""
        return self.prompter(embeddings)

    def propose(self, embeddings: torch.Tensor, threshold: float, max_ships: int = 200) -> list[Proposals]:
        heat, geometry = self.prompt_maps(embeddings)
        return self.prompter.propose(heat, geometry, self.img_size / heat.shape[-1], threshold, max_ships)

    def decode(self, embedding: torch.Tensor, boxes: torch.Tensor | None = None,
               points: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One mask per prompt for ONE image.

        Args:
            embedding: (1, C, h, w) or (C, h, w) image embedding.
            boxes: (N, 4) ``x0, y0, x1, y1`` in input pixels.
            points: coords (N, P, 2) in input pixels and labels (N, P) (1 ship, 0 background).

        Returns mask logits (N, S, S) at input resolution and predicted IoU (N,)."""
        if embedding.dim() == 3:
            embedding = embedding[None]
        sparse, dense = self.sam.prompt_encoder(points=points, boxes=boxes, masks=None)
        low, iou = self.sam.mask_decoder(image_embeddings=embedding, image_pe=self.sam.prompt_encoder.get_dense_pe(),
                                         sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                         multimask_output=False)
        masks = F.interpolate(low, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)
        return masks[:, 0], iou[:, 0]
