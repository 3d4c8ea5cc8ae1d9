"""The native-pixel proposer: a small fully convolutional network that finds ships on the tile at the model's own
pixel size (the scene's pixels for a model made for them), not on SAM's upsampled ViT patches; its boxes prompt
SAM's mask decoder. Bundles of kind "native" carry it (models.bundle.BUNDLE_KINDS).

Or it finds and draws the ships itself, segment first: a bundle whose card holds ``proposer.mask_threshold``
(``shipseg train --proposer native --masks native``) takes each 8-connected region of its ship-pixel head above that
threshold as one ship (its mask, its box, its score the region's highest probability), and detection runs neither
SAM's encoder nor its decoder. The ship-pixel target leaves out the pixels where two ships touch, so ships moored
side by side come out as separate regions. On real Sentinel-2 ports the SAM here (trained on synthetic harbours) gives
masks far below the filled box even from the true boxes, and the boxes regressed from the heatmap peaks miss moored
ships (benchmarks/README.md, "Native masks"); its own regions also free the proposer from SAM's bands, so it can read
near infrared, which a SAM trained on red, green and blue cannot.

Why not the ViT embedding: a 64 px Sentinel-2 tile is upsampled 4x for sam_tiny, and one embedding cell then holds
2 x 2 scene pixels; ships moored side by side 1-2 pixels apart share cells, and a from-scratch encoder learns them
slowly. At native pixels a few dilated convolutions see each hull's edges directly, and the heatmap has one cell
per scene pixel, so two moored ships keep two peaks.

Outputs, one cell per native pixel: a ship-centre heatmap (CenterNet's focal loss), the distances from the cell to
the four edges of its ship's box (FCOS-style ``left, top, right, bottom``, as log(1 + px)), and a ship-pixel mask
(an auxiliary target that gives every hull pixel a gradient; six scenes hold only a few hundred ships). The box
edges are regressed rather than a size and an angle: SAM takes axis-aligned box prompts, and an oriented box's
envelope is what would be sent anyway; the edges from the peak cell need no separate offset head."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from samgeo_ship.models.proposer import Proposals, heat_peaks
from samgeo_ship.models.shipsam import mask_boxes

KIND = "native"
REDUCE = {"max": "amax", "mean": "mean"}
DEFAULT_WIDTH = 16
# CenterNet's prior: heatmap logits start at p = 0.05, so the focal loss does not explode on the first steps.
_PRIOR_BIAS = -math.log((1 - 0.05) / 0.05)
MAX_EDGE_LOG = 6.0  # log(1 + px) of a box edge: ~400 px, beyond any tile's ship


class NativeProposer(nn.Module):
    """Ship proposals at native pixels (see the module docstring).

    Args:
        tile_size: native pixels per tile side (the card's ``tile_size``): the model input is pooled back to it.
        width: channels of the network's layers.
        in_chans: bands the network reads (the model's 3, or 1 repeated, as SAM's input holds them).
    """

    part = KIND
    unused_parts = ("prompter",)

    def __init__(self, tile_size: int, width: int = DEFAULT_WIDTH, in_chans: int = 3,
                 mask_threshold: float | None = None, region_score: str = "max"):
        super().__init__()
        self.tile_size = int(tile_size)
        self.width = int(width)
        # Set: the ship-pixel probability above which pixels form the ships' regions (its own ships, ``regions``).
        self.mask_threshold = None if mask_threshold is None else float(mask_threshold)
        self.region_score = region_score  # how a region is scored (``regions``)
        wide = width + width // 2
        layers, c = [], in_chans
        # Dilations 1-8: a receptive field of ~35 px, a whole Sentinel-2 ship and the quay or open water around it.
        for out, dil in ((width, 1), (width, 1), (wide, 2), (wide, 4), (wide, 8), (width, 1)):
            layers += [nn.Conv2d(c, out, 3, padding=dil, dilation=dil), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            c = out
        self.body = nn.Sequential(*layers)
        self.heat = nn.Conv2d(c, 1, 1)
        self.edges = nn.Conv2d(c, 4, 1)
        self.mask = nn.Conv2d(c, 1, 1)
        nn.init.constant_(self.heat.bias, _PRIOR_BIAS)

    @classmethod
    def from_card(cls, config, card) -> "NativeProposer":
        """An untrained proposer of the shape a bundle card records."""
        return cls(card.tile_size, int(card.proposer.get("width", DEFAULT_WIDTH)),
                   mask_threshold=card.proposer.get("mask_threshold"),
                   region_score=card.proposer.get("region_score", "max"))

    @property
    def draws_ships(self) -> bool:
        """Whether it finds and outlines the ships itself (``mask_threshold`` set): its regions are the detections,
        and its ship-pixel map answers box prompts (``box_masks``)."""
        return self.mask_threshold is not None

    @property
    def needs_embeddings(self) -> bool:
        """Whether detection must encode the tiles: only for SAM's decoder, which its own masks do without."""
        return not self.draws_ships

    def native(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) model inputs in [0, 255] -> (B, 3, T, T) in [-1, 1] at the model's own pixels (T =
        ``tile_size``; the average of each S/T block, which undoes the upsampling of models.shipsam.model_input)."""
        x = images.float()
        if x.shape[-1] != self.tile_size:
            x = F.adaptive_avg_pool2d(x, (self.tile_size, self.tile_size))
        return x / 127.5 - 1.0

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, 3, T, T) native inputs (``native``) -> heatmap logits (B, 1, T, T), box edges (B, 4, T, T) as
        log(1 + px) and ship-pixel logits (B, 1, T, T)."""
        h = self.body(x)
        return self.heat(h), self.edges(h), self.mask(h)

    def _heads(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``forward`` on (B, 3, S, S) model inputs in [0, 255]."""
        return self(self.native(images).to(next(self.parameters()).dtype))

    def ship_probability(self, images: torch.Tensor, size: int) -> torch.Tensor:
        """(B, 3, S, S) model inputs in [0, 255] -> (B, size, size) ship-pixel probabilities, resized (bilinear) to
        ``size`` pixels a side."""
        _, _, mask = self._heads(images)
        return F.interpolate(mask.float().sigmoid(), size=(size, size), mode="bilinear", align_corners=False)[:, 0]

    def proposals(self, model, embeddings: torch.Tensor, threshold: float, max_ships: int = 200,
                  images: torch.Tensor | None = None) -> list[Proposals]:
        """The Proposer interface; it reads ``images`` only (the embeddings, None when ``needs_embeddings`` is
        False, prompt SAM's decoder afterwards). With ``mask_threshold`` set, the proposals are the ship regions
        (``regions``), each with its ``pixel_masks`` at native pixels."""
        if images is None:
            raise ValueError("the native proposer looks at the pixels: pass the model-input images")
        heat, edges, mask = self._heads(images)
        scale = images.shape[-1] / self.tile_size
        if self.draws_ships:
            return regions(mask, self.mask_threshold, scale, threshold, max_ships, self.region_score)
        return decode(heat, edges, scale, threshold, max_ships)


@torch.no_grad()
def decode(heat_logits: torch.Tensor, edges: torch.Tensor, scale: float, threshold: float,
           max_ships: int = 200) -> list[Proposals]:
    """3x3 peaks of the heatmap above ``threshold`` -> boxes from the edges regressed at each peak, in native pixels
    times ``scale`` (model-input pixels per native pixel)."""
    out = []
    for b, (ys, xs, scores) in enumerate(heat_peaks(heat_logits, threshold, max_ships)):
        d = edges[b, :, ys, xs].float().clamp(0, MAX_EDGE_LOG).expm1()
        cx, cy = xs.float() + 0.5, ys.float() + 0.5
        boxes = torch.stack([cx - d[0], cy - d[1], cx + d[2], cy + d[3]], dim=1) * scale
        out.append(Proposals(boxes.reshape(-1, 4), scores))
    return out


@torch.no_grad()
def regions(mask_logits: torch.Tensor, mask_threshold: float, scale: float, threshold: float,
            max_ships: int = 200, score: str = "max") -> list[Proposals]:
    """Per image of (B, 1, T, T) ship-pixel logits, each 8-connected region above ``mask_threshold`` whose score
    reaches ``threshold``, strongest first, at most ``max_ships``: Proposals whose ``pixel_masks`` are the regions
    (native pixels) and whose boxes are theirs, times ``scale`` (model-input pixels per native pixel).

    ``score``: a region's highest probability ("max"), or its mean ("mean"), which rough water reaches less often:
    its regions tend to hold one confident pixel among weak ones, a hull's pixels are confident throughout."""
    prob = mask_logits.float().sigmoid()[:, 0]
    labels = components(prob > mask_threshold)
    out = []
    for p, lab in zip(prob, labels):
        ids, inverse = torch.unique(lab, return_inverse=True)
        n = len(ids) - 1  # ids[0] is the background's 0
        if n <= 0:
            none = torch.zeros(0, *p.shape, dtype=torch.bool, device=p.device)
            out.append(Proposals(torch.zeros(0, 4, device=p.device), torch.zeros(0, device=p.device), pixel_masks=none))
            continue
        scores = torch.zeros(n + 1, device=p.device).scatter_reduce(0, inverse.flatten(), p.flatten(), REDUCE[score],
                                                                    include_self=False)[1:]
        order = scores.argsort(descending=True)
        order = order[scores[order] >= threshold][:max_ships]
        masks = inverse[None] == (order + 1)[:, None, None]
        out.append(Proposals(mask_boxes(masks)[0].float() * scale, scores[order], pixel_masks=masks))
    return out


@torch.no_grad()
def box_masks(prob: torch.Tensor, mask_threshold: float, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A user's box prompts answered by the ship-pixel map of one tile: (T, T) probabilities and (N, 4) boxes
    ``x0, y0, x1, y1`` in its pixels (edges) -> (N, T, T) bool masks and (N,) scores. Per box, the largest 8-connected
    region above ``mask_threshold`` among the pixels whose centres the box holds; where none is above it, the box itself,
    filled (a box prompt says a ship is there), by the tile that holds the box's centre only: a box across a seam is
    answered in each tile it reaches, and the parts are joined, so a sliver of it with no ship pixels in a neighbour
    tile stays empty rather than adding a slab of box to the ship. A score is its mask's mean probability."""
    T = prob.shape[-1]
    # The pixels whose centres the box holds; a box between centres keeps the pixel under its own centre.
    lo = (boxes[:, :2] - 0.5).ceil()
    hi = (boxes[:, 2:] - 0.5).floor() + 1
    centre = ((boxes[:, :2] + boxes[:, 2:]) / 2).floor()
    empty = hi <= lo
    lo, hi = torch.where(empty, centre, lo), torch.where(empty, centre + 1, hi)
    holds_centre = ((centre >= 0) & (centre < T)).all(1).tolist()
    lo, hi = lo.clamp(0, T - 1).long(), hi.clamp(1, T).long()
    hi = torch.maximum(hi, lo + 1)
    masks = torch.zeros(len(boxes), T, T, dtype=torch.bool, device=prob.device)
    for k, ((x0, y0), (x1, y1)) in enumerate(zip(lo.tolist(), hi.tolist())):
        inside = torch.zeros(T, T, dtype=torch.bool, device=prob.device)
        inside[y0:y1, x0:x1] = True
        ship = inside & (prob > mask_threshold)
        if ship.any():
            labels = components(ship[None])[0]
            ids, counts = torch.unique(labels[ship], return_counts=True)
            ship = labels == ids[counts.argmax()]
        masks[k] = ship if ship.any() else inside & holds_centre[k]
    scores = (masks.float() * prob).flatten(1).sum(1) / masks.flatten(1).sum(1).clamp(min=1)
    return masks, scores


def components(mask: torch.Tensor) -> torch.Tensor:
    """(B, H, W) bool -> (B, H, W) int64 labels of its 8-connected regions (0: background; any other number names
    one region, unique across the batch). Union-find on flat pixel numbers, in whole-tensor steps: each region's
    pixels hook their label onto the largest label next to them, then the links are followed to their ends (pointer
    jumping), so a few rounds suffice even for a long, winding region (spreading labels one 3 x 3 step at a time
    takes as many steps as the region is long)."""
    B, H, W = mask.shape
    label = torch.arange(1, B * H * W + 1, device=mask.device).view(B, H, W) * mask
    parent = torch.arange(B * H * W + 1, device=mask.device)
    while True:
        padded = F.pad(label, (1, 1, 1, 1))
        largest = label
        for dy in range(3):
            for dx in range(3):
                largest = torch.maximum(largest, padded[:, dy:dy + H, dx:dx + W])
        largest = largest * mask
        if torch.equal(largest, label):
            return label
        parent.scatter_reduce_(0, label.flatten(), largest.flatten(), "amax")
        while not torch.equal(up := parent[parent], parent):
            parent = up
        label = parent[label]


def native_targets(masks: list[torch.Tensor], size: int):
    """Training targets at native pixels for a batch.

    Args:
        masks: per image, (N, T, T) bool instance masks (T = ``size``).

    Returns heat (B, 1, T, T): per ship an anisotropic Gaussian of peak 1 at its box centre, sigma a sixth of the
    box's width and height, kept to the pixels of no OTHER ship (so two ships moored side by side stay two peaks
    with a valley between them); edges (B, 4, T, T): log(1 + distance) to the box edges of the ship whose Gaussian is
    highest at the pixel; weight (B, 1, T, T): that Gaussian's value on the ship's own pixels (where edges are
    supervised); ship (B, 1, T, T): ship pixels, less those next to (8-neighbour) another ship's, so that the regions
    of ships moored side by side stay apart (``regions``)."""
    B, T = len(masks), size
    heat = torch.zeros(B, 1, T, T)
    edges = torch.zeros(B, 4, T, T)
    weight = torch.zeros(B, 1, T, T)
    ship = torch.zeros(B, 1, T, T)
    grid = torch.arange(T, dtype=torch.float32) + 0.5
    for b, m in enumerate(masks):
        if len(m) == 0:
            continue
        m = m.bool()
        any_ship = m.any(0)
        rows, cols = m.any(2), m.any(1)
        idx = torch.arange(T)
        x0 = torch.where(cols, idx, T).amin(1).float()
        x1 = torch.where(cols, idx + 1, 0).amax(1).float()
        y0 = torch.where(rows, idx, T).amin(1).float()
        y1 = torch.where(rows, idx + 1, 0).amax(1).float()
        keep = x1 > x0
        m, x0, x1, y0, y1 = m[keep], x0[keep], x1[keep], y0[keep], y1[keep]
        # The peak cell is the one holding the box centre, so the Gaussian is 1 there exactly.
        cx = ((x0 + x1) / 2).floor() + 0.5
        cy = ((y0 + y1) / 2).floor() + 0.5
        sx = ((x1 - x0) / 6).clamp(min=0.6)
        sy = ((y1 - y0) / 6).clamp(min=0.6)
        g = torch.exp(-((grid[None, None, :] - cx[:, None, None]) ** 2 / (2 * sx[:, None, None] ** 2)
                        + (grid[None, :, None] - cy[:, None, None]) ** 2 / (2 * sy[:, None, None] ** 2)))
        others = any_ship[None] & ~m
        touching = (m & (F.max_pool2d(others[:, None].float(), 3, stride=1, padding=1)[:, 0] > 0)).any(0)
        ship[b, 0] = (any_ship & ~touching).float()
        g = torch.where(others, torch.zeros_like(g), g)
        best, owner = g.max(0)
        heat[b, 0] = best
        own = m.gather(0, owner[None])[0]
        weight[b, 0] = torch.where(own, best, torch.zeros_like(best))
        xs, ys = grid[None, :], grid[:, None]
        d = torch.stack([xs - x0[owner], ys - y0[owner], x1[owner] - xs, y1[owner] - ys])
        edges[b] = d.clamp(min=0).log1p()
    return heat, edges, weight, ship


def native_loss(outputs, targets, alpha: float = 2.0, beta: float = 4.0) -> tuple[torch.Tensor, dict]:
    """CenterNet's penalty-reduced focal loss on the heatmap, L1 on the box edges weighted by the heat target on the
    ship's own pixels, and BCE plus Dice on ship pixels. Returns the loss and its parts (floats)."""
    heat_logits, edge_pred, mask_logits = outputs
    heat_t, edge_t, weight, ship = targets
    p = heat_logits.float().sigmoid().clamp(1e-4, 1 - 1e-4)
    pos = heat_t.ge(0.999).float()
    n = pos.sum().clamp(min=1)
    focal = (-(torch.log(p) * (1 - p) ** alpha * pos).sum()
             - (torch.log(1 - p) * p**alpha * (1 - heat_t) ** beta * (1 - pos)).sum()) / n
    geo = (F.l1_loss(edge_pred.float(), edge_t, reduction="none") * weight).sum() / weight.sum().clamp(min=1e-6) / 4
    q = mask_logits.float().sigmoid()
    dice = 1 - (2 * (q * ship).sum() + 1) / (q.sum() + ship.sum() + 1)
    seg = F.binary_cross_entropy_with_logits(mask_logits.float(), ship) + dice
    loss = focal + geo + 0.5 * seg
    return loss, {k: float(v.detach()) for k, v in (("loss", loss), ("heat", focal), ("edges", geo), ("mask", seg))}
