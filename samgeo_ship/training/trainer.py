"""The training loop: prepared datasets + a SAM base -> a fine-tuned ShipSam bundle with a full card.

AdamW with linear warmup then cosine decay; validation each epoch; early stopping on the validation score
(``selection_score``: box-prompted mask IoU plus the prompter's centre-detection F1), keeping the best weights;
a resumable checkpoint after each epoch; deterministic for a given seed (unless a time budget is set).
Which tiles an epoch sees is the sampler's (sampler.py), one batch's embeddings and loss are batch.py's, and
where the run stands is its TrainState (state.py), which the checkpoint stores."""

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

from samgeo_ship.device import autocaster, resolve_device
from samgeo_ship.errors import ShipsegError, fail
from samgeo_ship.models.bundle import BundleCard, is_stored, save_bundle
from samgeo_ship.models.shipsam import PROMPTER_PIXELS
from samgeo_ship.training import checkpoint as ckpt
from samgeo_ship.training.batch import Encoder, batch_loss
from samgeo_ship.training.cache import EmbeddingCache, default_cache_dir
from samgeo_ship.training.data import Sample, load_sample, open_datasets, split_tiles
from samgeo_ship.training.evaluate import NMS_IOU, validate
from samgeo_ship.training.modes import configure, default_mode, load_base, load_init
from samgeo_ship.training.prompts import PromptRecipe
from samgeo_ship.training.sampler import EpochSampler
from samgeo_ship.training.state import TrainState

DEFAULT_BOX_PRIOR = 3.0


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
        (a fresh draw, at most all of them). Few ships need it: among all of a harbour's shipless tiles every epoch
        a few-shot prompter learns to stay quiet, while a fresh 10 per ship tile each epoch, over more epochs, keeps
        both precision and recall (benchmarks/label_efficiency.py --balanced).
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


def selection_score(record: dict) -> float:
    """What picks the best epoch: validation mask IoU with truth boxes as prompts plus the prompter's centre F1 (each
    in [0, 1]). Detection needs both: by mask IoU alone, an epoch whose prompter has collapsed to no proposals at
    all can win. Without validation tiles, minus the training loss."""
    if record.get("mask_iou") is None or record["mask_iou"] != record["mask_iou"]:  # none, or NaN: no ships
        return record.get("centre_f1", -record["loss"])
    return record["mask_iou"] + record.get("centre_f1", 0.0)


class Trainer:
    """One fine-tuning run: datasets and a TrainConfig in, a ShipSam bundle with its card out (``run``).

    The sampler picks each epoch's tiles, the Encoder gives their embeddings (through the cache when the encoder
    is frozen), and the TrainState, which the checkpoint after every epoch holds, says where the run stands.
    Arguments as for ``train``."""

    def __init__(self, datasets, output, config: TrainConfig | None = None, val_datasets=(),
                 recipe: dict | None = None, on_step: Callable | None = None, on_epoch: Callable | None = None):
        config = config or TrainConfig()
        self.output = Path(output)
        if not self.output.parent.is_dir():
            raise fail(self.output, "cannot be written: its folder does not exist")
        self.train_sets = open_datasets(datasets)
        self.val_sets = open_datasets(list(val_datasets)) if val_datasets else []
        open_datasets([d.path for d in self.train_sets + self.val_sets])  # one check that every dataset agrees
        self.train_refs, self.val_refs = split_tiles(self.train_sets, self.val_sets, config.val_fraction, config.seed)
        if not self.train_refs:
            raise ShipsegError("no training tiles are left after the validation split; lower --val-fraction")
        device = resolve_device(config.device)
        torch.set_num_threads(config.threads or len(os.sched_getaffinity(0)))
        torch.manual_seed(config.seed)
        if config.init:
            model, self.base, model_type = load_init(config.init)
            config = dataclasses.replace(config, model_type=model_type)
        else:
            model, self.base = load_base(config.model_type, config.base_checkpoint, config.prompter_pixels)
        if config.box_prior is not None or not config.init:
            model.box_prior = DEFAULT_BOX_PRIOR if config.box_prior is None else config.box_prior
        self.config, self.recipe, self.on_step, self.on_epoch = config, recipe, on_step, on_epoch
        mode = config.encoder or default_mode(config.model_type)
        self.plan = configure(model, mode, self.base.official, config.lora_rank, config.lora_alpha)
        self.model = model.to(device)
        cache = None
        if self.plan.cacheable and config.use_cache:
            cache = EmbeddingCache(config.cache_dir or default_cache_dir())
        self.encoder = Encoder(model, cache, autocaster(device))

        self.lr = config.lr or (1e-4 if self.base.official else 1e-3)
        params = [p for _, p in model.named_parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=config.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and not torch.cuda.is_bf16_supported())
        self.sampler = EpochSampler.for_tiles(self.train_refs, config.negatives, config.negative_ratio, config.augment)
        self.steps_per_epoch = math.ceil(len(self.sampler) / config.batch_size)
        self.total_steps = self.steps_per_epoch * config.epochs
        self.warmup = max(1, int(config.warmup * self.total_steps))
        self.state = TrainState(setup={
            "model_type": config.model_type, "encoder": mode, "seed": config.seed, "batch_size": config.batch_size,
            "datasets": [str(d.path.resolve()) for d in self.train_sets + self.val_sets], "lora": self.plan.lora})
        self.checkpoint = ckpt.checkpoint_path(self.output)
        self.started = time.perf_counter()

    def run(self, resume: bool = False) -> TrainResult:
        """Train (continuing from the checkpoint if ``resume``), keep the best epoch and write the bundle."""
        if resume:
            self._resume()
        elif self.val_refs:
            self.state.history.append({"epoch": 0, **self._validate()})
        self.started = time.perf_counter()
        while not self.state.stopped and self.state.epoch < self.config.epochs:
            self._epoch(self.state.epoch + 1)
        if self.state.best is not None:
            self.model.load_state_dict(self.state.best, strict=False)
        card = self._card()
        save_bundle(self.model.eval(), card, self.output)
        return TrainResult(self.output, card, self.state.history)

    def _epoch(self, epoch: int) -> None:
        # One generator per epoch, from (seed, epoch): the same epoch draws the same order, augmentations and
        # prompts whether the run was interrupted and resumed or not.
        rng = np.random.default_rng([self.config.seed, epoch])
        order, variants = self.sampler.draw(rng)
        self.model.train()
        encoded_before, started, losses, ious = self.encoder.encoded, time.perf_counter(), [], []
        for step, start in enumerate(range(0, len(order), self.config.batch_size)):
            samples = [load_sample(self.train_refs[i], self.model.img_size, int(variants[i]))
                       for i in order[start:start + self.config.batch_size]]
            stats = self._step(samples, rng)
            losses.append(stats["loss"])
            if "iou" in stats:
                ious.append(stats["iou"])
            if self.on_step:
                self.on_step(epoch, step + 1, self.steps_per_epoch, stats)
        record = {"epoch": epoch, "loss": float(np.mean(losses)), "train_iou": float(np.mean(ious)) if ious else None,
                  "encoded": self.encoder.encoded - encoded_before, "seconds": round(time.perf_counter() - started, 3)}
        if self.val_refs:
            record.update(self._validate())
        self.state.add_epoch(record, selection_score(record), self._stored,
                             self.config.patience if self.val_refs else None)
        if self._spent() >= 1:
            self.state.stopped = True
        ckpt.save_state(self.checkpoint, self.state, self._stored(), self.optimizer.state_dict())
        if self.on_epoch:
            self.on_epoch(record)

    def _step(self, samples: list[Sample], rng: np.random.Generator) -> dict:
        """One optimiser step on a batch; its loss statistics."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * lr_factor(self.state.step, self.total_steps, self.warmup, self._spent(),
                                              self.config.warmup)
        with self.encoder.autocast():
            emb = self.encoder(samples, grad=self.plan.mode != "frozen")
            loss, stats = batch_loss(self.model, samples, emb, self.config.prompts, self.config.prompter_weight, rng)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.state.step += 1
        return stats

    def _spent(self) -> float:
        """The share of the time budget spent (0 without one)."""
        if not self.config.max_minutes:
            return 0.0
        return (time.perf_counter() - self.started) / (60 * self.config.max_minutes)

    def _stored(self) -> dict:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items() if is_stored(k, self.plan.stored)}

    def _validate(self) -> dict:
        self.model.eval()
        size, refs = self.config.batch_size, self.val_refs
        batches = ([load_sample(r, self.model.img_size) for r in refs[i:i + size]] for i in range(0, len(refs), size))
        with self.encoder.autocast():
            return validate(self.model, batches, self.encoder)

    def _resume(self) -> None:
        state, model_state, opt_state = ckpt.load_state(self.checkpoint)
        setup = self.state.setup
        if state.setup != setup:
            differ = sorted(k for k in setup if state.setup.get(k) != setup[k])
            raise fail(self.checkpoint, f"was written by a different training setup ({', '.join(differ)} differ); "
                       "pass the same datasets and options, or train afresh without --resume")
        self.model.load_state_dict(model_state, strict=False)
        self.optimizer.load_state_dict(opt_state)
        self.state = state

    def _card(self) -> BundleCard:
        config, state, plan = self.config, self.state, self.plan
        train_sets, val_sets, train_refs, val_refs = self.train_sets, self.val_sets, self.train_refs, self.val_refs
        first = train_sets[0].card
        best = next((h for h in state.history if h["epoch"] == state.best_epoch), {})
        initial = next((h for h in state.history if h["epoch"] == 0), {})
        validation = {k: best[k] for k in ("mask_iou", "box_baseline_iou", "iou_head_mae", "centre_f1", "ships",
                                           "tiles") if k in best}
        if validation:
            validation.update(initial_mask_iou=initial.get("mask_iou"), best_epoch=state.best_epoch)
        return BundleCard(
            model_type=config.model_type, bands=list(first["bands"]), pixel_size_m=_median_pixel_size(train_sets),
            tile_size=first["tile_size"], overlap=first.get("overlap", 0),
            normalisation=_card_normalisation(first),
            thresholds={"score": best.get("score_threshold", 0.3), "mask_logit": 0.0, "nms_iou": NMS_IOU},
            base_model=self.base.name, base_sha256=self.base.sha256, trained=plan.trained, encoder_mode=plan.mode,
            stored=plan.stored, lora=plan.lora, validation=validation,
            training={
                "datasets": [{"path": str(d.path), "scene": d.card.get("scene"), "tiles": len(d.tiles),
                              "ships": d.ships, "normalisation": d.card.get("normalisation"), "role": role}
                             for role, sets in (("train", train_sets), ("val", val_sets)) for d in sets],
                "tiles": {"train": len(train_refs), "val": len(val_refs)},
                "ships": {"train": sum(len(r.dataset.boxes[r.tile]) for r in train_refs),
                          "val": sum(len(r.dataset.boxes[r.tile]) for r in val_refs)},
                "epochs": state.epoch, "best_epoch": state.best_epoch, "stopped_early": state.stopped,
                "steps": state.step,
                "recipe": self.recipe if self.recipe is not None else dataclasses.asdict(config),
                "history": state.history,
            })


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
    return Trainer(datasets, output, config, val_datasets, recipe, on_step, on_epoch).run(resume)


def _median_pixel_size(datasets) -> float | None:
    sizes = [d.card["pixel_size_m"] for d in datasets if d.card.get("pixel_size_m")]
    return float(np.median(sizes)) if sizes else None


def _card_normalisation(dataset_card: dict) -> dict:
    """The card's normalisation for a model trained on a dataset: the same percentiles, and the same narrowest
    stretch (``min_span``), computed afresh on each scene it reads."""
    spec = dataset_card.get("normalisation", {})
    return {"method": "percentile", "percentiles": list(spec.get("percentiles", [1.0, 99.0]))} | (
        {"min_span": spec["min_span"]} if spec.get("min_span") else {})
