"""One-shot personalisation (PerSAM-F): a ShipSam bundle + one or a few reference ships in a scene -> a "oneshot"
bundle that detects ships alike to them. SAM stays frozen; the reference tiles are encoded once; only the few
weights mixing the mask decoder's outputs are fitted (seconds on a CPU)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from samgeo_ship.errors import fail
from samgeo_ship.inference.detector import ShipDetector
from samgeo_ship.inference.predictor import TilePredictor
from samgeo_ship.models import weights
from samgeo_ship.models.bundle import BundleCard, read_card, save_bundle
from samgeo_ship.models.native import KIND as NATIVE
from samgeo_ship.models.shipsam import ShipSam
from samgeo_ship.models.zoo import model_path
from samgeo_ship.oneshot.proposer import OUTPUTS, REFINE_PASSES, personalised
from samgeo_ship.oneshot.persam import (LR, STEPS, MixFit, cell_fractions, choose_threshold, fit_mix, grow,
                                        ship_cells, target_feature)
from samgeo_ship.oneshot.reference import References, read_references
from samgeo_ship.outputs import check_outputs

ENCODE_BATCH = 4


@dataclass
class OneShotResult:
    path: Path
    card: BundleCard
    fit: MixFit
    similarity: dict  # {"ship", "background", "threshold"}: see persam.choose_threshold
    seconds: float


def check_base(path) -> BundleCard:
    """The card of ``path`` if it is a ShipSam bundle one can personalise; else one sentence why not."""
    card = read_card(path)
    if card.kind not in ("shipsam", NATIVE):  # a base's own proposer is replaced, whichever it is
        base = card.oneshot.get("base_bundle")
        hint = f"; personalise its base model {base} instead" if base else ""
        raise fail(path, f"is a {card.kind} bundle, not a ShipSam model to personalise{hint}")
    return card


def personalise(scene, labels, base, output, bands=None, max_ships: int | None = None, steps: int = STEPS,
                lr: float = LR, threshold: float | None = None, outputs: str = "all", device: str = "auto",
                threads: int | None = None, recipe: dict | None = None) -> OneShotResult:
    """Personalise the ShipSam bundle ``base`` to the ships of ``labels`` in ``scene`` and write ``output``.

    Args:
        bands: the scene's bands (default: the base model's).
        max_ships: use only the first ``max_ships`` labels.
        steps, lr: Adam steps and learning rate of the mixing-weight fit.
        threshold: the cosine similarity a ship needs at detection, instead of the one chosen from the reference
            tiles (persam.choose_threshold).
        outputs: the decoder outputs the fitted weights mix: "all" (single + 3 multimask) or "multimask" (PerSAM-F's
            own choice; see model.OUTPUTS).
        threads: torch CPU threads (default: every core this process may use).
        recipe: what the card records as the recipe (the CLI passes its arguments)."""
    started = time.perf_counter()
    base = model_path(base)
    output = check_outputs({output: {".safetensors"}}, inputs=[scene, labels, base])[0]
    base_card = check_base(base)
    before = torch.get_num_threads()
    torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
    try:
        model, refs, fit, similarity = _personalise(scene, labels, base, bands, max_ships, steps, lr, outputs, device)
    finally:
        torch.set_num_threads(before)
    if threshold is not None:
        similarity["threshold"] = float(threshold)
    seconds = time.perf_counter() - started
    out_card = _card(base_card, base, refs, model, fit, similarity, threshold is not None, steps, lr, seconds, recipe)
    save_bundle(model.eval(), out_card, output)
    return OneShotResult(output, out_card, fit, similarity, seconds)


def _personalise(scene, labels, base, bands, max_ships, steps, lr, outputs, device):
    """The reference ships' target features and the fitted mix: (the personalised ShipSam, References, MixFit,
    similarity)."""
    detector = ShipDetector(base, device=device, bands=bands)
    net, dev = detector.model, detector.device
    refs = read_references(detector, scene, labels, max_ships)
    embeddings = _encode(detector.predictor, refs)
    grid = tuple(embeddings[0].shape[-2:])
    cells = [torch.stack([ship_cells(cell_fractions(torch.from_numpy(m).to(dev), grid)) for m in t.masks])
             for t in refs.tiles]
    targets = torch.stack([target_feature(e, c) for e, tile_cells in zip(embeddings, cells) for c in tile_cells])
    model = personalised(net, targets, outputs)
    seed_logits, truth, sims = _reference_outputs(model, embeddings, refs, cells)
    fit = fit_mix(model.proposer.mix, seed_logits, truth, steps, lr)
    known = [grow(cell_fractions(torch.from_numpy(t.known).to(dev), grid) > 0) for t in refs.tiles]
    return model, refs, fit, choose_threshold(sims, cells, known)


def _encode(predictor: TilePredictor, refs: References) -> list[torch.Tensor]:
    """(C, h, w) float32 embedding of each reference tile, encoded once, in batches."""
    out = []
    for start in range(0, len(refs.tiles), ENCODE_BATCH):
        images = np.stack([t.image for t in refs.tiles[start:start + ENCODE_BATCH]])
        out.extend(predictor.embed(images).float())
    return out


@torch.no_grad()
def _reference_outputs(model: ShipSam, embeddings, refs: References, cells):
    """For every reference ship: the decoder outputs the mix weighs for the PerSAM seed (positive point at the
    ship's most similar cell, negative at the tile's least similar one), at the resolution the mix is fitted at; the
    truth there; and each tile's similarity map."""
    outputs, truth, sims = [], [], []
    proposer = model.proposer
    for emb, tile, tile_cells in zip(embeddings, refs.tiles, cells):
        sim = proposer.similarity(emb)
        best = torch.stack([_most_similar(sim, c) for c in tile_cells])
        low = proposer.seed_outputs(model, emb, proposer.seed_points(model, sim, best)).float()
        size = min(tile.masks.shape[-1], low.shape[-1])  # the tile's pixels, at most the decoder's own
        outputs.append(F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False))
        masks = torch.from_numpy(tile.masks).to(low.device)[:, None].float()
        truth.append(F.interpolate(masks, size=(size, size), mode="area")[:, 0] >= 0.5)
        sims.append(sim)
    return torch.cat(outputs), torch.cat(truth), sims


def _most_similar(sim: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """(2,) row, col of the most similar of the (h, w) bool ``cells``."""
    flat = int(sim.masked_fill(~cells, float("-inf")).argmax())
    return torch.tensor([flat // sim.shape[1], flat % sim.shape[1]], device=sim.device)


def _card(base_card: BundleCard, base_path, refs: References, model: ShipSam, fit: MixFit, similarity: dict,
          manual: bool, steps: int, lr: float, seconds: float, recipe) -> BundleCard:
    """The base card with what personalisation changed: kind, threshold, stored and trained parts (the proposer in
    place of the learned prompter), provenance."""
    proposer = model.proposer
    mix = [round(float(w), 4) for w in proposer.mix.weights.detach()]
    names = OUTPUTS[proposer.outputs]
    return BundleCard(
        model_type=base_card.model_type, bands=list(base_card.bands), pixel_size_m=base_card.pixel_size_m,
        tile_size=base_card.tile_size, overlap=base_card.overlap, normalisation=base_card.normalisation,
        thresholds={**base_card.thresholds, "score": similarity["threshold"]},
        base_model=base_card.base_model, base_sha256=base_card.base_sha256, trained=["oneshot.mix"],
        encoder_mode=base_card.encoder_mode, stored=[p for p in base_card.stored if p not in ("prompter", NATIVE)] + ["oneshot"],
        lora=base_card.lora,
        training={"recipe": recipe if recipe is not None else {"steps": steps, "lr": lr}, "steps": steps, "lr": lr,
                  "seconds": round(seconds, 2), "reference_tiles": len(refs.tiles),
                  "loss": {"init": fit.loss_init, "final": fit.loss}},
        validation={"reference_mask_iou": fit.iou, "reference_mask_iou_init": fit.iou_init,
                    "reference_mask_iou_single": fit.iou_single},
        kind="oneshot",
        oneshot={
            "method": "PerSAM-F", "reference_scene": refs.scene, "reference_ships": refs.ships,
            "reference_tiles": len(refs.tiles), "targets": len(proposer.targets),
            "target_tensor": "oneshot.targets", "outputs": proposer.outputs, "mix_outputs": names,
            "mix_tensor": "oneshot.mix.logits", "mix_weights": mix,
            "mix_weights_init": [round(1 / len(names), 4)] * len(names),
            "similarity_threshold": similarity["threshold"], "threshold_source": "manual" if manual else "reference",
            "similarity_ship": similarity["ship"], "similarity_background": similarity["background"],
            "refinement_passes": REFINE_PASSES + 1,
            "base_bundle": Path(base_path).name, "base_bundle_sha256": weights.sha256_file(base_path),
            "base_weights_sha256": base_card.weights_sha256,
        })

