"""OneShotProposer: ships proposed to a frozen ShipSam by their likeness to reference ships (PerSAM-F, Zhang et al.
2023, "Personalize Segment Anything Model with One Shot").

Per tile: the cosine similarity between the reference ships' target features and the image embedding; a positive
point at each local peak above the threshold plus a negative point at the least similar cell; the decoder's outputs
mixed by the learned weights (see OUTPUTS); one refinement pass with the mask's own box and the mixed logits as mask
prompt; found ships suppressed on the similarity map. The proposals carry points, box and mask prompt, so the tile
predictor's ordinary decode is the second refinement pass (PerSAM's cascaded post-refinement).

The proposer of bundles of kind "oneshot" (registered with samgeo_ship.models.bundle here); imports nothing above
models."""

from __future__ import annotations

import torch
from torch import nn

from samgeo_ship.models.bundle import register_kind
from samgeo_ship.models.proposer import Proposals
from samgeo_ship.models.registry import SamConfig
from samgeo_ship.models.shipsam import ShipSam, filled_boxes, mask_boxes
from samgeo_ship.oneshot.propose import cell_centres, find_peaks, least_similar, mask_cells, select, similarity_map

REFINE_PASSES = 1  # in the proposer; the predictor's decode (box + points + mask prompt) is one more
DECODE_CHUNK = 32  # seeds decoded at once: bounds the (N, n, 4h, 4w) logits of a crowded tile


class MaskMix(nn.Module):
    """PerSAM-F's learned mix of the decoder's outputs for the seed points, as a convex combination of ``n``
    outputs: weights ``softmax([0, w_1 .. w_n-1])`` with n - 1 parameters ``w`` (PerSAM-F mixes SAM's 3 multimask
    outputs with 2 weights, written ``1 - w1 - w2, w1, w2``; the softmax keeps every weight positive). Starts at
    1/n each."""

    def __init__(self, n: int = 3):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(n - 1))

    @property
    def weights(self) -> torch.Tensor:
        """(n,) weights of the outputs, summing to 1."""
        return torch.softmax(torch.cat([self.logits.new_zeros(1), self.logits]), dim=0)

    def forward(self, outputs: torch.Tensor) -> torch.Tensor:
        """(N, n, H, W) logits -> (N, 1, H, W) weighted sum."""
        return (outputs * self.weights.to(outputs.dtype)[:, None, None]).sum(1, keepdim=True)


# Which decoder outputs are mixed (ShipSam.decode_low's ``outputs``) and their names in the card. PerSAM-F mixes the
# three multimask outputs; shipseg's trainer trains only the single-mask output (multimask_output=False), so in a
# bundle trained from random initialisation (the default model) the multimask outputs are untrained and "all"
# lets the fit weigh the single output in.
OUTPUTS = {"all": ["single", "multimask_1", "multimask_2", "multimask_3"],
           "multimask": ["multimask_1", "multimask_2", "multimask_3"]}


class OneShotProposer(nn.Module):
    """Proposes the ships alike to the reference ships (models.proposer.Proposer). ``targets`` (K, C): one target
    feature per reference ship (stored, never trained); ``mix``: the trained weights of the decoder ``outputs``
    ("all" or "multimask")."""

    part = "oneshot"
    # A oneshot bundle may also hold its base model's learned prompter, which proposes nothing here.
    unused_parts = ("prompter",)

    def __init__(self, n_targets: int, channels: int, outputs: str = "all"):
        super().__init__()
        if outputs not in OUTPUTS:
            raise ValueError(f"outputs must be one of {', '.join(OUTPUTS)}, not {outputs!r}")
        self.outputs = outputs
        self.register_buffer("targets", torch.zeros(n_targets, channels))
        self.mix = MaskMix(len(OUTPUTS[outputs]))

    @classmethod
    def from_card(cls, config: SamConfig, card) -> "OneShotProposer":
        return cls(int(card.oneshot.get("targets", 1)), config.prompt_embed_dim, card.oneshot.get("outputs", "all"))

    def similarity(self, embedding: torch.Tensor) -> torch.Tensor:
        """(C, h, w) image embedding -> (h, w) cosine similarity to the nearest reference ship."""
        return similarity_map(embedding, self.targets)

    @staticmethod
    def seed_points(model: ShipSam, sim: torch.Tensor, cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """PerSAM's point prompts: per (row, col) cell in ``cells`` (N, 2), a positive point there and a negative one
        at the least similar cell of ``sim``. Returns coords (N, 2, 2) in ``model``'s input pixels and labels
        (N, 2)."""
        stride = model.img_size / sim.shape[-1]
        pairs = torch.stack([cells, least_similar(sim).expand_as(cells)], dim=1)
        labels = torch.tensor([1, 0], device=cells.device).expand(len(cells), 2)
        return cell_centres(pairs, stride), labels

    def seed_outputs(self, model: ShipSam, embedding: torch.Tensor,
                     points: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The decoder outputs the mix weighs, for point prompts: (N, n, 4h, 4w) low-resolution logits."""
        coords, labels = points
        chunks = [model.decode_low(embedding, points=(coords[s:s + DECODE_CHUNK], labels[s:s + DECODE_CHUNK]),
                                   outputs=self.outputs)[0] for s in range(0, len(coords), DECODE_CHUNK)]
        return torch.cat(chunks)

    @staticmethod
    def refine(model: ShipSam, embedding: torch.Tensor, points: tuple[torch.Tensor, torch.Tensor],
               low: torch.Tensor) -> torch.Tensor:
        """One cascaded refinement pass: each mask's own box and its (N, 1, 4h, 4w) logits as mask prompt, with the
        points. Returns the new (N, 1, 4h, 4w) logits (with ``model``'s box prior, as its ``decode`` adds it)."""
        boxes = low_res_boxes(low, model.img_size, points[0][:, 0])
        out = torch.cat([model.decode_low(embedding, boxes[s:s + DECODE_CHUNK],
                                          (points[0][s:s + DECODE_CHUNK], points[1][s:s + DECODE_CHUNK]),
                                          low[s:s + DECODE_CHUNK])[0] for s in range(0, len(low), DECODE_CHUNK)])
        if model.box_prior:
            size = out.shape[-1]
            prior = filled_boxes(boxes * (size / model.img_size), size).to(out.dtype) * 2 - 1
            out = out + model.box_prior * prior[:, None]
        return out

    def proposals(self, model: ShipSam, embeddings: torch.Tensor, threshold: float, max_ships: int = 200,
                  images: torch.Tensor | None = None) -> list[Proposals]:
        """Ships alike to the reference ships in each image; ``threshold``: the cosine similarity a peak needs (the
        card's thresholds.score). Scores are the peak similarities (clamped to [0, 1]). ``images`` is not used: the
        likeness is measured on the embeddings alone."""
        return [self._propose_one(model, embedding, threshold, max_ships) for embedding in embeddings]

    def _propose_one(self, model: ShipSam, embedding: torch.Tensor, threshold: float, max_ships: int) -> Proposals:
        sim = self.similarity(embedding)
        peaks, values = find_peaks(sim, threshold, max_ships)
        if len(peaks) == 0:
            empty = embedding.new_zeros((0, 4))
            return Proposals(empty, embedding.new_zeros(0))
        points = self.seed_points(model, sim, peaks)
        low = self.mix(self.seed_outputs(model, embedding, points))
        for _ in range(REFINE_PASSES):
            low = self.refine(model, embedding, points, low)
        boxes = low_res_boxes(low, model.img_size, points[0][:, 0])
        keep = torch.as_tensor(select(sim, peaks, mask_cells(low, tuple(sim.shape)), threshold), dtype=torch.long,
                               device=peaks.device)
        return Proposals(boxes[keep], values[keep].clamp(0, 1), points[0][keep], points[1][keep], low[keep])


register_kind("oneshot", OneShotProposer)


def personalised(base: ShipSam, targets: torch.Tensor, outputs: str = "all") -> ShipSam:
    """A ShipSam sharing ``base``'s SAM and box prior whose proposer finds ships alike to the (K, C) ``targets``,
    with an untrained mix."""
    proposer = OneShotProposer(len(targets), base.config.prompt_embed_dim, outputs)
    proposer.targets.copy_(targets)
    return ShipSam(base.sam, base.config, proposer, base.box_prior).to(base.device)


def low_res_boxes(low: torch.Tensor, img_size: int, fallback: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) low-resolution logits -> (N, 4) ``x0, y0, x1, y1`` boxes of their masks (logit > 0) in input
    pixels; an empty mask gets a box of one embedding cell around its ``fallback`` (N, 2) point."""
    masks = low[:, 0] > 0
    scale = img_size / masks.shape[-1]
    boxes, found = mask_boxes(masks)
    boxes = boxes * scale
    half = 2 * scale  # half an embedding cell: the low-resolution mask has 4 x 4 cells per embedding cell
    around = torch.cat([fallback - half, fallback + half], dim=1).float()
    return torch.where(found[:, None], boxes, around)
