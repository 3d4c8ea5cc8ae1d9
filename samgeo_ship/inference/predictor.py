"""The batched tile predictor: normalised tiles -> SAM image embeddings -> prompts -> one mask per ship, returned at
the tile's own resolution. Like segment_anything's SamPredictor, the encoder runs once per tile and the cheap decoder
once per prompt."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import nms

from samgeo_ship.device import autocaster
from samgeo_ship.inference.encoder import TimedEncoder
from samgeo_ship.models.native import box_masks
from samgeo_ship.models.shipsam import mask_boxes, model_input

MASK_CHUNK = 32  # prompts decoded at once: bounds the (N, T, T) logits of a crowded tile
# The refinement's first pass prompts with each proposal box grown about its centre by this factor plus
# REFINE_PAD model-input pixels a side (see TilePredictor._refine): the prompter's size head guesses short on real
# ships, and the decoder trims a loose box far better than it reaches past a tight one. Chosen on real validation
# scenes (benchmarks/README.md).
REFINE_GROW = 1.5
REFINE_PAD = 4.0


@dataclass
class TilePrompts:
    """User prompts for one tile, in tile pixels (x right, y down). Either ``boxes`` (N, 4) ``x0, y0, x1, y1``, or
    ``points`` (N, P, 2) ``x, y`` with ``labels`` (N, P) (1 ship, 0 background). ``ids``: (N,) index of each prompt in
    the user's list, carried to the output so every prompt can be traced to its ship."""

    ids: np.ndarray
    boxes: np.ndarray | None = None
    points: np.ndarray | None = None
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class TileDetection:
    """One ship in one tile: ``mask`` (T, T) bool in tile pixels, ``score`` in [0, 1], ``iou_pred`` (SAM's own
    estimate of the mask's IoU), ``prompt`` (user prompt index, -1 for a proposed ship)."""

    mask: np.ndarray
    score: float
    iou_pred: float
    prompt: int = -1


class TilePredictor:
    """Detect ships in batches of tiles with a ShipSam and its bundle card.

    Scores: for the learned prompter, ``score`` is the prompter's heatmap peak (its detection confidence, trained
    with a focal loss on ship centres), not multiplied by SAM's predicted IoU: SAM's IoU head is not trained to be
    calibrated on ships, and multiplying would let an uncalibrated number veto good detections. ``iou_pred`` is kept
    beside it. For user prompts there is no detection confidence, so ``score`` is the predicted IoU (clamped to
    [0, 1])."""

    def __init__(self, model, card, device: torch.device | str = "cpu", thresholds: dict | None = None,
                 precision: str = "fp32"):
        """``thresholds``: a run's own values of the card's thresholds (e.g. a lower score to calibrate).
        ``precision``: the encoder's arithmetic, as ``device.resolve_precision`` gives it (fp32, bf16 or int8)."""
        self.model = model
        self.card = card
        self.device = torch.device(device)
        cuda_autocast = self.device.type == "cuda" and precision != "fp32"
        self._autocast = autocaster(self.device) if cuda_autocast else contextlib.nullcontext
        self.encoder = TimedEncoder(model, precision, self.device)
        thresholds = {"score": 0.3, "mask_logit": 0.0, "nms_iou": 0.5, **(card.thresholds or {}), **(thresholds or {})}
        self.score_threshold = float(thresholds["score"])
        self.mask_logit = float(thresholds["mask_logit"])
        self.nms_iou = float(thresholds["nms_iou"])

    @property
    def img_size(self) -> int:
        return self.model.img_size

    @torch.inference_mode()
    def predict(self, images: np.ndarray, prompts: list[TilePrompts | None] | None = None
                ) -> list[list[TileDetection]]:
        """Detect ships in a batch of tiles.

        Args:
            images: (B, C, T, T) float32 in [0, 1], C = 1 (repeated to grey RGB) or 3.
            prompts: None to use the model's proposer (models.proposer: its bundle's kind); else one TilePrompts
                (or None: no ship asked for) per tile.

        Returns per tile a list of TileDetection with (T, T) masks."""
        B, C, T, _ = images.shape
        inputs = self.inputs(images)
        if prompts is not None and self.answers_boxes(prompts):
            return self._own_box_masks(inputs, T, prompts)
        # A proposer that segments the ships itself needs no image embeddings (models.native's own masks).
        encode = prompts is not None or getattr(self.model.proposer, "needs_embeddings", True)
        embeddings = self.encoder(inputs) if encode else None
        proposals = None
        if prompts is None:
            laid_out, images_laid_out = self._conv_layout(embeddings, inputs)
            with self._autocast():
                proposals = self.model.proposer.proposals(self.model, laid_out, self.score_threshold,
                                                          images=images_laid_out)
        out = []
        for b in range(B):
            if prompts is None:
                boxes, scores = proposals[b].boxes.float(), proposals[b].scores.float()
                if proposals[b].pixel_masks is not None:  # the proposer's own ships, strongest first
                    out.append(own_masks(proposals[b].pixel_masks, scores, T))
                    continue
                keep = nms(boxes, scores, self.nms_iou) if len(boxes) else torch.zeros(0, dtype=torch.long)
                boxes = boxes[keep]
                extra = proposals[b].prompts(keep)
                if not extra and len(boxes) and getattr(self.model, "box_prior", 0):
                    boxes = self._refine(embeddings[b], boxes)
                out.append(self._decode(embeddings[b], T, boxes=boxes, scores=scores[keep], **extra))
            else:
                out.append(self._decode_user(embeddings[b], T, prompts[b]))
        return out

    def answers_boxes(self, prompts: list[TilePrompts | None]) -> bool:
        """Whether the model's proposer answers these prompts itself: box prompts, to a proposer that draws its own
        ships (models.native.NativeProposer.draws_ships). Its ship-pixel map reads the model's own bands, which its SAM
        may never have seen (a near-infrared proposer on an RGB SAM), and is a ship's outline at the scene's pixels;
        point prompts still go to SAM."""
        own = getattr(self.model.proposer, "draws_ships", False)
        return own and all(p is None or p.boxes is not None for p in prompts)

    def _own_box_masks(self, inputs: torch.Tensor, T: int, prompts: list[TilePrompts | None]
                       ) -> list[list[TileDetection]]:
        """Box prompts answered by the proposer's ship-pixel map (models.native.box_masks), no SAM run; a
        detection's score is its mask's mean probability, its ``iou_pred`` NaN."""
        proposer = self.model.proposer
        with self._autocast():
            prob = proposer.ship_probability(inputs, T)
        out = []
        for b, p in enumerate(prompts):
            if p is None or len(p) == 0:
                out.append([])
                continue
            boxes = torch.as_tensor(p.boxes, dtype=torch.float32, device=prob.device)
            masks, scores = box_masks(prob[b], proposer.mask_threshold, boxes)
            out.append([TileDetection(m, float(s), float("nan"), int(i))
                        for m, s, i in zip(masks.cpu().numpy(), scores.tolist(), p.ids)])
        return out

    def _conv_layout(self, embeddings: torch.Tensor, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The proposer's inputs in the memory layout its convolutions run fastest in: channels-last on a CPU, where
        oneDNN convolves it nearly twice as fast (the learned prompter's pixel branch convolves the full-size input);
        the values are the same."""
        if self.device.type != "cpu":
            return embeddings, inputs
        return (None if embeddings is None else embeddings.contiguous(memory_format=torch.channels_last),
                inputs.contiguous(memory_format=torch.channels_last))

    def inputs(self, images: np.ndarray) -> torch.Tensor:
        """(B, C, T, T) float32 tiles in [0, 1], C = 1 or 3 -> (B, 3, S, S) model inputs in [0, 255] on the device.
        Every tile covers the training ground footprint; the model sees it at its own input size."""
        C = images.shape[1]
        if C not in (1, 3):
            raise ValueError(f"the model takes 1 or 3 bands, got {C}")
        x = torch.from_numpy(np.ascontiguousarray(images, np.float32)).to(self.device) * 255.0
        return model_input(x, self.img_size)

    def embed(self, images: np.ndarray) -> torch.Tensor:
        """(B, C, T, T) float32 tiles in [0, 1] -> (B, C', h, w) image embeddings, as ``predict`` sees them
        (samgeo_ship.oneshot encodes its reference tiles through here too)."""
        return self.encoder(self.inputs(images))

    def _refine(self, embedding, boxes: torch.Tensor) -> torch.Tensor:
        """The boxes of the masks the proposed ``boxes`` give (input pixels), for a second decoder pass.

        Only for models with a box prior (ShipSam.box_prior), whose masks lean on the box: a proposal box is the
        prompter's guess, and on real Sentinel-2 ships its size head guesses short (two proposals, one on each half
        of a ship, each with half a mask). So the first pass prompts with the box grown (REFINE_GROW, REFINE_PAD):
        the decoder trims a loose box to the ship far better than the prior lets it reach past a tight one. Prompting
        again with the box of that mask gives the whole ship, and two proposals on one long ship converge to the same
        mask (which the merge then removes). A box whose mask is empty stays as it was."""
        centre, half = (boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]) / 2 * REFINE_GROW + REFINE_PAD
        grown = torch.cat([centre - half, centre + half], dim=1).clamp(0, self.img_size)
        with self._autocast():
            logits, _ = self.model.decode(embedding, boxes=grown)
        refined, found = mask_boxes(logits.float() > self.mask_logit)
        return torch.where(found[:, None], refined.to(boxes.dtype), boxes)

    def _decode_user(self, embedding, T: int, prompts: TilePrompts | None) -> list[TileDetection]:
        if prompts is None or len(prompts) == 0:
            return []
        scale = self.img_size / T  # tile pixels -> model pixels
        if prompts.boxes is not None:
            boxes = torch.as_tensor(prompts.boxes, dtype=torch.float32, device=self.device) * scale
            return self._decode(embedding, T, boxes=boxes, ids=prompts.ids)
        coords = torch.as_tensor(prompts.points, dtype=torch.float32, device=self.device) * scale
        labels = torch.as_tensor(prompts.labels, dtype=torch.int64, device=self.device)
        return self._decode(embedding, T, points=(coords, labels), ids=prompts.ids)

    def _decode(self, embedding, T: int, boxes=None, points=None, scores=None, ids=None,
                masks=None) -> list[TileDetection]:
        """Decode in chunks of MASK_CHUNK prompts; logits are resized to the tile (T, T) before thresholding, so the
        mask edge is placed at tile resolution, not at the model's. ``masks``: optional low-resolution mask prompts
        (see Proposals)."""
        n = len(boxes) if boxes is not None else (len(points[0]) if points is not None else 0)
        detections = []
        for start in range(0, n, MASK_CHUNK):
            sl = slice(start, start + MASK_CHUNK)
            with self._autocast():
                logits, iou = self.model.decode(embedding, boxes=boxes[sl] if boxes is not None else None,
                                                points=(points[0][sl], points[1][sl]) if points is not None else None,
                                                masks=masks[sl] if masks is not None else None)
            logits = logits.float()[:, None]
            if logits.shape[-1] != T:
                logits = F.interpolate(logits, size=(T, T), mode="bilinear", align_corners=False)
            found = (logits[:, 0] > self.mask_logit).cpu().numpy()
            iou = iou.float().clamp(0, 1).cpu().numpy()
            for k in range(len(found)):
                i = start + k
                score = float(scores[i]) if scores is not None else float(iou[k])
                detections.append(TileDetection(found[k], score, float(iou[k]),
                                                int(ids[i]) if ids is not None else -1))
        return detections


def own_masks(masks: torch.Tensor, scores: torch.Tensor, T: int) -> list[TileDetection]:
    """Detections from a proposer's own (N, t, t) bool masks and (N,) scores, at the tile's (T, T); SAM's predicted
    IoU is not there, so ``iou_pred`` is NaN."""
    if masks.shape[-1] != T:
        masks = F.interpolate(masks[:, None].float(), size=(T, T), mode="nearest")[:, 0] > 0.5
    return [TileDetection(m, float(s), float("nan")) for m, s in zip(masks.cpu().numpy(), scores.tolist())]
