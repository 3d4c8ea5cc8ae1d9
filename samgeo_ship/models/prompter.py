"""The learned prompter: a light CenterNet-style head on SAM's image embeddings that proposes one box per ship."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from torch import nn

from samgeo_ship.models.proposer import Proposals, heat_peaks

# CenterNet's prior: heatmap logits start at p = 0.1 so the focal loss does not explode on the first steps.
_PRIOR_BIAS = -math.log((1 - 0.1) / 0.1)


class Prompter(nn.Module):
    """The learned proposer (models.proposer.Proposer) of "shipsam" bundles. Predicts, on a grid ``upscale`` times
    finer than the image embedding, a ship-centre heatmap (1 channel), the sub-cell offset of the centre (2
    channels, in cells) and the box size (2 channels, log of pixels).

    Args:
        in_chans: channels of the image embedding (the SAM config's prompt_embed_dim).
        hidden: channels of the head.
        upscale: 1 or 2; 2 separates ships moored side by side that share an embedding cell.
        pixels: channels of a small convolutional branch on the model-input pixels themselves (0 = none, as in
            bundles written before it existed), joined to the embedding path at the heatmap's resolution. SAM's
            embedding has one cell per patch (8-16 input pixels); ships moored side by side 1-2 scene pixels
            apart, or against a bright quay, share cells there, and a from-scratch encoder learns them slowly.
            A few convolutions at stride 4 see such edges directly.
    """

    part = "prompter"
    unused_parts = ()

    def __init__(self, in_chans: int, hidden: int = 96, upscale: int = 2, pixels: int = 0):
        super().__init__()
        self.upscale = upscale
        self.pixel_chans = pixels
        up = [nn.ConvTranspose2d(in_chans, hidden, 2, stride=2)] if upscale == 2 else [nn.Conv2d(in_chans, hidden, 1)]
        self.body = nn.Sequential(*up, LayerNorm2d(hidden), nn.GELU(),
                                  nn.Conv2d(hidden, hidden, 3, padding=1), nn.GELU(),
                                  nn.Conv2d(hidden, hidden, 3, padding=1), nn.GELU())
        if pixels:
            self.pixels = nn.Sequential(nn.Conv2d(3, pixels, 3, stride=2, padding=1), nn.GELU(),
                                        nn.Conv2d(pixels, pixels, 3, stride=2, padding=1), LayerNorm2d(pixels),
                                        nn.GELU(), nn.Conv2d(pixels, pixels, 3, padding=1), nn.GELU())
            self.fuse = nn.Sequential(nn.Conv2d(hidden + pixels, hidden, 3, padding=1), nn.GELU(),
                                      nn.Conv2d(hidden, hidden, 3, padding=1), nn.GELU())
        self.heat = nn.Conv2d(hidden, 1, 1)
        self.geometry = nn.Conv2d(hidden, 4, 1)
        nn.init.constant_(self.heat.bias, _PRIOR_BIAS)

    def forward(self, embeddings: torch.Tensor, images: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, h, w) embeddings -> heatmap logits (B, 1, H, W) and geometry (B, 4, H, W), H = upscale * h.

        ``images``: (B, 3, S, S) normalised model inputs, which a prompter with a pixel branch needs."""
        x = self.body(embeddings)
        if self.pixel_chans:
            if images is None:
                raise ValueError("this prompter looks at the pixels too: pass the model-input images")
            p = self.pixels(images.to(x.dtype))
            if p.shape[-2:] != x.shape[-2:]:
                p = F.adaptive_avg_pool2d(p, x.shape[-2:])
            x = self.fuse(torch.cat([x, p], dim=1))
        return self.heat(x), self.geometry(x)

    @classmethod
    def from_card(cls, config, card) -> "Prompter":
        """An untrained prompter of the shape a bundle card records (no pixel branch in bundles older than it)."""
        return cls(config.prompt_embed_dim, pixels=int(card.prompter_pixels))

    def maps(self, model, embeddings: torch.Tensor, images: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Heatmap logits and geometry (see ``forward``) for ``model``'s embeddings; ``images``: the (B, 3, S, S)
        model inputs in [0, 255] they came from, which ``model`` normalises for the pixel branch."""
        return self(embeddings, model.normalise(images) if images is not None else None)

    def proposals(self, model, embeddings: torch.Tensor, threshold: float, max_ships: int = 200,
                  images: torch.Tensor | None = None) -> list[Proposals]:
        """The Proposer interface: a box per heatmap peak."""
        heat, geometry = self.maps(model, embeddings, images)
        return self.propose(heat, geometry, model.img_size / heat.shape[-1], threshold, max_ships)

    @torch.no_grad()
    def propose(self, heat_logits: torch.Tensor, geometry: torch.Tensor, stride: float, threshold: float,
                max_ships: int = 200) -> list[Proposals]:
        """Peaks of the heatmap (3x3 local maxima above ``threshold``) -> boxes in input pixels.

        ``stride``: input pixels per heatmap cell (img_size / H)."""
        out = []
        for b, (ys, xs, scores) in enumerate(heat_peaks(heat_logits, threshold, max_ships)):
            g = geometry[b, :, ys, xs]
            cx = (xs.float() + 0.5 + g[0]) * stride
            cy = (ys.float() + 0.5 + g[1]) * stride
            w, h = g[2].clamp(max=8).exp(), g[3].clamp(max=8).exp()
            boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1)
            out.append(Proposals(boxes.reshape(-1, 4), scores))
        return out


def prompter_targets(boxes: list[torch.Tensor], shape: tuple[int, int], stride: float):
    """Training targets for a batch.

    Args:
        boxes: per image, (N, 4) ``x0, y0, x1, y1`` ship boxes in input pixels.
        shape: (H, W) of the heatmap.
        stride: input pixels per heatmap cell.

    Returns heat (B, 1, H, W) Gaussian peaks of 1 at ship centres, geometry (B, 4, H, W) and a weight (B, 1, H, W)
    that is 1 at the centre cells where the geometry is supervised."""
    H, W = shape
    B = len(boxes)
    heat = torch.zeros(B, 1, H, W)
    geom = torch.zeros(B, 4, H, W)
    weight = torch.zeros(B, 1, H, W)
    ys = torch.arange(H).float()[:, None]
    xs = torch.arange(W).float()[None, :]
    for b, bx in enumerate(boxes):
        for x0, y0, x1, y1 in bx.tolist():
            cx, cy = (x0 + x1) / 2 / stride, (y0 + y1) / 2 / stride
            ix, iy = min(int(cx), W - 1), min(int(cy), H - 1)
            # Gaussian radius from the box's short side keeps neighbours moored side by side apart.
            sigma = max(0.5, min(x1 - x0, y1 - y0) / stride / 3)
            g = torch.exp(-((xs - ix) ** 2 + (ys - iy) ** 2) / (2 * sigma**2))
            heat[b, 0] = torch.maximum(heat[b, 0], g)
            geom[b, :, iy, ix] = torch.tensor([cx - ix - 0.5, cy - iy - 0.5,
                                               math.log(max(x1 - x0, 1.0)), math.log(max(y1 - y0, 1.0))])
            weight[b, 0, iy, ix] = 1.0
    return heat, geom, weight


def prompter_loss(heat_logits, geometry, heat_t, geom_t, weight, alpha: float = 2.0, beta: float = 4.0):
    """CenterNet's penalty-reduced focal loss on the heatmap plus L1 on offsets and log-sizes at centre cells."""
    p = heat_logits.sigmoid().clamp(1e-4, 1 - 1e-4)
    pos = heat_t.eq(1).float()
    pos_loss = -(torch.log(p) * (1 - p) ** alpha * pos).sum()
    neg_loss = -(torch.log(1 - p) * p**alpha * (1 - heat_t) ** beta * (1 - pos)).sum()
    n = pos.sum().clamp(min=1)
    geo_loss = (F.l1_loss(geometry, geom_t, reduction="none") * weight).sum() / n
    return (pos_loss + neg_loss) / n + geo_loss
