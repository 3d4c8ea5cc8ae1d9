"""`shipseg train`: prepared datasets -> a fine-tuned SAM model bundle (.safetensors with a JSON card)."""

import click
from tqdm import tqdm

from samgeo_ship.models.card_schema import MAX_PROPOSER_WIDTH, REGION_SCORES
from samgeo_ship.models.native import DEFAULT_WIDTH
from samgeo_ship.models.registry import CONFIGS
from samgeo_ship.models.shipsam import PROMPTER_PIXELS
from samgeo_ship.outputs import check_outputs
from samgeo_ship.training import TrainConfig, train as run_training
from samgeo_ship.training.advice import dataset_advice
from samgeo_ship.training.modes import MODES
from samgeo_ship.training.native import ProposerConfig, train_proposer
from samgeo_ship.training.prompts import PromptRecipe


@click.command("train")
@click.argument("datasets", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Model bundle to write.")
@click.option("--model-type", default="sam_tiny", show_default=True, type=click.Choice(list(CONFIGS)))
@click.option("--encoder", type=click.Choice(MODES), default=None,
              help="frozen (default for vit_b/l/h; embeddings cached), lora or full (default for sam_tiny/small).")
@click.option("--epochs", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(min=1))
@click.option("--lr", default=None, type=click.FloatRange(min=0, min_open=True),
              help="Peak learning rate [1e-4 from an official base, 1e-3 from random init].")
@click.option("--val-fraction", default=0.2, show_default=True, type=click.FloatRange(0, 0.9),
              help="Fraction of the tiles (seeded) held out for validation.")
@click.option("--val", "val_datasets", multiple=True, type=click.Path(),
              help="Validate on this dataset instead (repeat for several); overrides --val-fraction.")
@click.option("--patience", default=5, show_default=True, type=click.IntRange(min=1),
              help="Stop after this many epochs without a better validation score (mask IoU + prompter F1).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--resume", is_flag=True, help="Continue from OUTPUT's checkpoint (MODEL.ckpt.safetensors).")
@click.option("--base-checkpoint", type=click.Path(dir_okay=False), default=None,
              help="SAM checkpoint to start from [the cached official one for vit_b/l/h].")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Embedding cache for a frozen encoder [$SHIPSEG_HOME/embeddings or ~/.cache/shipseg/embeddings].")
@click.option("--no-augment", is_flag=True, help="No flips or 90-degree rotations.")
@click.option("--lora-rank", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--lora-alpha", default=16.0, show_default=True, type=float)
@click.option("--init", "init_model", type=click.Path(dir_okay=False), default=None,
              help="Start from this model bundle's weights (e.g. the default model) instead of the base.")
@click.option("--negatives", default=1.0, show_default=True, type=click.FloatRange(0, 1),
              help="Share of the tiles without ships drawn each epoch (they train the prompter to stay quiet).")
@click.option("--negative-ratio", default=None, type=click.FloatRange(min=0, min_open=True),
              help="Instead of --negatives: draw this many tiles without ships per tile with ships each epoch, "
                   "afresh from all of them (few-shot: 10).")
@click.option("--box-prior", default=None, type=click.FloatRange(min=0),
              help="Logit of the filled prompt box added to the decoder's masks (0: plain SAM decoder) "
                   "[3; with --init, that model's own].")
@click.option("--negative-boxes", default=0, show_default=True, type=click.IntRange(min=0),
              help="Box prompts on no ship per tile and step, trained to give an empty mask (the prompter's false "
                   "proposals first); detection then drops false alarms. 0: none.")
@click.option("--prompter-pixels", default=PROMPTER_PIXELS, show_default=True, type=click.IntRange(min=0),
              help="Channels of the prompter's convolutional branch on the input pixels (0: embeddings only).")
@click.option("--max-minutes", default=None, type=click.FloatRange(min=0, min_open=True),
              help="Stop after the first epoch that ends past this many minutes; the best epoch is kept.")
@click.option("--proposer", type=click.Choice(["prompter", "native"]), default="prompter", show_default=True,
              help="What to train: prompter (SAM and its prompter on image embeddings, the options above) or native "
                   "(a convolutional proposer at the datasets' own pixels, without SAM's encoder; its boxes prompt "
                   "the SAM of --init, untrained without it).")
@click.option("--masks", type=click.Choice(["sam", "native"]), default="sam", show_default=True,
              help="With --proposer native: who draws the ships, SAM's decoder from the proposer's boxes, or the "
                   "proposer itself (each region of its ship-pixel map is a ship; detection then runs no SAM, and "
                   "the model may read bands SAM was not trained on, such as B08).")
@click.option("--proposer-width", default=DEFAULT_WIDTH, show_default=True, type=click.IntRange(1, MAX_PROPOSER_WIDTH),
              help="With --proposer native: channels of its layers (32: 4x the weights, better on real Sentinel-2 "
                   "ports; benchmarks/README.md).")
@click.option("--crop", default=None, type=click.IntRange(min=8),
              help="With --proposer native: train on a random window of this many pixels of each tile (faster steps "
                   "on large tiles; detection still reads whole tiles).")
@click.option("--coarsen", default=1.0, show_default=True, type=click.FloatRange(min=1),
              help="With --proposer native: blur each training tile as a scene up to this many times coarser looks "
                   "once resampled to the model's pixels (for models that read a range of pixel sizes; 1: off).")
@click.option("--texture", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="With --proposer native: lay waves of up to this amplitude (inputs span -1..1) over each training "
                   "tile, so that rough open water is not taken for boats (for models trained on synthetic scenes).")
@click.option("--region-score", type=click.Choice(REGION_SCORES), default="mean", show_default=True,
              help="With --masks native: a ship region's score, its mean or its highest ship-pixel probability (the "
                   "mean sorts ships from rough water far better on real aerial chips).")
@click.option("--threads", default=None, type=click.IntRange(min=1), help="CPU threads [all cores].")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def train(ctx, datasets, output, model_type, encoder, epochs, batch_size, lr, val_fraction, val_datasets, patience,
          seed, device, resume, base_checkpoint, cache_dir, no_augment, lora_rank, lora_alpha, init_model, negatives,
          negative_ratio, box_prior, negative_boxes, prompter_pixels, max_minutes, proposer, masks, proposer_width,
          crop, coarsen, texture, region_score, threads, quiet):
    """Fine-tune SAM and its ship prompter on DATASETS (directories made by shipseg prepare).

    Example: shipseg train harbour_ds/ -o ships.safetensors --model-type vit_b --epochs 30
    """
    check_outputs({output: {".safetensors"}}, inputs=[*datasets, *val_datasets, init_model, base_checkpoint])
    if masks == "native" and proposer != "native":
        raise click.BadParameter("only a native proposer draws its own masks: add --proposer native",
                                 param_hint="--masks")
    for name in ("proposer_width", "crop", "coarsen", "texture", "region_score"):
        if proposer != "native" and ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
            option = "--" + name.replace("_", "-")
            raise click.BadParameter("applies to a native proposer only: add --proposer native", param_hint=option)
    if proposer == "native":
        _train_native(ctx, datasets, output, val_datasets, quiet)
        return
    config = TrainConfig(model_type=model_type, encoder=encoder, epochs=epochs, batch_size=batch_size, lr=lr,
                         val_fraction=val_fraction, patience=patience, seed=seed, device=device,
                         augment=not no_augment, lora_rank=lora_rank, lora_alpha=lora_alpha,
                         base_checkpoint=base_checkpoint, cache_dir=cache_dir, negatives=negatives, init=init_model,
                         negative_ratio=negative_ratio,
                         threads=threads, box_prior=box_prior, max_minutes=max_minutes,
                         prompts=PromptRecipe(negative_boxes=negative_boxes), prompter_pixels=prompter_pixels)
    # A resumed run was advised when it started (and a failed resume must say one line: its error).
    for line in ([] if resume else dataset_advice(config, datasets, validation_given=bool(val_datasets))):
        click.echo(f"Warning: {line}", err=True)
    bar = None

    def on_step(epoch, step, steps, stats):
        nonlocal bar
        if quiet:
            return
        if bar is None or bar.total != steps or step == 1:
            if bar is not None:
                bar.close()
            bar = tqdm(total=steps, unit=" steps", desc=f"epoch {epoch}", dynamic_ncols=True, leave=False)
        bar.n = step
        bar.set_postfix(loss=f"{stats['loss']:.3f}", iou=f"{stats.get('iou', float('nan')):.3f}")

    def on_epoch(record):
        if not quiet and "mask_iou" in record:
            tqdm.write(f"epoch {record['epoch']}: loss {record['loss']:.3f}, val mask IoU {record['mask_iou']:.3f} "
                       f"(filled box {record['box_baseline_iou']:.3f}), prompter F1 {record['centre_f1']:.3f}, "
                       f"{record['encoded']} tiles encoded, {record['seconds']:.0f} s")

    try:
        result = run_training(list(datasets), output, config, val_datasets=list(val_datasets), resume=resume,
                              recipe=dict(ctx.params), on_step=on_step, on_epoch=on_epoch)
    finally:
        if bar is not None:
            bar.close()
    v = result.card.validation
    summary = (f"val mask IoU {v['mask_iou']:.3f} (at init {v['initial_mask_iou']:.3f}, filled box "
               f"{v['box_baseline_iou']:.3f}), best epoch {v['best_epoch']}") if v.get("mask_iou") is not None \
        else "no validation tiles"
    click.echo(f"{output}: {result.card.model_type} ({result.card.encoder_mode} encoder), "
               f"{result.card.training['epochs']} epochs, {summary}")


def _train_native(ctx, datasets, output, val_datasets, quiet):
    """`shipseg train --proposer native`: the options that apply to a proposer trained apart from SAM."""
    p = ctx.params
    # --batch-size's default is SAM's; tiles at native pixels are cheap, so the proposer's own default is larger.
    given = ctx.get_parameter_source("batch_size") == click.core.ParameterSource.COMMANDLINE
    config = ProposerConfig(epochs=p["epochs"], batch_size=p["batch_size"] if given else ProposerConfig.batch_size,
                            lr=p["lr"] or ProposerConfig.lr, val_fraction=p["val_fraction"],
                            patience=p["patience"], seed=p["seed"], device=p["device"], augment=not p["no_augment"],
                            threads=p["threads"], max_minutes=p["max_minutes"], init=p["init_model"],
                            model_type=p["model_type"], negatives=p["negatives"], masks=p["masks"],
                            width=p["proposer_width"], crop=p["crop"], coarsen=p["coarsen"],
                            texture=p["texture"], region_score=p["region_score"])

    def on_epoch(r):
        if not quiet:
            tqdm.write(f"epoch {r['epoch']}: loss {r['loss']:.3f}" + (
                f", val box F1 {r['f1']:.3f} at {r['score_threshold']:g}" if "f1" in r else "") + f", {r['seconds']:.0f} s")

    result = train_proposer(list(datasets), output, config, val_datasets=list(val_datasets), recipe=dict(p),
                            on_epoch=on_epoch)
    v = result.card.validation
    summary = f"val box F1 {v['f1']:.3f}, best epoch {v['best_epoch']}" if "f1" in v else "no validation tiles"
    if "mask_threshold" in result.card.proposer:
        summary += f", its own ship regions above {result.card.proposer['mask_threshold']:g}"
    click.echo(f"{output}: native proposer on {result.card.model_type} SAM ({result.card.proposer['sam_from']}), "
               f"{result.card.training['epochs']} epochs, {summary}")
