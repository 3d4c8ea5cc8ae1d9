"""The training loop: prepared datasets + a SAM base -> a fine-tuned ShipSam bundle with a full card.

AdamW with linear warmup then cosine decay; validation each epoch; early stopping on the validation score
(``selection_score``: box-prompted mask IoU plus the prompter's centre-detection F1), keeping the best weights;
a resumable checkpoint after each epoch; deterministic for a given seed (unless a time budget is set)."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from samgeo_ship.device import autocaster as _autocast
from samgeo_ship.device import resolve_device
from samgeo_ship.errors import ShipsegError, fail
from samgeo_ship.models.bundle import BundleCard, is_stored, save_bundle
from samgeo_ship.models.shipsam import PROMPTER_PIXELS
from samgeo_ship.models.prompter import prompter_loss, prompter_targets
from samgeo_ship.training import checkpoint as ckpt
from samgeo_ship.training.augment import VARIANTS
from samgeo_ship.training.cache import EmbeddingCache, default_cache_dir, embedding_key, encoder_sha256
from samgeo_ship.training.data import Sample, load_sample, open_datasets, split_tiles
from samgeo_ship.training.evaluate import NMS_IOU, validate
from samgeo_ship.training.losses import mask_loss
from samgeo_ship.training.modes import configure, default_mode, load_base, load_init
from samgeo_ship.training.prompts import PromptRecipe, negative_boxes, sample_prompts


DEFAULT_BOX_PRIOR = 3.0
# Prompter proposals scored at least this are candidates for negative box prompts (a detection threshold is
# chosen on validation from 0.1 up, so anything it could let through is covered).
NEGATIVE_SCORE = 0.1


@dataclass
class TrainConfig:
    """Everything that shapes a training run (the card's recipe records it).

    encoder: "frozen", "lora", "full" or None (frozen for vit_b/l/h, full for sam_tiny/sam_small).
    lr: peak learning rate; None = 1e-4 from an official base, 1e-3 from random init.
    warmup: fraction of all steps with a linear warmup before the cosine decay.
    patience: epochs without a better validation score (``selection_score``) before stopping.
    prompter_pixels: channels of the prompter's pixel branch (models.prompter.Prompter; 0 = none). With ``init``,
        the init bundle's prompter is kept as it is.
    max_minutes: stop after the first epoch that ends past this many minutes of training (None: no limit); the
        best epoch so far is kept and written as usual. The learning rate's cosine then follows the clock where
        that is further along than the steps, so such a run is not bit-for-bit repeatable.
    use_cache: cache frozen-encoder embeddings on disk (cache_dir, default default_cache_dir()).
    init: a shipseg bundle to start from (its weights, prompter included) instead of the base checkpoint.
    negatives: share of the tiles without ships drawn each epoch (a fresh draw per epoch); most tiles of a
        harbour scene are open water, and all of them every epoch would spend most steps on the prompter alone.
    negative_ratio: instead of ``negatives``, draw this many tiles without ships per tile with ships each epoch
        (a fresh draw, at most all of them). Few ships need it: with 20 ships among 80-90 shipless tiles per ship
        tile every epoch, the prompter learnt to stay quiet; a fresh 10 per ship tile each epoch, over more epochs,
        kept both precision and recall (benchmarks/label_efficiency.py --balanced; README).
    box_prior: ShipSam.box_prior, the logit of the filled prompt box added to the decoder's masks (0 = none);
        None = DEFAULT_BOX_PRIOR, or with ``init`` that bundle's own (its decoder was trained with it).
    threads: torch CPU threads; None = every core this process may use (on a machine shared with other busy
        processes fewer threads can be much faster: spinning OpenMP threads wait on each other)."""

    model_type: str = "sam_tiny"
    encoder: str | None = None
    epochs: int = 20
    batch_size: int = 4
    lr: float | None = None
    weight_decay: float = 0.01
    warmup: float = 0.05
    val_fraction: float = 0.2
    patience: int = 5
    seed: int = 0
    device: str = "auto"
    augment: bool = True
    prompts: PromptRecipe = field(default_factory=PromptRecipe)
    prompter_weight: float = 1.0
    lora_rank: int = 8
    lora_alpha: float = 16.0
    base_checkpoint: str | None = None
    cache_dir: str | None = None
    use_cache: bool = True
    negatives: float = 1.0
    negative_ratio: float | None = None
    init: str | None = None
    threads: int | None = None
    box_prior: float | None = None
    max_minutes: float | None = None
    prompter_pixels: int = PROMPTER_PIXELS


@dataclass
class TrainResult:
    path: Path
    card: BundleCard
    history: list[dict]


def lr_factor(step: int, total: int, warmup: int, elapsed: float = 0.0, warmup_share: float = 0.05) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based) of ``total``: linear warmup, then cosine to 0.
    ``elapsed``: the share of a time budget spent (0 without one); warmup and cosine follow whichever of steps and
    clock is further along, so a run stopped by its budget (TrainConfig.max_minutes) warms up in its first
    ``warmup_share`` of the budget, however many epochs were asked for, and still ends with a decayed rate."""
    if step < warmup and elapsed < warmup_share:
        return max((step + 1) / warmup, elapsed / warmup_share)
    progress = max((step - warmup) / max(total - warmup, 1), elapsed)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


class Encoder:
    """Image embeddings for a batch of Samples; with a frozen encoder, through the embedding cache.

    ``encoded`` counts the images that went through the image encoder (cache misses included)."""

    def __init__(self, model, cache: EmbeddingCache | None, autocast: Callable):
        self.model, self.cache, self.autocast = model, cache, autocast
        self.encoder_hash = encoder_sha256(model.sam) if cache else None
        self.encoded = 0

    def _run(self, images: torch.Tensor) -> torch.Tensor:
        self.encoded += len(images)
        with self.autocast():
            return self.model.encode(images.to(self.model.device)).float()

    def __call__(self, samples: list[Sample], grad: bool = False) -> torch.Tensor:
        if grad:
            return self._run(torch.stack([s.image for s in samples]))
        with torch.no_grad():
            if self.cache is None:
                return self._run(torch.stack([s.image for s in samples]))
            keys = [embedding_key(s.chip, s.variant, self.encoder_hash, self.model.img_size) for s in samples]
            found = [self.cache.get(k) for k in keys]
            missing = [i for i, e in enumerate(found) if e is None]
            if missing:
                fresh = self._run(torch.stack([samples[i].image for i in missing])).cpu()
                for i, emb in zip(missing, fresh):
                    self.cache.put(keys[i], emb)
                    found[i] = emb
            return torch.stack(found).to(self.model.device)


def batch_loss(model, samples: list[Sample], emb: torch.Tensor, recipe: PromptRecipe, prompter_weight: float,
               rng: np.random.Generator) -> tuple[torch.Tensor, dict]:
    """Mask + IoU-head loss over the ships of a batch, the same loss with an empty target over box prompts on no
    ship (PromptRecipe.negative_boxes), and the prompter loss over all its tiles (shipless tiles too)."""
    device = emb.device
    heat, geometry = model.prompt_maps(emb, torch.stack([s.image for s in samples]).to(device))
    stride = model.img_size / heat.shape[-1]
    targets = prompter_targets([s.boxes for s in samples], tuple(heat.shape[-2:]), stride)
    p_loss = prompter_loss(heat.float(), geometry.float(), *(t.to(device) for t in targets))
    proposals = (model.prompter.propose(heat.detach().float(), geometry.detach().float(), stride, NEGATIVE_SCORE,
                                        max_ships=4 * recipe.negative_boxes)
                 if recipe.negative_boxes else [None] * len(samples))
    terms, empty = [], []
    for b, s in enumerate(samples):
        if len(s.boxes):
            p = sample_prompts(s.masks, s.boxes, recipe, model.img_size, rng)
            points = tuple(t.to(device) for t in p.points) if p.points is not None else None
            boxes = p.boxes.to(device) if p.boxes is not None else None
            logits, iou_pred = model.decode(emb[b], boxes=boxes, points=points)
            terms.append(mask_loss(logits, iou_pred, s.masks[p.index].to(device)))
        if proposals[b] is not None:
            nothing = negative_boxes(proposals[b].boxes.cpu(), s.boxes, recipe.negative_boxes, model.img_size, rng)
            if len(nothing):
                logits, iou_pred = model.decode(emb[b], boxes=nothing.to(device))
                empty.append(mask_loss(logits, iou_pred, torch.zeros_like(logits, dtype=torch.bool)))
    total = prompter_weight * p_loss
    stats = {"prompter": float(p_loss.detach())}
    if terms:
        total = total + torch.stack([t["total"] for t in terms]).mean()
        stats["iou"] = float(np.mean([float(t["iou"]) for t in terms]))
    if empty:
        total = total + torch.stack([t["total"] for t in empty]).mean()
        stats["empty_iou"] = float(np.mean([float(t["iou"]) for t in empty]))
    stats["loss"] = float(total.detach())
    return total, stats


def _batches(refs, order, variants, size: int, img_size: int):
    for start in range(0, len(order), size):
        idx = order[start:start + size]
        yield [load_sample(refs[i], img_size, int(variants[i])) for i in idx]


def train(datasets, output, config: TrainConfig | None = None, val_datasets=(), resume: bool = False,
          recipe: dict | None = None, on_step: Callable | None = None,
          on_epoch: Callable | None = None) -> TrainResult:
    """Fine-tune a ShipSam on prepared ``datasets`` and write the bundle ``output`` (.safetensors).

    Args:
        datasets: dataset directories to train on (a seeded ``val_fraction`` of their tiles validates unless
            ``val_datasets`` are given).
        resume: continue from ``MODEL.ckpt.safetensors`` (written after every epoch) instead of starting afresh.
        recipe: what the card records as the recipe (the CLI passes its arguments); default: the config.
        on_step(epoch, step, steps, stats) after each optimiser step; on_epoch(record) after each epoch.
    """
    config = config or TrainConfig()
    output = Path(output)
    if not output.parent.is_dir():
        raise fail(output, "cannot be written: its folder does not exist")
    train_sets = open_datasets(datasets)
    val_sets = open_datasets(list(val_datasets)) if val_datasets else []
    open_datasets([d.path for d in train_sets + val_sets])  # one check that every dataset agrees
    train_refs, val_refs = split_tiles(train_sets, val_sets, config.val_fraction, config.seed)
    if not train_refs:
        raise ShipsegError("no training tiles are left after the validation split; lower --val-fraction")
    device = resolve_device(config.device)
    torch.set_num_threads(config.threads or len(os.sched_getaffinity(0)))
    torch.manual_seed(config.seed)
    if config.init:
        model, base, model_type = load_init(config.init)
        config = dataclasses.replace(config, model_type=model_type)
    else:
        model, base = load_base(config.model_type, config.base_checkpoint, config.prompter_pixels)
    if config.box_prior is not None or not config.init:
        model.box_prior = DEFAULT_BOX_PRIOR if config.box_prior is None else config.box_prior
    mode = config.encoder or default_mode(config.model_type)
    plan = configure(model, mode, base.official, config.lora_rank, config.lora_alpha)
    model.to(device)
    autocast = _autocast(device)
    cache = None
    if plan.cacheable and config.use_cache:
        cache = EmbeddingCache(config.cache_dir or default_cache_dir())
    encoder = Encoder(model, cache, autocast)

    lr = config.lr or (1e-4 if base.official else 1e-3)
    params = [p for _, p in model.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and not torch.cuda.is_bf16_supported())
    positive = np.array([len(r.dataset.boxes[r.tile]) > 0 for r in train_refs])
    share = negative_share(positive, config.negatives, config.negative_ratio)
    per_epoch = int(positive.sum() + round(share * (~positive).sum()))
    steps_per_epoch = math.ceil(per_epoch / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup = max(1, int(config.warmup * total_steps))
    stored = lambda: {k: v.detach().clone() for k, v in model.state_dict().items() if is_stored(k, plan.stored)}
    setup = {"model_type": config.model_type, "encoder": mode, "seed": config.seed, "batch_size": config.batch_size,
             "datasets": [str(d.path.resolve()) for d in train_sets + val_sets], "lora": plan.lora}
    state = {"epoch": 0, "step": 0, "best_score": -math.inf, "best_epoch": 0, "bad_epochs": 0, "stopped": False,
             "history": [], "setup": setup}
    best = None
    ckpt_path = ckpt.checkpoint_path(output)
    if resume:
        model_state, best, opt_state, state = _resume(ckpt_path, setup)
        model.load_state_dict(model_state, strict=False)
        optimizer.load_state_dict(opt_state)
    elif val_refs:
        state["history"].append({"epoch": 0, **_validate(model, val_refs, config.batch_size, encoder)})

    run_started = time.perf_counter()
    spent = lambda: (time.perf_counter() - run_started) / (60 * config.max_minutes) if config.max_minutes else 0.0
    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        if state["stopped"]:
            break
        # One generator per epoch, from (seed, epoch): the same epoch draws the same order, augmentations and
        # prompts whether the run was interrupted and resumed or not.
        rng = np.random.default_rng([config.seed, epoch])
        order = _epoch_order(rng, positive, share)
        variants = rng.integers(0, VARIANTS, len(train_refs)) if config.augment else np.zeros(len(train_refs), int)
        model.train()
        encoded_before, started, losses, ious = encoder.encoded, time.perf_counter(), [], []
        for step, samples in enumerate(_batches(train_refs, order, variants, config.batch_size, model.img_size)):
            for group in optimizer.param_groups:
                group["lr"] = lr * lr_factor(state["step"], total_steps, warmup, spent(), config.warmup)
            with autocast():
                emb = encoder(samples, grad=plan.mode != "frozen")
                loss, stats = batch_loss(model, samples, emb, config.prompts, config.prompter_weight, rng)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            state["step"] += 1
            losses.append(stats["loss"])
            if "iou" in stats:
                ious.append(stats["iou"])
            if on_step:
                on_step(epoch, step + 1, steps_per_epoch, stats)
        record = {"epoch": epoch, "loss": float(np.mean(losses)), "train_iou": float(np.mean(ious)) if ious else None,
                  "encoded": encoder.encoded - encoded_before, "seconds": round(time.perf_counter() - started, 3)}
        if val_refs:
            record.update(_validate(model, val_refs, config.batch_size, encoder))
        state["history"].append(record)
        state["epoch"] = epoch
        score = selection_score(record)
        if best is None or score > state["best_score"] + 1e-6:
            best, state["best_score"], state["best_epoch"], state["bad_epochs"] = stored(), score, epoch, 0
        else:
            state["bad_epochs"] += 1
            state["stopped"] = bool(val_refs) and state["bad_epochs"] >= config.patience
        if spent() >= 1:
            state["stopped"] = True
        ckpt.save_state(ckpt_path, stored(), best, optimizer.state_dict(), state)
        if on_epoch:
            on_epoch(record)

    if best is not None:
        model.load_state_dict(best, strict=False)
    card = _card(train_sets, val_sets, train_refs, val_refs, config, recipe, base, plan, state)
    save_bundle(model.eval(), card, output)
    return TrainResult(output, card, state["history"])


def selection_score(record: dict) -> float:
    """What picks the best epoch: validation mask IoU with truth boxes as prompts plus the prompter's centre F1 (each
    in [0, 1]). Detection needs both: by mask IoU alone, a run kept an epoch whose prompter had collapsed to no
    proposals at all. Without validation tiles, minus the training loss."""
    if record.get("mask_iou") is None or record["mask_iou"] != record["mask_iou"]:  # none, or NaN: no ships
        return record.get("centre_f1", -record["loss"])
    return record["mask_iou"] + record.get("centre_f1", 0.0)


def negative_share(positive: np.ndarray, negatives: float, ratio: float | None) -> float:
    """The share of the tiles without ships (``~positive``) drawn each epoch: ``negatives``, or with a ``ratio``
    that many per tile with ships (at most all of them)."""
    if ratio is None:
        return negatives
    empty = int((~positive).sum())
    return min(1.0, ratio * int(positive.sum()) / empty) if empty else 0.0


def _epoch_order(rng: np.random.Generator, positive: np.ndarray, negatives: float) -> np.ndarray:
    """Indices of this epoch's tiles in random order: every tile with ships and a fresh ``negatives`` share of
    the others."""
    empty = np.flatnonzero(~positive)
    chosen = rng.choice(empty, int(round(negatives * len(empty))), replace=False) if len(empty) else empty
    return rng.permutation(np.concatenate([np.flatnonzero(positive), chosen]))


def _median_pixel_size(datasets) -> float | None:
    sizes = [d.card["pixel_size_m"] for d in datasets if d.card.get("pixel_size_m")]
    return float(np.median(sizes)) if sizes else None


def _validate(model, refs, batch_size: int, encoder: Encoder) -> dict:
    model.eval()
    batches = ([load_sample(r, model.img_size) for r in refs[i:i + batch_size]]
               for i in range(0, len(refs), batch_size))
    with encoder.autocast():
        return validate(model, batches, encoder)


def _resume(path: Path, setup: dict):
    model_state, best, opt_state, state = ckpt.load_state(path)
    if state.get("setup") != setup:
        differ = sorted(k for k in setup if state.get("setup", {}).get(k) != setup[k])
        raise fail(path, f"was written by a different training setup ({', '.join(differ)} differ); pass the same "
                   "datasets and options, or train afresh without --resume")
    return model_state, best or None, opt_state, state


def _card(train_sets, val_sets, train_refs, val_refs, config, recipe, base, plan, state) -> BundleCard:
    first = train_sets[0].card
    history = state["history"]
    best = next((h for h in history if h["epoch"] == state["best_epoch"]), {})
    initial = next((h for h in history if h["epoch"] == 0), {})
    validation = {k: best[k] for k in ("mask_iou", "box_baseline_iou", "iou_head_mae", "centre_f1", "ships", "tiles")
                  if k in best}
    if validation:
        validation.update(initial_mask_iou=initial.get("mask_iou"), best_epoch=state["best_epoch"])
    percentiles = first.get("normalisation", {}).get("percentiles", [1.0, 99.0])
    return BundleCard(
        model_type=config.model_type, bands=list(first["bands"]), pixel_size_m=_median_pixel_size(train_sets),
        tile_size=first["tile_size"], overlap=first.get("overlap", 0),
        normalisation={"method": "percentile", "percentiles": list(percentiles)},
        thresholds={"score": best.get("score_threshold", 0.3), "mask_logit": 0.0, "nms_iou": NMS_IOU},
        base_model=base.name, base_sha256=base.sha256, trained=plan.trained, encoder_mode=plan.mode,
        stored=plan.stored, lora=plan.lora, validation=validation,
        training={
            "datasets": [{"path": str(d.path), "scene": d.card.get("scene"), "tiles": len(d.tiles), "ships": d.ships,
                          "normalisation": d.card.get("normalisation"), "role": role}
                         for role, sets in (("train", train_sets), ("val", val_sets)) for d in sets],
            "tiles": {"train": len(train_refs), "val": len(val_refs)},
            "ships": {"train": sum(len(r.dataset.boxes[r.tile]) for r in train_refs),
                      "val": sum(len(r.dataset.boxes[r.tile]) for r in val_refs)},
            "epochs": state["epoch"], "best_epoch": state["best_epoch"], "stopped_early": state["stopped"],
            "steps": state["step"],
            "recipe": recipe if recipe is not None else dataclasses.asdict(config),
            "history": history,
        })
