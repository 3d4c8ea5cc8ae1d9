"""ShipSam: a SAM model plus a proposer (the learned prompter, or another strategy: models.proposer), with the three
steps detection and training share: encode images, propose boxes, decode one mask per box."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from torch import nn

from samgeo_ship.models.prompter import Prompter
from samgeo_ship.models.proposer import Proposals, Proposer
from samgeo_ship.models.registry import CONFIGS, SamConfig, build_sam

PROMPTER_PIXELS = 32  # channels of the prompter's pixel branch in new models (Prompter)

# Slices of SAM's four mask tokens: 0 is the single-mask output, 1-3 the multimask outputs (MaskDecoder.forward).
DECODER_OUTPUTS = {"single": slice(0, 1), "multimask": slice(1, 4), "all": slice(0, 4)}


def model_input(images: torch.Tensor, img_size: int) -> torch.Tensor:
    """(B, C, T, T) tiles in SAM's 0-255 range, C = 1 or 3 -> (B, 3, S, S), S = ``img_size`` (bilinear,
    antialiased when shrinking). Training and detection both go through here, so the encoder sees alike pixels."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if images.shape[-1] != img_size or images.shape[-2] != img_size:
        images = F.interpolate(images, size=(img_size, img_size), mode="bilinear", align_corners=False,
                               antialias=images.shape[-1] > img_size)
    return images.contiguous()


def filled_boxes(boxes: torch.Tensor, size: int) -> torch.Tensor:
    """(N, S, S) bool masks of the pixels whose centres lie inside each (N, 4) box (S = ``size``)."""
    centres = torch.arange(size, dtype=boxes.dtype, device=boxes.device) + 0.5
    cols = (centres[None] >= boxes[:, 0:1]) & (centres[None] < boxes[:, 2:3])
    rows = (centres[None] >= boxes[:, 1:2]) & (centres[None] < boxes[:, 3:4])
    return rows[:, :, None] & cols[:, None, :]


def mask_boxes(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, H, W) bool masks -> (N, 4) float ``x0, y0, x1, y1`` boxes of their pixels (edge coordinates, exclusive
    max) and (N,) bool: the mask is not empty (an empty mask's box is meaningless)."""
    rows, cols = masks.any(2), masks.any(1)
    r = torch.arange(masks.shape[-2], device=masks.device)
    c = torch.arange(masks.shape[-1], device=masks.device)
    x0 = torch.where(cols, c, masks.shape[-1]).amin(1)
    x1 = torch.where(cols, c + 1, 0).amax(1)
    y0 = torch.where(rows, r, masks.shape[-2]).amin(1)
    y1 = torch.where(rows, r + 1, 0).amax(1)
    return torch.stack([x0, y0, x1, y1], dim=1).float(), rows.any(1)


class ShipSam(nn.Module):
    """``sam`` (segment_anything's Sam) and a ``proposer`` of ship boxes on its image embeddings (models.proposer),
    held under the proposer's own ``part`` name, so that a bundle's tensors keep their names: ``prompter`` for the
    learned prompter, the default.

    Images go in as (B, 3, S, S) float tensors in SAM's 0-255 range, S = ``config.img_size``.

    ``box_prior``: with a box prompt, the mask logits are the decoder's plus ``box_prior`` inside the box and minus
    it outside (``filled_boxes``), so the decoder learns only how a ship departs from its box. SAM alone must first
    learn from the box's sparse prompt tokens where the box is; a small model trained from scratch on a few hundred
    ships spends its whole budget there and stays below the filled box, while with a prior it goes well beyond it.
    0 turns it off (bundles written before it existed). The bundle card records it."""

    def __init__(self, sam: Sam, config: SamConfig, proposer: Proposer | None = None, box_prior: float = 0.0):
        super().__init__()
        self.sam = sam
        self.config = config
        proposer = proposer if proposer is not None else Prompter(config.prompt_embed_dim, pixels=PROMPTER_PIXELS)
        self.proposer_part = proposer.part
        self.add_module(proposer.part, proposer)
        self.box_prior = float(box_prior)

    @classmethod
    def from_config(cls, model_type: str) -> "ShipSam":
        return cls(build_sam(CONFIGS[model_type]), CONFIGS[model_type])

    @property
    def proposer(self) -> Proposer:
        return getattr(self, self.proposer_part)

    @property
    def img_size(self) -> int:
        return self.config.img_size

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) images in [0, 255] -> SAM's normalised input (pixel mean and std)."""
        return (images - self.sam.pixel_mean) / self.sam.pixel_std

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) images in [0, 255] -> (B, C, S/patch, S/patch) image embeddings."""
        return self.sam.image_encoder(self.normalise(images))

    def prompt_maps(self, embeddings: torch.Tensor, images: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The learned prompter's outputs: heatmap logits (B, 1, H, W) and geometry (B, 4, H, W). ``images``: the
        (B, 3, S, S) model inputs in [0, 255] the embeddings came from (the prompter's pixel branch looks at them)."""
        return self.prompter.maps(self, embeddings, images)

    def propose(self, embeddings: torch.Tensor, threshold: float, max_ships: int = 200,
                images: torch.Tensor | None = None) -> list[Proposals]:
        """The proposer's ships (Proposer.proposals)."""
        return self.proposer.proposals(self, embeddings, threshold, max_ships, images)

    def decode(self, embedding: torch.Tensor, boxes: torch.Tensor | None = None,
               points: tuple[torch.Tensor, torch.Tensor] | None = None,
               masks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One mask per prompt for ONE image.

        Args:
            embedding: (1, C, h, w) or (C, h, w) image embedding.
            boxes: (N, 4) ``x0, y0, x1, y1`` in input pixels.
            points: coords (N, P, 2) in input pixels and labels (N, P) (1 ship, 0 background).
            masks: (N, 1, 4h, 4w) low-resolution mask logits as a mask prompt (a previous pass's output).

        Returns mask logits (N, S, S) at input resolution and predicted IoU (N,)."""
        low, iou = self.decode_low(embedding, boxes, points, masks)
        logits = self.upscale(low)[:, 0]
        if boxes is not None and self.box_prior:
            prior = filled_boxes(boxes.to(logits.dtype), self.img_size).to(logits.dtype) * 2 - 1
            logits = logits + self.box_prior * prior
        return logits, iou[:, 0]

    def decode_low(self, embedding: torch.Tensor, boxes: torch.Tensor | None = None,
                   points: tuple[torch.Tensor, torch.Tensor] | None = None, masks: torch.Tensor | None = None,
                   outputs: str = "single") -> tuple[torch.Tensor, torch.Tensor]:
        """The mask decoder's own output for ONE image (prompts as in ``decode``): low-resolution mask logits
        (N, M, 4h, 4w) and predicted IoU (N, M). ``outputs``: "single" (M = 1, the output shipseg trains and
        detection uses), "multimask" (M = 3, SAM's three nested guesses for an ambiguous prompt) or "all" (M = 4,
        single then multimask)."""
        if embedding.dim() == 3:
            embedding = embedding[None]
        sparse, dense = self.sam.prompt_encoder(points=points, boxes=boxes, masks=masks)
        low, iou = self.sam.mask_decoder.predict_masks(image_embeddings=embedding,
                                                       image_pe=self.sam.prompt_encoder.get_dense_pe(),
                                                       sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense)
        which = DECODER_OUTPUTS[outputs]
        return low[:, which], iou[:, which]

    def upscale(self, low: torch.Tensor) -> torch.Tensor:
        """(N, M, 4h, 4w) low-resolution mask logits -> (N, M, S, S) at input resolution (bilinear)."""
        return F.interpolate(low, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)
