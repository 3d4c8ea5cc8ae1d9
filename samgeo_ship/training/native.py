"""Training the native-pixel proposer (models.native) on prepared datasets, apart from SAM: it needs no image
embeddings, so an epoch over thousands of tiles costs seconds on a CPU. The bundle it writes holds the proposer
and the SAM of ``init`` (a bundle whose decoder turns its boxes into masks), or an untrained SAM without one."""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from samgeo_ship.dataset import read_chip, read_instances
from samgeo_ship.device import resolve_device
from samgeo_ship.errors import ShipsegError, fail
from samgeo_ship.models.bundle import BundleCard, load_bundle, save_bundle
from samgeo_ship.models.native import (DEFAULT_WIDTH, KIND, NativeProposer, decode, native_loss, native_targets,
                                      regions)
from samgeo_ship.models.registry import CONFIGS, build_sam
from samgeo_ship.models.shipsam import ShipSam, model_input
from samgeo_ship.training.augment import VARIANTS, apply_variant
from samgeo_ship.training.data import open_datasets, split_tiles
from samgeo_ship.training.evaluate import NMS_IOU
from samgeo_ship.training.trainer import DEFAULT_BOX_PRIOR, TrainResult, _card_normalisation, _median_pixel_size

# Scores by the highest ship-pixel probability crowd near 1 on large tiles: the sweep goes on past 0.9.
THRESHOLDS = tuple(round(float(t), 2) for t in np.arange(0.1, 0.91, 0.05)) + (0.95, 0.98)
MATCH_IOU = 0.5
MASK_THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)  # ship-pixel probabilities tried for the proposer's own regions
MASKS = ("sam", "native")
DEFAULT_MASK_THRESHOLD = 0.5  # without validation tiles


@dataclass
class ProposerConfig:
    """A native proposer's training run (the card's ``proposer.recipe`` records it).

    negatives: share of the shipless tiles drawn afresh each epoch (all tiles with ships are in every epoch).
    init: the bundle whose SAM decodes the proposals into masks (its ``box_prior`` too); None: an untrained
        ``model_type`` SAM (tests, or a proposer to be joined to a SAM later).
    masks: "sam" (SAM's decoder masks each proposal box) or "native" (the proposer's own ship regions,
        models.native.regions, their threshold chosen on the validation tiles; detection then runs no SAM at all).
    crop: train on a random ``crop`` x ``crop`` window of each tile (the network is fully convolutional, so it detects
        on whole tiles all the same): cheaper steps on large tiles.
    coarsen: up to this factor, each training tile is blurred as a coarser scene resampled to the model's pixels is
        (shrunk by a random factor from 1 to ``coarsen``, then enlarged back): the zoo reads scenes up to 4x coarser
        than the model's pixels with it. 1: off.
    texture: up to this amplitude (model inputs span -1..1), waves are laid over each training tile: ripples of a
        random length and direction and speckle, brighter and darker alike in every band, as open water shows on real
        aerial and satellite images and synthetic scenes do not. 0: off.
    region_score: with masks "native", how a region is scored, "mean" or "max" probability (models.native.regions;
        a card without ``proposer.region_score`` scores by "max")."""

    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    width: int = DEFAULT_WIDTH
    negatives: float = 0.3
    val_fraction: float = 0.2
    patience: int = 8
    seed: int = 0
    device: str = "auto"
    augment: bool = True
    threads: int | None = None
    max_minutes: float | None = None
    init: str | None = None
    model_type: str = "sam_tiny"
    masks: str = "sam"
    crop: int | None = None
    coarsen: float = 1.0
    texture: float = 0.0
    region_score: str = "mean"


@dataclass
class _Tiles:
    """Tiles in memory at native pixels: inputs (N, 3, T, T) float16 in [-1, 1], instances per tile."""

    inputs: torch.Tensor
    masks: list[np.ndarray]
    has_ships: np.ndarray


def _load(refs, proposer: NativeProposer, img_size: int, chunk: int = 128) -> _Tiles:
    """Each tile as detection feeds it to the proposer: the chip upsampled to SAM's input size (model_input),
    then pooled back to native pixels (NativeProposer.native); in chunks, which is many times faster than one by
    one."""
    chips = [read_chip(ref) for ref in refs]
    inputs = []
    for start in range(0, len(chips), chunk):
        batch = torch.from_numpy(np.stack(chips[start:start + chunk])).float()
        inputs.append(proposer.native(model_input(batch, img_size)).half())
    masks = [read_instances(ref) if len(ref.dataset.boxes[ref.tile]) else np.zeros((0, *c.shape[-2:]), bool)
             for ref, c in zip(refs, chips)]
    return _Tiles(torch.cat(inputs), masks, np.array([len(m) > 0 for m in masks]))


def _batch(tiles: _Tiles, idx, rng: np.random.Generator, config: ProposerConfig):
    xs, ms = [], []
    for i in idx:
        x, m = tiles.inputs[i].float().numpy(), tiles.masks[i]
        if config.crop and config.crop < x.shape[-1]:
            r, c = rng.integers(0, x.shape[-1] - config.crop + 1, 2)
            x, m = x[:, r:r + config.crop, c:c + config.crop], m[:, r:r + config.crop, c:c + config.crop]
            m = m[m.any((1, 2))]
        if config.augment:
            v = int(rng.integers(VARIANTS))
            x, m = apply_variant(x, v), apply_variant(m, v)
            # Haze, sun and the per-scene stretch move each band's level and spread between scenes.
            x = x * rng.uniform(0.75, 1.25, (len(x), 1, 1)) + rng.uniform(-0.15, 0.15, (len(x), 1, 1))
        x = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        if config.augment and config.texture > 0:
            x = x + float(rng.uniform(0, config.texture)) * _waves(x.shape[-1], rng)
        if config.augment and config.coarsen > 1:
            x = _coarsen(x, float(rng.uniform(1.0, config.coarsen)))
        xs.append(x)
        ms.append(torch.from_numpy(np.ascontiguousarray(m)))
    return torch.stack(xs), native_targets(ms, xs[0].shape[-1])


def _waves(size: int, rng: np.random.Generator) -> torch.Tensor:
    """(1, size, size) wave texture of unit standard deviation: ripples (a crest every 3-16 px, in a random direction,
    their phase wandering) over speckle blurred to 1-3 px, in a random mix."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle, length = rng.uniform(0, np.pi), rng.uniform(3, 16)
    wander = F.avg_pool2d(torch.from_numpy(rng.standard_normal((1, size, size)).astype(np.float32)), 9, 1, 4).numpy()
    ripples = np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / length + 6 * wander[0])
    k = int(rng.choice([1, 3, 5]))
    speckle = F.avg_pool2d(torch.from_numpy(rng.standard_normal((1, size, size)).astype(np.float32)), k, 1, k // 2)
    mix = rng.uniform(0, 1)
    waves = mix * torch.from_numpy(ripples)[None] / ripples.std().clip(1e-6) + (1 - mix) * speckle / speckle.std()
    return (waves / waves.std().clamp(min=1e-6)).float()


def _coarsen(x: torch.Tensor, factor: float) -> torch.Tensor:
    """(C, T, T) -> the same tile as a scene ``factor`` times coarser looks after resampling to the model's pixels:
    area-averaged down to T / factor pixels, then bilinear back up to T."""
    size = x.shape[-1]
    small = max(1, round(size / factor))
    if small >= size:
        return x
    down = F.interpolate(x[None], size=(small, small), mode="area")
    return F.interpolate(down, size=(size, size), mode="bilinear", align_corners=False)[0]


def box_f1(found, truths, thresholds=THRESHOLDS) -> dict:
    """Box F1 at IoU MATCH_IOU at each score threshold. ``found``: per tile (boxes (N, 4), scores (N,));
    ``truths``: per tile (M, 4) truth boxes, in the same pixels. Greedy one-to-one, highest score first: the
    detections above a threshold are a prefix of the score order, and greedy matching of a prefix is the prefix of
    the greedy matching, so one matching per tile serves every threshold."""
    from torchvision.ops import box_iou

    scores, matched = [], []
    for (boxes, s), truth in zip(found, truths):
        order = s.argsort(descending=True)
        s, hit = s[order], torch.zeros(len(order), dtype=torch.bool)
        if len(order) and len(truth):
            iou = box_iou(boxes[order], torch.tensor(np.asarray(truth), dtype=torch.float32))
            used = torch.zeros(iou.shape[1], dtype=torch.bool)
            for i, row in enumerate(iou):
                row = row.masked_fill(used, 0)
                j = int(row.argmax())
                if row[j] >= MATCH_IOU:
                    used[j] = hit[i] = True
        scores.append(s.numpy())
        matched.append(hit.numpy())
    scores = np.concatenate(scores) if scores else np.zeros(0)
    matched = np.concatenate(matched) if matched else np.zeros(0, bool)
    n_truth = sum(len(t) for t in truths)
    result = {}
    for t in thresholds:
        above = scores >= t
        tp, n_pred = int((matched & above).sum()), int(above.sum())
        p, r = tp / max(n_pred, 1), tp / max(n_truth, 1)
        result[float(t)] = {"precision": p, "recall": r, "f1": 2 * p * r / max(p + r, 1e-9), "tp": tp}
    return result


class ProposerTrainer:
    """One run: datasets and a ProposerConfig in, a "native" bundle out (``run``). Arguments as for
    ``train_proposer``."""

    def __init__(self, datasets, output, config: ProposerConfig | None = None, val_datasets=(),
                 recipe: dict | None = None, on_epoch: Callable | None = None):
        self.config = config = config or ProposerConfig()
        self.output = Path(output)
        if not self.output.parent.is_dir():
            raise fail(self.output, "cannot be written: its folder does not exist")
        self.train_sets = open_datasets(datasets)
        self.val_sets = open_datasets(list(val_datasets)) if val_datasets else []
        open_datasets([d.path for d in self.train_sets + self.val_sets])
        self.train_refs, self.val_refs = split_tiles(self.train_sets, self.val_sets, config.val_fraction, config.seed)
        if not self.train_refs:
            raise ShipsegError("no training tiles are left after the validation split; lower --val-fraction")
        if config.masks not in MASKS:
            raise ShipsegError(f"unknown mask source {config.masks!r}; choose one of {', '.join(MASKS)}")
        torch.set_num_threads(config.threads or len(os.sched_getaffinity(0)))
        torch.manual_seed(config.seed)
        self.device = resolve_device(config.device)
        self.sam_model, self.init_card = self._sam()
        tile = int(self.train_sets[0].card["tile_size"])
        self.proposer = NativeProposer(tile, config.width).to(self.device)
        self.recipe, self.on_epoch = recipe, on_epoch
        self.train_tiles = _load(self.train_refs, self.proposer, self.sam_model.img_size)
        self.val_tiles = _load(self.val_refs, self.proposer, self.sam_model.img_size) if self.val_refs else None
        self.history: list[dict] = []

    def _sam(self) -> tuple[ShipSam, BundleCard | None]:
        if self.config.init:
            from samgeo_ship.models.zoo import model_path

            model, card = load_bundle(model_path(self.config.init))
            return model, card
        if self.config.model_type not in CONFIGS:
            raise ShipsegError(f"unknown model type {self.config.model_type!r}; choose one of {', '.join(CONFIGS)}")
        config = CONFIGS[self.config.model_type]
        return ShipSam(build_sam(config), config, box_prior=DEFAULT_BOX_PRIOR), None

    def run(self) -> TrainResult:
        config, rng = self.config, np.random.default_rng(self.config.seed)
        net = self.proposer
        opt = torch.optim.AdamW(net.parameters(), config.lr, weight_decay=config.weight_decay)
        positives = np.flatnonzero(self.train_tiles.has_ships)
        empty = np.flatnonzero(~self.train_tiles.has_ships)
        n_neg = int(round(config.negatives * len(empty)))
        per_epoch = len(positives) + n_neg
        steps = max(1, -(-per_epoch // config.batch_size)) * config.epochs
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=steps, pct_start=0.1)
        best, best_score, best_epoch, stale, step = None, -1.0, 0, 0, 0
        started = time.perf_counter()
        for epoch in range(1, config.epochs + 1):
            t0 = time.perf_counter()
            order = rng.permutation(np.concatenate([positives, rng.choice(empty, n_neg, replace=False)]))
            net.train()
            losses = []
            for start in range(0, len(order), config.batch_size):
                x, targets = _batch(self.train_tiles, order[start:start + config.batch_size], rng, config)
                loss, parts = native_loss(net(x.to(self.device)), [t.to(self.device) for t in targets])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if step < steps - 1:
                    sched.step()
                step += 1
                losses.append(parts["loss"])
            record = {"epoch": epoch, "loss": float(np.mean(losses)), "seconds": round(time.perf_counter() - t0, 2)}
            if self.val_tiles is not None:
                record.update(self._validate())
            score = record.get("f1", -record["loss"])
            if score > best_score:
                best, best_score, best_epoch, stale = copy.deepcopy(net.state_dict()), score, epoch, 0
            else:
                stale += 1
            self.history.append(record)
            if self.on_epoch:
                self.on_epoch(record)
            over_time = config.max_minutes and time.perf_counter() - started > 60 * config.max_minutes
            if over_time or (self.val_tiles is not None and stale >= config.patience):
                break
        net.load_state_dict(best)
        card = self._card(best_epoch)
        model = self.sam_model
        model.add_module(KIND, net.eval())
        model.proposer_part = KIND
        if hasattr(model, "prompter"):
            del model.prompter
        save_bundle(model.cpu().eval(), card, self.output)
        return TrainResult(self.output, card, self.history)

    @torch.no_grad()
    def _validate(self) -> dict:
        """Box F1 at IoU 0.5 on the validation tiles at the best score threshold (and, for its own regions, the best
        ship-pixel threshold)."""
        self.proposer.eval()
        outputs, tiles = [], self.val_tiles
        for start in range(0, len(tiles.inputs), 64):
            outputs.append(self.proposer(tiles.inputs[start:start + 64].float().to(self.device)))
        truths = [ref.dataset.boxes[ref.tile] for ref in self.val_refs]
        found = lambda propose: [(p.boxes.cpu(), p.scores.cpu()) for out in outputs for p in propose(*out)]
        if self.config.masks == "native":
            score = self.config.region_score
            sweeps = {m: box_f1(found(lambda heat, edges, mask: regions(mask, m, 1.0, min(THRESHOLDS), score=score)),
                                truths)
                      for m in MASK_THRESHOLDS}
        else:
            sweeps = {None: box_f1(found(lambda heat, edges, mask: decode(heat, edges, 1.0, min(THRESHOLDS))),
                                   truths)}
        m, t = max(((m, t) for m, sweep in sweeps.items() for t in sweep),
                   key=lambda mt: (sweeps[mt[0]][mt[1]]["f1"], mt[1], mt[0] or 0))
        best = sweeps[m][t]
        return {"f1": best["f1"], "precision": best["precision"], "recall": best["recall"], "score_threshold": t,
                "ships": sum(len(b) for b in truths)} | ({"mask_threshold": m} if m is not None else {})

    def _card(self, best_epoch: int) -> BundleCard:
        first, init = self.train_sets[0].card, self.init_card
        best = next((h for h in self.history if h["epoch"] == best_epoch), {})
        own = self.config.masks == "native"
        sam = {"model_type": self.config.model_type, "base_model": "random-init", "base_sha256": None,
               "encoder_mode": "full", "lora": {}, "stored": ["sam"], "trained": []}
        if init is not None:  # its SAM as it is, on the base it was built on (a frozen encoder is not copied)
            sam = {"model_type": init.model_type, "base_model": init.base_model, "base_sha256": init.base_sha256,
                   "encoder_mode": init.encoder_mode, "lora": init.lora,
                   "stored": [p for p in init.stored if p != "prompter"], "trained": []}
        recipe = self.recipe if self.recipe is not None else dataclasses.asdict(self.config)
        return BundleCard(
            model_type=sam["model_type"], bands=list(first["bands"]), pixel_size_m=_median_pixel_size(self.train_sets),
            tile_size=first["tile_size"], overlap=first.get("overlap", 0),
            normalisation=_card_normalisation(first),
            thresholds={"score": best.get("score_threshold", 0.3), "mask_logit": 0.0, "nms_iou": NMS_IOU},
            base_model=sam["base_model"], base_sha256=sam["base_sha256"], trained=[KIND],
            encoder_mode=sam["encoder_mode"], stored=sam["stored"] + [KIND], lora=sam["lora"], kind=KIND,
            validation={k: best[k] for k in ("f1", "precision", "recall", "ships") if k in best}
            | ({"best_epoch": best_epoch, "what": f"{'ship region' if own else 'proposal'} boxes at IoU 0.5, per tile"}
               if best else {}),
            proposer={"width": self.config.width, "sam_from": Path(self.config.init).name if self.config.init else "untrained",
                      "sam_bands": list(init.bands) if init is not None else None}
            | ({"mask_threshold": best.get("mask_threshold", DEFAULT_MASK_THRESHOLD),
                "region_score": self.config.region_score} if own else {}),
            training={
                "datasets": [{"path": str(d.path), "scene": d.card.get("scene"), "tiles": len(d.tiles),
                              "ships": d.ships, "role": role}
                             for role, sets in (("train", self.train_sets), ("val", self.val_sets)) for d in sets],
                "tiles": {"train": len(self.train_refs), "val": len(self.val_refs)},
                "epochs": len(self.history), "best_epoch": best_epoch, "recipe": recipe, "history": self.history,
            })


def train_proposer(datasets, output, config: ProposerConfig | None = None, val_datasets=(),
                   recipe: dict | None = None, on_epoch: Callable | None = None) -> TrainResult:
    """Train a native proposer on prepared ``datasets`` and write a "native" bundle ``output`` (.safetensors) with
    the SAM of ``config.init``. ``val_datasets`` (else a seeded ``val_fraction`` of the tiles) pick the best epoch
    (box F1 at IoU 0.5) and the score threshold; ``on_epoch(record)`` after each epoch."""
    return ProposerTrainer(datasets, output, config, val_datasets, recipe, on_epoch).run()
