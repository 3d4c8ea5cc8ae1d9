"""Label efficiency on sen2ships (GitHub issue #8, part 3): how many labelled ships does adapting a model to
Sentinel-2 need?

    .venv/bin/python benchmarks/label_efficiency.py [--train-scenes busan] [--test-scenes algiers,cartagena]
        [--ks 1,5,20,all] [--methods oneshot,fewshot,full] [--draws 2] [--draws-large 1] [--epochs 3] [--base-epochs 4]
        [--negatives 0.5|N|every] [--balanced] [--fewshot-epochs E] [--threads 1] [--out DIR] [--quick]

The base model has never seen Sentinel-2: a sam_tiny trained from random initialisation on synthetic Sentinel-2-like
harbours only (what ``shipseg synth --bands s2 --crs EPSG:3857`` writes; the scenes sen2ships.synthetic makes:
1024 px, 90 ships), prepared like the default recipe (scripts/train_default.sh: bands B04,B03,B02, 64 px tiles, 8 px
overlap; batch 8, lr 2e-3, 5 % of the empty tiles per epoch), without validation (threshold 0.3, the last epoch).
It is trained once and cached in OUT/models/ (the recipe is in its file name).

From it, three methods adapt with k labelled ships of the TRAINING scene(s), and every model is scored on the TEST
scenes (never seen by any model) with ``score_scene``, the code behind ``shipseg evaluate``: F1 at IoU 0.5 (precision,
recall) pooled over the test ships, and the mean box-prompted mask IoU (the truth boxes as prompts).

- ``oneshot``: samgeo_ship.oneshot.personalise (what ``shipseg oneshot`` runs) with the k ships as reference ships.
- ``fewshot``: ``train(init=base, encoder="frozen")`` (mask decoder, prompt encoder and prompter; embedding cache) on a
  dataset that holds only the k ships (see below).
- ``full``: ``train(init=base, encoder="full")``, the whole model, on every ship of the training scene(s).

k = 0 is the base model itself. For k = all, fewshot is the frozen-encoder recipe on every ship of the training
scene(s), the same data as ``full``; oneshot takes every ship of the training scene with the most ships
(``personalise`` reads its references from one scene). ``--methods`` runs a subset (default: all three).

One training scene by default, busan (54 ships, the most of any sen2ships port). Detection tiles a scene by the
model's pixel size, which a training run takes from its data (the median of its scenes'; Web Mercator ground pixels
differ from port to port), so models trained on different scenes share no tile grid and hence no encodings at
scoring time (below); with one training scene the whole benchmark fits in about 30 minutes on one core. Several
training scenes (``--train-scenes a,b,c``) give the trainings more varied ships and water.

Draws. Draw d is a seeded permutation (seed, d) of every ship of the training scenes pooled, of which the first k are
labelled, so the k = 1 ship of a draw is among its k = 5 ships and so on (a learning curve per draw). k <= 5 is
drawn ``--draws`` times, larger k ``--draws-large`` times (once by default). fewshot trains on all k ships, wherever they are; oneshot takes those of
them that lie in the scene holding the most of the k (all k with one training scene), and its row reports how many
that was.

A dataset of k ships. Each training scene is prepared once with all its labels (sen2ships.prepared); the k-ship
dataset keeps (a) every tile holding a part of one of the k ships, with only those ships as instances, and (b) empty
tiles (no labelled ship at all) as negatives, ``--negatives`` per kept ship tile (at least MIN_NEGATIVES), drawn
with the seed. Other ships on a kept tile are not the user's labels, but they are ships: left in place they would
teach the prompter that a ship is background. So their pixels (grown by ERASE_GROW_PX) are erased to nodata (zero,
the GDAL mask cleared), as a user would mask out what they did not label; a chosen ship's own pixels are never
erased. Unlabelled ships elsewhere in the scene are not in the dataset at all. At k = all the scenes are labelled
whole, so every empty tile is a known negative and all of them are kept, as in the cross-validation's recipe
(benchmarks/sen2ships.py: frozen encoder, every shipless tile each epoch). With ``--balanced`` a k < all training
instead holds every empty tile of the scenes holding the k ships and draws a fresh ``--negatives`` N per ship tile of
them each epoch (``shipseg train --negative-ratio N``); it validates on the fixed N-per-ship-tile dataset above.

Training without held-out labels. A user with k labels has nothing to validate on but those labels, so every
adaptation validates on its own training dataset: the best epoch (mask IoU) and the prompter's score threshold
(centre F1 over SCORE_GRID) come from the labelled tiles. Few-shot runs are lengthened to at least
``--fewshot-steps`` optimiser steps (one ship is one step per epoch); patience never stops them. Each training run
gets a fresh embedding cache, so its time includes encoding its own tiles.

Scoring cost. All models but ``full`` keep the base model's image encoder, and encoding is ~85 % of detection on one
CPU core, so the scoring wraps each model's ``encode`` in a memo keyed by the encoder's weight hash and the exact
model input: a tile is encoded once per (encoder, tile grid) and the figures are those ``shipseg evaluate`` gives.
Models are scored grouped by (encoder, pixel size, tile size, overlap); the memo is emptied between groups. A
oneshot model that predicts more than FLOOD_PER_SHIP times a test scene's ships is stopped there (see score_runs):
its F1 and precision are reported as upper bounds.

Writes OUT/results.json, OUT/results.md and OUT/label_efficiency.png (F1 against labelled ships, log x; with
matplotlib when it is installed, else with Pillow), each atomically. Prepared datasets and synthetic scenes are
cached in OUT/cache/ (as benchmarks/sen2ships.py caches them), the models kept in OUT/models/."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE)]

from sen2ships import DATA, ROOT, moored, prepared, scene_files, summarise, synthetic  # noqa: E402

from samgeo_ship import metrics  # noqa: E402
from samgeo_ship.atomic import atomic_dir, atomic_file  # noqa: E402
from samgeo_ship.inference.evaluate import score_scene  # noqa: E402
from samgeo_ship.labels import load_labels  # noqa: E402
from samgeo_ship.models.bundle import load_bundle  # noqa: E402
from samgeo_ship.oneshot.personalise import personalise  # noqa: E402
from samgeo_ship.raster import Scene  # noqa: E402
from samgeo_ship.training import TrainConfig, train  # noqa: E402
from samgeo_ship.training.cache import encoder_sha256  # noqa: E402
from samgeo_ship.training.checkpoint import checkpoint_path  # noqa: E402

NEG_PER_POSITIVE = 0.5  # empty tiles kept per tile holding a labelled ship (--negatives' default)
MIN_NEGATIVES = 2
ERASE_GROW_PX = 1  # unlabelled ships on a kept tile are erased with this margin
METHODS = ("oneshot", "fewshot", "full")
SMALL_K = 5  # k up to this is drawn --draws times
FLOOD_PER_SHIP = 5  # oneshot detection on a test scene stops past this many predicted ships per truth ship


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--train-scenes", default="busan", help="where labelled ships come from [%(default)s]")
    p.add_argument("--test-scenes", default="algiers,cartagena", help="scored, never trained on [%(default)s]")
    p.add_argument("--ks", default="1,5,20,all", help="numbers of labelled ships; 'all' = every ship [%(default)s]")
    p.add_argument("--methods", default=",".join(METHODS), help="adaptations to run and score [%(default)s]")
    p.add_argument("--negatives", default=str(NEG_PER_POSITIVE), metavar="N|every",
                   help="empty tiles in a k < all ship dataset: N per tile holding one of the k ships, or every empty "
                        "tile of the scenes holding them [%(default)s]")
    p.add_argument("--balanced", action="store_true",
                   help="few-shot trainings hold every empty tile of the scenes holding the k ships and draw a fresh "
                        "--negatives N per ship tile of them each epoch; they validate on a fixed N per ship tile")
    p.add_argument("--draws", type=int, default=2, help=f"draws of k ships for k <= {SMALL_K} [%(default)s]")
    p.add_argument("--draws-large", type=int, default=1, help=f"draws of k ships for k > {SMALL_K} [%(default)s]")
    p.add_argument("--first-draw", type=int, default=0,
                   help="number the draws from this one, e.g. to add draw 1 to an earlier run [%(default)s]")
    p.add_argument("--epochs", type=int, default=3, help="epochs of the trainings on all ships [%(default)s]")
    p.add_argument("--fewshot-steps", type=int, default=40,
                   help="few-shot trainings run at least this many optimiser steps [%(default)s]")
    p.add_argument("--fewshot-epochs", type=int, default=None,
                   help="epochs of the k < all few-shot trainings [at least --epochs and --fewshot-steps]")
    p.add_argument("--base", type=Path, default=None, metavar="BUNDLE",
                   help="use this base model (it must never have seen sen2ships, e.g. "
                        "benchmarks/models/synthetic_base.safetensors) instead of training one [train one]")
    p.add_argument("--base-epochs", type=int, default=4, help="[%(default)s]")
    p.add_argument("--base-scenes", type=int, default=2, help="synthetic harbours for the base model [%(default)s]")
    p.add_argument("--batch-size", type=int, default=8, help="[%(default)s]")
    p.add_argument("--base-lr", type=float, default=2e-3, help="the base model's peak lr [%(default)s]")
    p.add_argument("--lr", type=float, default=1e-3, help="peak lr of the adaptations [%(default)s]")
    p.add_argument("--seed", type=int, default=0, help="[%(default)s]")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU cores (torch threads and the process's CPU affinity) [%(default)s]")
    p.add_argument("--data", type=Path, default=DATA, help="the sen2ships folder [%(default)s]")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "label_efficiency",
                   help="[%(default)s]")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run of this script: 1 synthetic scene, 1 epoch each, k 1 and all, one draw, the "
                        "first test scene")
    args = p.parse_args(argv)
    if args.base and not args.base.is_file():
        p.error(f"--base {args.base}: no such model bundle")
    args.train_scenes = args.train_scenes.split(",")
    args.test_scenes = args.test_scenes.split(",")
    args.methods = args.methods.split(",")
    try:
        args.negatives = math.inf if args.negatives == "every" else float(args.negatives)
    except ValueError:
        args.negatives = -1.0
    if not args.negatives >= 0:  # also NaN
        p.error("--negatives takes a number of empty tiles per ship tile (>= 0) or 'every'")
    if args.balanced and not 0 < args.negatives < math.inf:
        p.error("--balanced draws --negatives N per ship tile each epoch: N must be a number above 0")
    if args.fewshot_epochs is not None and args.fewshot_epochs < 1:
        p.error("--fewshot-epochs takes a number of epochs >= 1")
    if set(args.methods) - set(METHODS):
        p.error(f"--methods takes {', '.join(METHODS)}")
    if set(args.train_scenes) & set(args.test_scenes):
        p.error("a scene cannot be both a training and a test scene")
    try:
        args.ks = sorted({int(k) for k in args.ks.split(",") if k != "all"}) + (["all"] if "all" in args.ks else [])
    except ValueError:
        p.error("--ks takes numbers and 'all', e.g. 1,5,20,all")
    if args.quick:
        args.base_scenes, args.base_epochs, args.epochs, args.fewshot_steps = 1, 1, 1, 4
        args.ks, args.draws, args.test_scenes = [1, "all"], 1, args.test_scenes[:1]
    # sen2ships.prepared / synthetic read these
    args.bands, args.tile_size, args.overlap = "B04,B03,B02", 64, 8
    return args


# ---- data --------------------------------------------------------------------------------------------------------
def ship_table(dataset: Path) -> gpd.GeoSeries:
    """Every ship of a prepared dataset (ship_id -> whole polygon in the scene CRS), as its instances list them."""
    inst = gpd.read_parquet(dataset / "instances.parquet")
    return inst.drop_duplicates("ship_id").set_index("ship_id").geometry.sort_index()


def grow(mask: np.ndarray, px: int) -> np.ndarray:
    """``mask`` dilated by ``px`` pixels (8-connected)."""
    for _ in range(px):
        m = mask.copy()
        m[1:] |= mask[:-1]
        m[:-1] |= mask[1:]
        m[:, 1:] |= m[:, :-1].copy()
        m[:, :-1] |= m[:, 1:].copy()
        mask = m
    return mask


def labelled_subset(dataset: Path, ship_ids, out: Path, rng: np.random.Generator, negatives: float) -> dict:
    """Write ``out``: the dataset of ``dataset`` restricted to the ships ``ship_ids`` (module docstring: kept ship
    tiles with the other ships erased, plus empty tiles as negatives: ``negatives`` per ship tile, at least
    MIN_NEGATIVES; every one when it is inf). Unchanged chips are links to the original."""
    inst = gpd.read_parquet(dataset / "instances.parquet")
    chosen = {int(s) for s in ship_ids}
    tiles = sorted(p.stem for p in (dataset / "images").glob("*.tif"))
    by_tile = inst.groupby("tile")["ship_id"].apply(set)
    positive = [t for t in tiles if t in by_tile.index and by_tile[t] & chosen]
    empty = [t for t in tiles if t not in by_tile.index]
    n_neg = len(empty) if math.isinf(negatives) else min(len(empty), max(MIN_NEGATIVES, round(negatives * len(positive))))
    negative = sorted(rng.choice(empty, n_neg, replace=False).tolist()) if n_neg else []
    link = lambda tmp, sub, t: (tmp / sub / f"{t}.tif").symlink_to((dataset / sub / f"{t}.tif").resolve())
    rows, erased_tiles, erased_ships = [], 0, set()
    with atomic_dir(out, overwrite=True) as tmp:
        for sub in ("images", "masks"):
            (tmp / sub).mkdir()
        for t in positive:
            here = inst[inst["tile"] == t].sort_values("instance")
            keep, other = here[here["ship_id"].isin(chosen)], here[~here["ship_id"].isin(chosen)]
            with rasterio.open(dataset / "masks" / f"{t}.tif") as src:
                raster, mask_profile = src.read(1), src.profile
            relabelled = np.zeros_like(raster)
            for new, old in enumerate(keep["instance"], start=1):
                relabelled[raster == old] = new
            with rasterio.open(tmp / "masks" / f"{t}.tif", "w", **mask_profile) as dst:
                dst.write(relabelled, 1)
                dst.set_band_description(1, "instance")
            if len(other):
                hide = grow(np.isin(raster, other["instance"].to_numpy()), ERASE_GROW_PX) & (relabelled == 0)
                with rasterio.open(dataset / "images" / f"{t}.tif") as src:
                    chip, valid, profile, names = src.read(), src.dataset_mask() > 0, src.profile, src.descriptions
                chip[:, hide] = 0
                with rasterio.open(tmp / "images" / f"{t}.tif", "w", **profile) as dst:
                    dst.write(chip)
                    for i, name in enumerate(names, start=1):
                        if name:
                            dst.set_band_description(i, name)
                    dst.write_mask((valid & ~hide).astype(np.uint8) * 255)
                erased_tiles += 1
                erased_ships.update(int(s) for s in other["ship_id"])
            else:
                link(tmp, "images", t)
            rows.append(keep.assign(instance=np.arange(1, len(keep) + 1)))
        for t in negative:
            link(tmp, "images", t)
            link(tmp, "masks", t)
        index = gpd.GeoDataFrame(pd.concat(rows, ignore_index=True), geometry="geometry", crs=inst.crs)
        index.to_parquet(tmp / "instances.parquet")
        card = json.loads((dataset / "dataset.json").read_text())
        summary = {"ship_tiles": len(positive), "negative_tiles": len(negative), "ships": len(chosen),
                   "instances": len(index), "erased_tiles": erased_tiles, "erased_ships": len(erased_ships)}
        card["summary"] = {**card["summary"], "tiles": len(positive) + len(negative), "ships": len(chosen)}
        card["subset"] = {"of": str(dataset), "ship_ids": sorted(chosen), **summary}
        (tmp / "dataset.json").write_text(json.dumps(card, indent=2))
    return summary


def write_ships(ships: gpd.GeoSeries, path: Path) -> Path:
    """The chosen ships as a GeoPackage in the scene CRS (the reference labels of oneshot)."""
    frame = gpd.GeoDataFrame({"ship_id": ships.index.to_numpy()}, geometry=ships.to_numpy(), crs=ships.crs)
    with atomic_file(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # GDAL would like the temporary name to end in .gpkg
        frame.to_file(tmp, driver="GPKG", layer="ships")
    return path


# ---- models ------------------------------------------------------------------------------------------------------
def base_model(args) -> tuple[Path, dict]:
    """The synthetic-only base model, trained once and cached (its recipe is in the file name), or ``--base``;
    (path, info)."""
    if args.base:
        card = load_bundle(args.base)[1]
        return args.base, {"given": str(args.base), "scenes": card.training.get("datasets", []),
                           "epochs": card.training["epochs"], "steps": card.training["steps"],
                           "ships": card.training["ships"]["train"], "threshold": card.thresholds["score"],
                           "cached": True}
    path = args.out / "models" / f"base_syn{args.base_scenes}_e{args.base_epochs}_s{args.seed}.safetensors"
    info_path = path.with_suffix(".json")
    if path.exists() and info_path.exists():
        return path, {**json.loads(info_path.read_text()), "cached": True}
    sets = synthetic(args.base_scenes, args)
    print(f"base: training sam_tiny from random init on {len(sets)} synthetic harbour(s), {args.base_epochs} epochs",
          flush=True)
    config = TrainConfig(model_type="sam_tiny", epochs=args.base_epochs, batch_size=args.batch_size, lr=args.base_lr,
                         val_fraction=0.0, seed=args.seed, device="cpu", negatives=0.05, threads=args.threads)
    started = time.perf_counter()
    result = train(sets, path, config, on_epoch=report_epoch)
    info = {"seconds": round(time.perf_counter() - started, 1), "scenes": [s.name for s in sets],
            "epochs": args.base_epochs, "steps": result.card.training["steps"],
            "ships": result.card.training["ships"]["train"], "threshold": result.card.thresholds["score"]}
    checkpoint_path(path).unlink(missing_ok=True)
    with atomic_file(info_path) as tmp:
        Path(tmp).write_text(json.dumps(info, indent=1))
    return path, {**info, "cached": False}


def base_sentence(base: dict, a: dict) -> str:
    """How the base model was made, for the report."""
    if base.get("given"):
        names = ", ".join(Path(d["scene"]).stem for d in base["scenes"] if d.get("role") == "train")
        return (f"Base: {Path(base['given']).name}, sam_tiny trained from random initialisation on synthetic "
                f"harbours only ({names}; {base['ships']} ships), {base['epochs']} epochs ({base['steps']} steps).")
    return (f"Base: sam_tiny trained from random initialisation on {a['base_scenes']} synthetic Sentinel-2 "
            f"harbour(s) ({base['ships']} ships), {a['base_epochs']} epochs ({base['steps']} steps), "
            f"{base['seconds']:.0f} s{' (cached from an earlier run)' if base['cached'] else ''}.")


def report_epoch(r: dict) -> None:
    print(f"    epoch {r['epoch']}: loss {r['loss']:.3f}, train IoU {fmt(r['train_iou'])} ({r['seconds']:.0f} s)",
          flush=True)


def train_on(datasets: list[Path], base: Path, output: Path, encoder: str, epochs: int, args,
             ratio: float | None = None, val: list[Path] | None = None) -> dict:
    """init=base training on ``datasets``, validating on them (no held-out labels) or on ``val`` (a subset of their
    tiles); every empty tile each epoch, or a fresh ``ratio`` per ship tile (TrainConfig.negative_ratio). The fresh
    embedding cache is removed afterwards. Returns what the card says about the run."""
    tiles = sum(len(list((d / "images").glob("*.tif"))) for d in datasets)
    cache = args.out / "cache" / "embeddings" / output.stem
    shutil.rmtree(cache, ignore_errors=True)
    config = TrainConfig(model_type="sam_tiny", init=str(base), encoder=encoder, epochs=epochs,
                         batch_size=args.batch_size, lr=args.lr, patience=epochs, seed=args.seed, device="cpu",
                         negative_ratio=ratio, threads=args.threads, cache_dir=str(cache))
    try:
        result = train(datasets, output, config, val_datasets=val or datasets)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        checkpoint_path(output).unlink(missing_ok=True)
    card = result.card
    return {"tiles": tiles, "epochs": epochs, "steps": card.training["steps"],
            "best_epoch": card.training["best_epoch"], "train_mask_iou": card.validation.get("mask_iou"),
            "threshold": card.thresholds["score"]}


def fewshot_epochs(tiles: int, args) -> int:
    return max(args.epochs, math.ceil(args.fewshot_steps / math.ceil(tiles / args.batch_size)))


def draws(args, ships: dict) -> list[dict]:
    """The labelled-ship draws: {"k", "draw", "ships": {scene: [ship_id, ...]}} for every k < all. Draw d is a
    seeded permutation (seed, d) of every ship of the training scenes, pooled in ``--train-scenes`` order; its first
    k are labelled, so the k = 1 ship of a draw is among its k = 5 ships and so on (a learning curve per draw)."""
    pool = [(s, int(i)) for s in args.train_scenes for i in ships[s].index]
    out = []
    for k in [k for k in args.ks if k != "all"]:
        for d in range(args.first_draw, args.first_draw + (args.draws if k <= SMALL_K else args.draws_large)):
            order = np.random.default_rng([args.seed, d]).permutation(len(pool))
            chosen = [pool[j] for j in order[:k]]
            out.append({"k": k, "draw": d, "ships": {s: [i for t, i in chosen if t == s]
                                                     for s in args.train_scenes if any(t == s for t, _ in chosen)}})
    return out


def oneshot_scene(p: dict) -> str:
    """The scene a oneshot run takes its references from: ``personalise`` reads one scene, so the draw's scene
    holding the most of its ships (the first such in ``--train-scenes`` order)."""
    return max(p["ships"], key=lambda s: len(p["ships"][s]))


def adapt(args, base: Path, sets: dict, ships: dict) -> list[dict]:
    """Every adaptation run of ``--methods`` with its model and adaptation time; nothing scored yet."""
    runs = []
    models, work = args.out / "models", args.out / "cache" / "labelled"
    plan = draws(args, ships)
    if "all" in args.ks:
        # oneshot on every ship of the training scene with the most ships (personalise reads one scene)
        most = max(args.train_scenes, key=lambda s: len(ships[s]))
        plan.append({"k": "all", "draw": 0, "ships": {most: [int(i) for i in ships[most].index]}})
    for p in plan:
        tag = f"k{p['k']}_d{p['draw']}" + ("" if args.negatives == NEG_PER_POSITIVE and not args.balanced else
                                              "_negevery" if math.isinf(args.negatives) else f"_neg{args.negatives:g}")
        tag += ("b" if args.balanced else "") + (f"_e{args.fewshot_epochs}" if args.fewshot_epochs else "")
        if "oneshot" in args.methods:
            scene_name = oneshot_scene(p)
            ids = p["ships"][scene_name]
            refs = write_ships(ships[scene_name].loc[ids], work / f"{tag}_{scene_name}.gpkg")
            t0 = time.perf_counter()
            result = personalise(scene_files(args.data, scene_name)[0], refs, base,
                                 models / f"oneshot_{tag}.safetensors", device="cpu", threads=args.threads)
            seconds = time.perf_counter() - t0
            runs.append({"method": "oneshot", "k": p["k"], "draw": p["draw"], "scene": scene_name,
                         "ship_ids": {scene_name: ids}, "labelled": len(ids), "model": str(result.path),
                         "seconds": round(seconds, 1), "threshold": result.similarity["threshold"],
                         "reference_mask_iou": result.fit.iou,
                         "reference_tiles": result.card.oneshot["reference_tiles"]})
            print(f"  oneshot k={p['k']} draw {p['draw']} ({scene_name}, {len(ids)} ships): {seconds:.1f} s, "
                  f"similarity threshold {result.similarity['threshold']:.3f}", flush=True)
        if p["k"] == "all" or "fewshot" not in args.methods:
            continue
        t0 = time.perf_counter()
        n = sum(len(ids) for ids in p["ships"].values())
        subsets, summary = labelled_subsets(sets, p["ships"], work, tag, args, p["draw"], args.negatives)
        ratio, val = None, None
        if args.balanced:  # train on every empty tile, a fresh N per ship tile each epoch; validate on the fixed N
            ratio, val = args.negatives, subsets
            subsets, every = labelled_subsets(sets, p["ships"], work, tag + "_every", args, p["draw"], math.inf)
            summary = {**summary, "empty_tiles_drawn_from": every["negative_tiles"]}
        epochs = args.fewshot_epochs or fewshot_epochs(summary["ship_tiles"] + summary["negative_tiles"], args)
        run = train_on(subsets, base, models / f"fewshot_{tag}.safetensors", "frozen", epochs, args, ratio, val)
        seconds = time.perf_counter() - t0
        runs.append({"method": "fewshot", "k": p["k"], "draw": p["draw"], "scene": ",".join(p["ships"]),
                     "ship_ids": p["ships"], "labelled": n, "model": str(models / f"fewshot_{tag}.safetensors"),
                     "seconds": round(seconds, 1), "dataset": summary, **run})
        print(f"  fewshot k={p['k']} draw {p['draw']} ({', '.join(f'{s} {len(i)}' for s, i in p['ships'].items())}"
              f" ships; {summary['ship_tiles']} ship tiles, {summary['negative_tiles']} negatives"
              + (f" a fresh draw each epoch of {summary['empty_tiles_drawn_from']}" if args.balanced else "") + ", "
              f"{summary['erased_ships']} unlabelled ships erased): {epochs} epochs, {seconds:.1f} s, threshold "
              f"{run['threshold']:g}", flush=True)
    trainings = [(m, e) for m, e in (("fewshot", "frozen"), ("full", "full")) if m in args.methods]
    if "all" in args.ks and trainings:
        everything = {s: [int(i) for i in ships[s].index] for s in args.train_scenes}
        n = sum(len(ids) for ids in everything.values())
        t0 = time.perf_counter()
        subsets, summary = labelled_subsets(sets, everything, work, "all", args, 0, math.inf)
        tiles = summary["ship_tiles"] + summary["negative_tiles"]
        prep = time.perf_counter() - t0
        for method, encoder in trainings:
            epochs = fewshot_epochs(tiles, args) if method == "fewshot" else args.epochs
            model = models / f"{method}_all.safetensors"
            t0 = time.perf_counter()
            run = train_on(subsets, base, model, encoder, epochs, args)
            seconds = time.perf_counter() - t0 + prep
            runs.append({"method": method, "k": "all", "draw": 0, "scene": ",".join(args.train_scenes),
                         "ship_ids": everything, "labelled": n, "model": str(model), "encoder": encoder,
                         "seconds": round(seconds, 1), "dataset": summary, **run})
            print(f"  {method} (encoder {encoder}) on all {n} ships ({tiles} tiles): {epochs} epochs, {seconds:.0f} s, "
                  f"threshold {run['threshold']:g}", flush=True)
    return runs


def labelled_subsets(sets: dict, chosen: dict, work: Path, tag: str, args, draw: int,
                     negatives: float) -> tuple[list, dict]:
    """``labelled_subset`` of every training scene holding chosen ships: (dataset paths, their summaries summed)."""
    subsets, summaries = [], []
    n = sum(len(ids) for ids in chosen.values())
    for s, ids in chosen.items():
        subsets.append(work / f"{tag}_{s}")
        summaries.append(labelled_subset(sets[s], ids, subsets[-1], np.random.default_rng([args.seed, 1, n, draw]),
                                         negatives))
    return subsets, {k: sum(x[k] for x in summaries) for k in summaries[0]}


# ---- scoring -----------------------------------------------------------------------------------------------------
class EncodeMemo:
    """Wraps a model's ``encode`` so that an input it has seen (same encoder weights, same bytes) is not encoded
    again. Results equal the plain ``encode``'s: a tile's embedding is the one its first batch gave."""

    def __init__(self):
        self.store: dict[str, torch.Tensor] = {}
        self.hits = self.misses = 0

    def wrap(self, net) -> None:
        encode, tag = net.encode, encoder_sha256(net.sam)

        def memo_encode(images: torch.Tensor) -> torch.Tensor:
            keys = [tag + hashlib.blake2b(x.detach().cpu().numpy().tobytes(), digest_size=16).hexdigest()
                    for x in images]
            missing = [i for i, key in enumerate(keys) if key not in self.store]
            if missing:
                fresh = encode(images if len(missing) == len(keys) else images[missing])
                for i, emb in zip(missing, fresh):
                    self.store[keys[i]] = emb.clone()
            self.hits += len(keys) - len(missing)
            self.misses += len(missing)
            return torch.stack([self.store[key] for key in keys])

        net.encode = memo_encode


class Flooded(Exception):
    """Detection on a test scene passed FLOOD_PER_SHIP times its truth ships (see score_runs)."""


def stop_above(limit: int):
    """A detect progress callback that stops detection once more than ``limit`` ships were found."""
    def progress(done, total, ships):
        if ships > limit:
            raise Flooded(ships)
    return progress


def score_runs(runs: list[dict], args) -> None:
    """Score every run's model on every test scene (``score_scene``), grouped so that models sharing an encoder and
    a tile grid share encodings; adds ``scenes`` and ``pooled`` (sen2ships.summarise) to each run.

    A oneshot model that finds more than FLOOD_PER_SHIP times a scene's truth ships there (a similarity threshold
    that passes most of the water does) is stopped, and not scored on the scenes after it: it decodes every
    similarity peak three times, and thousands of false ships would take longer than the rest of the benchmark.
    Its F1 and precision are then upper bounds (``flooded_scores``). ShipSam models are always scored in full: the
    prompter proposes at most 200 ships per tile, each decoded once (a base model predicting ~10x the truth ships
    scored a whole test scene in 40 s)."""
    truth_flags: dict[str, np.ndarray] = {}

    def group(run):
        net, card = load_bundle(run["model"])
        return (encoder_sha256(net.sam), card.pixel_size_m, card.tile_size, card.overlap)

    keyed = sorted(((group(r), i) for i, r in enumerate(runs)), key=lambda x: (str(x[0]), x[1]))
    memo, current = EncodeMemo(), None
    for key, i in keyed:
        if key != current:
            memo, current = EncodeMemo(), key
        run = runs[i]
        net, card = load_bundle(run["model"])
        memo.wrap(net)
        t0, hits, misses = time.perf_counter(), memo.hits, memo.misses
        scored, flooded = [], None
        for name in args.test_scenes:
            scene, labels = scene_files(args.data, name)
            guard = stop_above(FLOOD_PER_SHIP * truth_count(scene, labels)) if card.kind == "oneshot" else None
            try:
                score = score_scene((net, card), scene, labels, batch_size=args.batch_size, device="cpu",
                                    progress=guard)
            except Flooded as exc:
                flooded = {"scene": name, "predicted_at_stop": exc.args[0]}
                break
            if name not in truth_flags:
                truth_flags[name] = moored(scene, score.truth)
            scored.append((name, score, truth_flags[name]))
        run["scenes"] = {name: summarise([(s, f)]) for name, s, f in scored}
        if flooded:
            ships = lambda names: sum(truth_count(*scene_files(args.data, n)) for n in names)
            rest = args.test_scenes[len(scored) + 1:]
            run["pooled"] = flooded_scores([s for _, s, _ in scored], flooded["predicted_at_stop"],
                                           ships([flooded["scene"]]), ships(rest))
            run["flooded"] = {**flooded, "not_scored": rest}
        else:
            run["pooled"] = summarise([(s, f) for _, s, f in scored])
        run["score_seconds"] = round(time.perf_counter() - t0, 1)
        run["tiles_encoded"], run["tiles_reused"] = memo.misses - misses, memo.hits - hits
        r = run["pooled"]
        print(f"  {run['method']} k={run['k']} draw {run['draw']}: "
              + (f"FLOODED on {flooded['scene']}: F1 <= {fmt(r['f1_bound'])}" if flooded else
                 f"P {fmt(r['precision'])} R {fmt(r['recall'])} F1 {fmt(r['f1'])} mask IoU "
                 f"{fmt(r['box_prompt_iou'])} ({r['tp']}/{r['ships']} found, {r['predicted']} predicted")
              + f"; {run['score_seconds']:.0f} s, {run['tiles_encoded']} tiles encoded, {run['tiles_reused']} reused)",
              flush=True)


_TRUTH: dict = {}


def truth_count(scene: Path, labels: Path) -> int:
    """The number of truth ships of a test scene (as score_scene loads them)."""
    if labels not in _TRUTH:
        with Scene.open(scene) as s:
            _TRUTH[labels] = len(load_labels(labels, s).ships)
    return _TRUTH[labels]


def flooded_scores(scored: list, stopped_at: int, flooded_ships: int, rest_ships: int) -> dict:
    """Pooled bounds for a run stopped on a flooded scene (``flooded_ships`` truth ships, ``stopped_at`` predicted
    when stopped): at best every ship of that scene and of the test scenes after it (``rest_ships``, not scored)
    was found, and nothing false was predicted after the stop or on the scenes not scored."""
    m = metrics.pool([s.matching for s in scored]) if scored else metrics.Matching(0, 0)
    tp = m.tp + flooded_ships + rest_ships
    pred = m.n_pred + stopped_at + rest_ships
    ships = m.n_truth + flooded_ships + rest_ships
    return {"flooded": True, "ships": ships, "predicted_at_least": m.n_pred + stopped_at, "f1": None,
            "precision": None, "recall": None, "box_prompt_iou": None, "box_baseline_iou": None,
            "f1_bound": 2 * tp / (pred + ships), "precision_bound": tp / pred}


# ---- report ------------------------------------------------------------------------------------------------------
def fmt(v, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def aggregate(runs: list[dict]) -> list[dict]:
    """One row per (method, k): the mean over draws of the pooled test scores and of the adaptation time. A flooded
    draw (score_runs) counts with its F1 and precision bounds; recall and mask IoU are then the means over the
    other draws."""
    rows = []
    order = {m: i for i, m in enumerate(("base",) + METHODS)}
    kkey = lambda k: (1, 0) if k == "all" else (0, k)
    for (method, k) in sorted({(r["method"], r["k"]) for r in runs}, key=lambda x: (order[x[0]], kkey(x[1]))):
        these = [r for r in runs if r["method"] == method and r["k"] == k]
        value = lambda r, key: r["pooled"].get(key + "_bound") if r["pooled"].get("flooded") else r["pooled"][key]
        f1s = [value(r, "f1") for r in these]
        mean = lambda xs: float(np.mean(xs)) if xs and all(x is not None for x in xs) else None
        ok = [r for r in these if not r["pooled"].get("flooded")]
        rows.append({"method": method, "k": k, "draws": len(these), "flooded": len(these) - len(ok),
                     "labelled": float(np.mean([r["labelled"] for r in these])),
                     "f1": mean(f1s), "f1_min": min(f1s), "f1_max": max(f1s),
                     "precision": mean([value(r, "precision") for r in these]),
                     "recall": mean([r["pooled"]["recall"] for r in ok]),
                     "mask_iou": mean([r["pooled"]["box_prompt_iou"] for r in ok]),
                     "seconds": float(np.mean([r["seconds"] for r in these]))})
    return rows


def markdown(result: dict) -> str:
    a, base = result["args"], result["base"]
    lines = ["| method | labelled ships | draws | F1 @ IoU 0.5 | precision | recall | box-prompt mask IoU | "
             "adaptation s |", "|---|---|---|---|---|---|---|---|"]
    for r in result["table"]:
        k = "0 (base)" if r["method"] == "base" else (f"all ({r['labelled']:g})" if r["k"] == "all" else str(r["k"]))
        if r["k"] != "all" and r["labelled"] != r["k"]:
            k += f" ({r['labelled']:g} used)"
        bound = "≤ " if r["flooded"] else ""
        f1 = bound + fmt(r["f1"]) + (f" ({fmt(r['f1_min'], 2)}-{fmt(r['f1_max'], 2)})" if r["draws"] > 1 else "")
        draws = f"{r['draws']}" + (f" ({r['flooded']} flooded)" if r["flooded"] else "")
        seconds = "-" if r["method"] == "base" else f"{r['seconds']:.0f}"
        lines.append(f"| {r['method']} | {k} | {draws} | {f1} | {bound}{fmt(r['precision'])} | {fmt(r['recall'])} | "
                     f"{fmt(r['mask_iou'])} | {seconds} |")
    base_run = next(r for r in result["runs"] if r["method"] == "base")
    ships = base_run["pooled"]["ships"]
    filled = next((r["pooled"]["box_baseline_iou"] for r in result["runs"] if r["pooled"].get("box_baseline_iou")),
                  None)
    return "\n".join([
        "# Label efficiency on sen2ships", "",
        base_sentence(base, a) + " Labelled ships from "
        f"{', '.join(a['train_scenes'])}; scored on {', '.join(a['test_scenes'])} ({ships} ships, pooled). "
        f"Bands B04,B03,B02, 64 px tiles, 8 px overlap; {a['threads']} thread(s), seed {a['seed']}.", "",
        *lines, "",
        "F1: mean over draws (min-max). oneshot: PerSAM-F personalisation of the base (SAM frozen); fewshot: "
        "init=base, frozen encoder (decoder + prompter), "
        + (f"{a['fewshot_epochs']} epochs" if a.get('fewshot_epochs') else f"at least {a['fewshot_steps']} steps")
        + ", negatives below k = all: "
        + ("every empty tile of the scenes holding the k ships" if a['negatives'] == "every" else
           f"a fresh draw each epoch of {a['negatives']:g} per tile holding one of the k ships from every empty tile "
           "of their scenes (validated on a fixed such draw)" if a.get('balanced') else
           f"{a['negatives']:g} empty tiles per tile holding one of the k ships") + " (at k = all: every "
        "empty tile); full: init=base, "
        f"whole model, {a['epochs']} epochs. oneshot takes the draw's ships of one scene (the one holding most "
        "of them: '20 (7 used)'). "
        "Thresholds and best epochs come from the labelled tiles alone. Box-prompt mask IoU: the truth boxes as "
        f"prompts (the filled box itself scores {fmt(filled)}). Adaptation s: wall "
        "seconds of personalise / train (dataset building and tile encoding included) on one CPU core of a busy "
        f"machine. Flooded: oneshot detection stopped past {FLOOD_PER_SHIP}x a scene's truth ships (later test scenes "
        "not scored); F1 and precision are then upper bounds (≤), recall and mask IoU the other draws' means.", "",
        f"Wall time: {result['wall_seconds'] / 60:.1f} min (data {result['seconds']['data']:.0f} s, base "
        f"{result['seconds']['base']:.0f} s, adaptation {result['seconds']['adapt']:.0f} s, scoring "
        f"{result['seconds']['score']:.0f} s).", ""])


def plot(result: dict, path: Path) -> None:
    """F1 against labelled ships (log x), one line per method, the range over draws as a bar; the base as a dashed
    line; hollow markers where the value is an upper bound (a flooded draw)."""
    rows = [r for r in result["table"] if r["method"] != "base"]
    base = next(r for r in result["table"] if r["method"] == "base")
    series = [(m, [(r["labelled"], r["f1"], r["f1_min"], r["f1_max"], r["flooded"] > 0) for r in rows
                   if r["method"] == m]) for m in METHODS]
    series = [(m, pts) for m, pts in series if pts]
    title = f"Label efficiency: F1 @ IoU 0.5 on {', '.join(result['args']['test_scenes'])}"
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return _plot_pillow(series, base["f1"], title, path)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.axhline(base["f1"], color="grey", ls="--", label="base (0 ships)")
    for method, pts in series:
        x, y, lo, hi, bound = map(np.array, zip(*pts))
        line = ax.errorbar(x, y, yerr=[y - lo, hi - y], marker="o", capsize=3, label=method)
        if bound.any():
            ax.plot(x[bound], y[bound], "o", mfc="white", mec=line[0].get_color())
    ax.set_xscale("log")
    ax.set_xlabel("labelled ships (hollow: upper bound, detection flooded)")
    ax.set_ylabel("F1 @ IoU 0.5")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def _plot_pillow(series, base_f1: float, title: str, path: Path) -> None:
    """``plot`` with Pillow, for an environment without matplotlib (shipseg does not depend on it)."""
    from PIL import Image, ImageDraw

    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44)]
    w, h, left, right, top, bottom = 720, 440, 60, 20, 40, 70
    xmax = max(x for _, pts in series for x, *_ in pts) * 1.5
    lx = lambda x: left + (w - left - right) * math.log10(x / 0.8) / math.log10(xmax / 0.8)
    y = lambda v: top + (h - top - bottom) * (1 - v)
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    d.text((left, 12), title, fill="black")
    for v in (0, 0.2, 0.4, 0.6, 0.8, 1.0):
        d.line([(left, y(v)), (w - right, y(v))], fill=(225, 225, 225))
        d.text((20, y(v) - 6), f"{v:.1f}", fill="black")
    for x in (1, 2, 5, 10, 20, 50, 100, 200, 500):
        if x <= xmax:
            d.line([(lx(x), top), (lx(x), y(0))], fill=(235, 235, 235))
            d.text((lx(x) - 6, y(0) + 6), str(x), fill="black")
    d.text((left + 150, y(0) + 22), "labelled ships (log; hollow: upper bound, detection flooded)", fill="black")
    for x0 in range(left, w - right, 12):
        d.line([(x0, y(base_f1)), (x0 + 6, y(base_f1))], fill=(120, 120, 120), width=2)
    for c, (method, pts) in zip(colours, series):
        xy = [(lx(x), y(f)) for x, f, *_ in pts]
        if len(xy) > 1:
            d.line(xy, fill=c, width=2)
        for (px, py), (_, _, lo, hi, bound) in zip(xy, pts):
            d.line([(px, y(lo)), (px, y(hi))], fill=c, width=1)
            d.ellipse([px - 4, py - 4, px + 4, py + 4], fill="white" if bound else c, outline=c, width=2)
    legend = [("base (0 ships)", (120, 120, 120))] + [(m, c) for c, (m, _) in zip(colours, series)]
    for i, (label, c) in enumerate(legend):
        x0 = left + i * 150
        d.rectangle([x0, h - 22, x0 + 12, h - 10], fill=c)
        d.text((x0 + 16, h - 22), label, fill="black")
    with atomic_file(path) as tmp:
        img.save(tmp, format="PNG")


# ---- main --------------------------------------------------------------------------------------------------------
def main(argv=None) -> dict:
    args = parse_args(argv)
    # detect uses every core the process may run on, so the core count is set by affinity (the last cores: the
    # first ones are where other pinned benchmarks go).
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[-args.threads:])
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    (args.out / "models").mkdir(parents=True, exist_ok=True)
    (args.out / "cache" / "labelled").mkdir(parents=True, exist_ok=True)
    sets = {s: prepared(s, *scene_files(args.data, s), args) for s in args.train_scenes}
    ships = {s: ship_table(d) for s, d in sets.items()}
    for s in args.test_scenes:
        if not scene_files(args.data, s)[0].exists():
            raise SystemExit(f"Error: {scene_files(args.data, s)[0]}: no such scene")
    t_data = time.perf_counter()
    print(f"training scenes {', '.join(f'{s} ({len(ships[s])} ships)' for s in args.train_scenes)}; test scenes "
          f"{', '.join(args.test_scenes)} ({t_data - started:.0f} s)", flush=True)
    base, base_info = base_model(args)
    t_base = time.perf_counter()
    print(f"base model {base.name}: {base_sentence(base_info, vars(args))}", flush=True)
    print("adapting", flush=True)
    runs = [{"method": "base", "k": 0, "draw": 0, "scene": None, "ship_ids": [], "labelled": 0, "model": str(base),
             "seconds": 0.0}] + adapt(args, base, sets, ships)
    t_adapt = time.perf_counter()
    print("scoring", flush=True)
    score_runs(runs, args)
    t_score = time.perf_counter()
    shown = lambda v: str(v) if isinstance(v, Path) else "every" if v is math.inf else v
    result = {"args": {k: shown(v) for k, v in vars(args).items()}, "base": base_info,
              "table": aggregate(runs), "runs": runs,
              "seconds": {"data": round(t_data - started, 1), "base": round(t_base - t_data, 1),
                          "adapt": round(t_adapt - t_base, 1), "score": round(t_score - t_adapt, 1)},
              "wall_seconds": round(time.perf_counter() - started, 1)}
    text = markdown(result)
    with atomic_file(args.out / "results.md") as tmp:
        Path(tmp).write_text(text)
    with atomic_file(args.out / "results.json") as tmp:
        Path(tmp).write_text(json.dumps(result, indent=1))
    plot(result, args.out / "label_efficiency.png")
    print(text)
    return result


if __name__ == "__main__":
    main()
