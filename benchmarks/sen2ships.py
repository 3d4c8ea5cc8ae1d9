"""Leave-scenes-out cross-validation on the 9 sen2ships Sentinel-2 port scenes (GitHub issue #5).

    .venv/bin/python benchmarks/sen2ships.py [--folds 1,2,3] [--epochs N] [--synthetic N] [--quick] ...

Every fold starts from SYNTHETIC_BASE (--init), a sam_tiny trained on synthetic harbours only, so it has seen no
sen2ships scene, as a user starts from pretrained weights; --max-minutes bounds each fold's training so that the
three folds fit in an hour on 2 CPU cores.

Three folds of three test scenes each (FOLDS), one scene per latitude band (north of 40 deg N, 30-40 deg N, below
15 deg N) so that every fold mixes latitudes, climates and water colours. Each fold trains with the library's
``train()`` (what ``shipseg train`` runs) on the other six scenes less one VALIDATION scene, by default with the
image encoder frozen (embeddings cached) and every shipless tile in each epoch; the validation scene picks the best
epoch (mask IoU) and then the detection score threshold (the grid value with the highest F1 at IoU 0.5 on it; when
it finds no ship at any threshold, the training's threshold is kept). The test scenes are scored with
``score_scene``, the code behind ``shipseg evaluate``; the tuned bundle is kept in OUT/models/, so
``shipseg evaluate OUT/models/foldK.safetensors SCENE LABELS`` gives the same figures.

Per scene, per fold and overall (pooled over ships, not a mean of per-scene scores): precision, recall and F1 at
IoU 0.5; mean IoU of the matched ships; mean box-prompted mask IoU (the truth boxes as prompts) beside the
filled-box baseline; median relative length error of the matched ships; recall by ship size (metrics.size_class:
small < 100 px of area, medium 100-400 px, large > 400 px) and for moored ships (within 30 m of land) versus
ships at sea.

Land (land_mask): water is where NDWI = (B03 - B08) / (B03 + B08) > 0, i.e. green brighter than near infrared;
the truth ships, grown by one pixel, count as water (a hull is bright in B08 and would read as land); regions of
fewer than SIEVE_PX connected pixels of either class are then merged into their surroundings (rasterio sieve:
unlabelled boats, buoys and glint off land, shadows and ponds off water). A ship is moored when its polygon, grown
by 30 m on the ground, covers the centre of a land pixel.

Prepared datasets (one per scene and bands/tile/overlap) and synthetic scenes are cached under OUT/cache/ and
reused across folds and runs. Writes OUT/results.md, OUT/results.json and two plots, each atomically."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
from affine import Affine

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from rasterio.features import rasterize, sieve  # noqa: E402
from rasterio.windows import Window, from_bounds  # noqa: E402

from samgeo_ship import metrics  # noqa: E402
from samgeo_ship.atomic import atomic_dir, atomic_file  # noqa: E402
from samgeo_ship.dataset import prepare_dataset  # noqa: E402
from samgeo_ship.errors import ShipsegError  # noqa: E402
from samgeo_ship.inference.calibrate import calibrate  # noqa: E402
from samgeo_ship.inference.evaluate import score_scene  # noqa: E402
from samgeo_ship.bands import parse_bands  # noqa: E402
from samgeo_ship.raster import Scene  # noqa: E402
from samgeo_ship.synthetic import SynthSpec, make_scene  # noqa: E402
from samgeo_ship.training import TrainConfig, train  # noqa: E402
from samgeo_ship.training.modes import MODES  # noqa: E402

from _sen2ships_split import DATA, FOLDS, VALIDATION  # noqa: E402

MOORED_WITHIN_M = 30.0
SIEVE_PX = 100
PLACES = ("moored", "at sea")
SYNTH_SEED = 100
SYNTHETIC_BASE = ROOT / "benchmarks" / "models" / "synthetic_base.safetensors"  # scripts/train_synthetic_base.sh


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folds", default="1,2,3", help="which folds to run, 1-based [%(default)s]")
    p.add_argument("--epochs", type=int, default=30, help="[%(default)s]")
    p.add_argument("--tile-size", type=int, default=64, help="[%(default)s]")
    p.add_argument("--overlap", type=int, default=8, help="[%(default)s]")
    p.add_argument("--bands", default="B04,B03,B02", help="[%(default)s]")
    p.add_argument("--model-type", default="sam_tiny", help="[%(default)s]")
    p.add_argument("--batch-size", type=int, default=8, help="[%(default)s]")
    p.add_argument("--lr", type=float, default=1e-3, help="[%(default)s]")
    p.add_argument("--negatives", type=float, default=1.0, help="share of shipless tiles per epoch [%(default)s]")
    p.add_argument("--encoder", choices=MODES, default="frozen",
                   help="what training adapts of the image encoder (frozen: embeddings cached, so epochs are cheap) "
                        "[%(default)s]")
    p.add_argument("--patience", type=int, default=6, help="[%(default)s]")
    p.add_argument("--synthetic", type=int, default=0, metavar="N",
                   help="add N synthetic harbours (1024 px, 90 ships) to each fold's training set [%(default)s]")
    p.add_argument("--init", default=str(SYNTHETIC_BASE), metavar="BUNDLE|random",
                   help="start every fold from this model, which must never have seen sen2ships, or 'random' "
                        "for random weights [%(default)s]")
    p.add_argument("--max-minutes", type=float, default=11.0,
                   help="training budget per fold: stop after the first epoch past it, best epoch kept (0: none) "
                        "[%(default)s]")
    p.add_argument("--skip-train", action="store_true",
                   help="score the fold models already in OUT/models/ (e.g. trained elsewhere) instead of training")
    p.add_argument("--contrast-band", default=None, metavar="BAND",
                   help="also choose on the validation scene the least contrast of a ship against its water in this "
                        "band (shipseg calibrate --contrast-band), e.g. B08 [none]")
    p.add_argument("--seed", type=int, default=0, help="[%(default)s]")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads for training [%(default)s]")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--data", type=Path, default=DATA, help="the sen2ships folder [%(default)s]")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sen2ships", help="[%(default)s]")
    p.add_argument("--quick", action="store_true", help="a smoke run of this script: the first fold, 1 epoch")
    args = p.parse_args(argv)
    args.folds = [int(k) for k in args.folds.split(",")]
    args.init = None if args.init == "random" else args.init
    if args.init and not Path(args.init).is_file():
        p.error(f"--init {args.init}: no such model bundle")
    args.max_minutes = args.max_minutes or None
    if not all(1 <= k <= len(FOLDS) for k in args.folds):
        p.error(f"--folds takes numbers 1-{len(FOLDS)}")
    missing = [k for k in args.folds if not (args.out / "models" / f"fold{k}.safetensors").is_file()]
    if args.skip_train and missing:
        p.error(f"--skip-train: no fold model {args.out / 'models' / f'fold{missing[0]}.safetensors'}")
    if args.contrast_band:  # every validation scene needs it: fail now, not after a fold's training
        for name in VALIDATION:
            try:
                Scene.open(scene_files(args.data, name)[0], bands=[args.contrast_band]).close()
            except ShipsegError as exc:
                p.error(f"--contrast-band: {exc}")
    if args.quick:
        args.folds, args.epochs = args.folds[:1], 1
    return args


# ---- data --------------------------------------------------------------------------------------------------------
def scene_files(data: Path, name: str) -> tuple[Path, Path]:
    return data / name / "scene.tif", data / name / "labels.coco.json"


def cache_dir(args) -> Path:
    return args.out / "cache" / f"{args.bands.replace(',', '-')}_t{args.tile_size}_o{args.overlap}"


def prepared(name: str, scene: Path, labels: Path, args) -> Path:
    """The prepared dataset of one scene, made on first use and reused by every fold and later run."""
    out = cache_dir(args) / name
    if not (out / "dataset.json").exists():
        prepare_dataset(scene, labels, out, bands=parse_bands(args.bands), tile_size=args.tile_size,
                        overlap=args.overlap, overwrite=True)
    return out


def with_ships(dataset: Path) -> Path:
    """A view of a prepared dataset holding only its tiles with ships (links to the same chips), for validation
    during training. There it picks the best epoch by mask IoU, which only ships measure; the hundreds of empty
    tiles of a harbour scene cost about 80 s per validation pass (hedland, 2 cores) for nothing. The score
    threshold is tuned on the whole scene afterwards."""
    out = dataset.with_name(dataset.name + "-ships")
    if not (out / "dataset.json").exists():
        tiles = set(gpd.read_parquet(dataset / "instances.parquet")["tile"])
        with atomic_dir(out, overwrite=True) as tmp:
            for sub in ("images", "masks"):
                (tmp / sub).mkdir()
                for tile in tiles:
                    (tmp / sub / f"{tile}.tif").symlink_to((dataset / sub / f"{tile}.tif").resolve())
            for name in ("dataset.json", "instances.parquet"):
                shutil.copy(dataset / name, tmp / name)
    return out


def synthetic(n: int, args) -> list[Path]:
    """``n`` prepared synthetic harbours (Sentinel-2 bands, Web Mercator like sen2ships), cached."""
    out = []
    for seed in range(SYNTH_SEED, SYNTH_SEED + n):
        tif = args.out / "cache" / "synthetic" / f"syn{seed}.tif"
        if not tif.with_suffix(".geojson").exists():
            tif.parent.mkdir(parents=True, exist_ok=True)
            make_scene(SynthSpec(1024, 1024, bands="s2", crs="EPSG:3857", n_ships=90, seed=seed), tif)
        out.append(prepared(tif.stem, tif, tif.with_suffix(".geojson"), args))
    return out


# ---- land --------------------------------------------------------------------------------------------------------
def land_mask(scene_path: Path, ships) -> np.ndarray:
    """(H, W) bool land of a whole scene by the NDWI rule of the module docstring (sen2ships scenes are at most
    2201 px a side, so the benchmark reads them whole). A scene without green (los_angeles) finds its water by
    Otsu's threshold of B08 instead: water is dark in near infrared."""
    with Scene.open(scene_path) as scene:
        has_green = "B03" in scene.descriptions
    with Scene.open(scene_path, bands=["B03", "B08"] if has_green else ["B08"]) as scene:
        bands, valid = scene.read_raw(Window(0, 0, scene.width, scene.height))
        transform, one_px = scene.transform, scene.pixel_size[0]
    if has_green:
        water = bands[0].astype(np.int32) > bands[1].astype(np.int32)
    else:
        nir = bands[0].astype(np.float64)
        water = nir < otsu(nir[valid])
    if len(ships):
        water |= rasterize(ships.buffer(one_px), out_shape=water.shape, transform=transform, dtype=np.uint8) > 0
    water = sieve(water.astype(np.uint8), size=SIEVE_PX, connectivity=8) > 0
    return ~water & valid


def otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of ``values``: the cut that maximises the between-class variance of their histogram."""
    hist, edges = np.histogram(values, bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    s0 = np.cumsum(hist * centres)
    m0, m1 = s0 / np.maximum(w0, 1), (s0[-1] - s0) / np.maximum(w1, 1)
    return float(centres[np.argmax(w0 * w1 * (m0 - m1) ** 2)])


def moored(scene_path: Path, ships) -> np.ndarray:
    """(N,) bool per ship: within MOORED_WITHIN_M metres on the ground of a land pixel."""
    land = land_mask(scene_path, ships)
    with Scene.open(scene_path) as scene:
        transform = scene.transform
        reach = MOORED_WITHIN_M * scene.pixel_size[0] / scene.ground_pixel_size_m  # CRS units
    out = np.zeros(len(ships), bool)
    for k, geom in enumerate(ships.buffer(reach)):
        win = from_bounds(*geom.bounds, transform=transform).round_offsets().round_lengths()
        r0, c0 = max(int(win.row_off), 0), max(int(win.col_off), 0)
        r1, c1 = (min(int(off + size) + 1, n) for off, size, n in ((win.row_off, win.height, land.shape[0]),
                                                                   (win.col_off, win.width, land.shape[1])))
        near = rasterize([geom], out_shape=(r1 - r0, c1 - c0), transform=transform @ Affine.translation(c0, r0),
                         dtype=np.uint8) > 0
        out[k] = bool((near & land[r0:r1, c0:c1]).any())
    return out


# ---- one fold ----------------------------------------------------------------------------------------------------
def train_fold(k: int, train_sets: list[Path], val_set: Path, args) -> Path:
    path = args.out / "models" / f"fold{k}.safetensors"
    if args.skip_train:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    config = TrainConfig(model_type=args.model_type, encoder=args.encoder, epochs=args.epochs,
                         batch_size=args.batch_size, lr=args.lr,
                         patience=args.patience, seed=args.seed, device=args.device, negatives=args.negatives,
                         threads=args.threads, init=args.init, max_minutes=args.max_minutes)
    report = lambda r: print(f"  epoch {r['epoch']}: loss {r['loss']:.3f}, val mask IoU {r.get('mask_iou', 0):.3f}"
                             f" ({r['seconds']:.0f} s)", flush=True)
    train(train_sets, path, config, val_datasets=[val_set], on_epoch=report)
    return path


def tune_threshold(model: Path, scene: Path, labels: Path, args) -> dict:
    """The validation scene's best detection threshold, written into the bundle's card (shipseg calibrate)."""
    c = calibrate(model, scene, labels, batch_size=args.batch_size, device=args.device,
                  contrast_band=args.contrast_band)
    return {"threshold": c.threshold, "kept": c.found_none, "val_f1": c.best.f1, "val_precision": c.best.precision,
            "val_recall": c.best.recall, "sweep": {t: round(m.f1, 4) for t, m in c.sweep},
            "contrast": c.contrast, "contrast_sweep": {c_: round(m.f1, 4) for c_, m in c.contrast_sweep}}


def run_fold(k: int, args, extra: list[Path]) -> dict:
    tests, val = FOLDS[k - 1], VALIDATION[k - 1]
    trains = [s for fold in FOLDS for s in fold if s not in tests and s != val]
    print(f"fold {k}: train {', '.join(trains)}{f' + {len(extra)} synthetic' if extra else ''}; validate {val}; "
          f"test {', '.join(tests)}", flush=True)
    t0, c0 = time.perf_counter(), time.process_time()
    model = train_fold(k, [prepared(s, *scene_files(args.data, s), args) for s in trains] + extra,
                       with_ships(prepared(val, *scene_files(args.data, val), args)), args)
    t1, c1 = time.perf_counter(), time.process_time()
    tuned = tune_threshold(model, *scene_files(args.data, val), args)
    least = f", least {tuned['contrast']['band']} contrast {tuned['contrast']['min']:g}" if tuned["contrast"] else ""
    how = "kept from training: no validation ship found at any threshold" if tuned["kept"] else \
        f"F1 {tuned['val_f1']:.3f} on {val}"
    print(f"  score threshold {tuned['threshold']:g}{least} ({how})", flush=True)
    t2, c2 = time.perf_counter(), time.process_time()
    scored = {}
    for name in tests:
        scene, labels = scene_files(args.data, name)
        score = score_scene(model, scene, labels, batch_size=args.batch_size, device=args.device)
        scored[name] = (score, moored(scene, score.truth))
        print(f"  {name}: {summary_line(summarise([scored[name]]))}", flush=True)
    t3, c3 = time.perf_counter(), time.process_time()
    return {"fold": k, "train": trains, "validation": val, "test": list(tests), **tuned,
            "seconds": {"train": round(t1 - t0, 1), "threshold": round(t2 - t1, 1), "evaluate": round(t3 - t2, 1)},
            "cpu_seconds": {"train": round(c1 - c0, 1), "threshold": round(c2 - c1, 1),
                            "evaluate": round(c3 - c2, 1)},
            "scenes": {n: summarise([s]) for n, s in scored.items()}, "pooled": summarise(list(scored.values())),
            "_scored": list(scored.values())}


# ---- scores ------------------------------------------------------------------------------------------------------
def summarise(scored: list) -> dict:
    """Pooled scores over (SceneScore, moored flags) pairs: every ship and detection counts once."""
    m = metrics.pool([s.matching for s, _ in scored])
    area = np.concatenate([s.truth["area_px"].to_numpy() for s, _ in scored])
    place = np.where(np.concatenate([flags for _, flags in scored]), *PLACES).astype(object)
    lengths = np.concatenate([s.length_error for s, _ in scored])
    return {"ships": m.n_truth, "predicted": m.n_pred, "tp": m.tp, "fp": m.fp, "fn": m.fn,
            "precision": m.precision, "recall": m.recall, "f1": m.f1, "matched_iou": m.mean_iou,
            "box_prompt_iou": metrics.mean_or_none([v for s, _ in scored for v in s.box_prompt_iou]),
            "box_baseline_iou": metrics.mean_or_none([v for s, _ in scored for v in s.box_baseline_iou]),
            "median_length_error": float(np.median(lengths)) if len(lengths) else None,
            "recall_by_size": metrics.recall_by_group(m, metrics.size_class(area), metrics.SIZE_CLASSES),
            "recall_by_place": metrics.recall_by_group(m, place, PLACES)}


def fmt(v, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def summary_line(r: dict) -> str:
    return (f"P {fmt(r['precision'])} R {fmt(r['recall'])} F1 {fmt(r['f1'])}, box-prompt IoU "
            f"{fmt(r['box_prompt_iou'])} vs filled box {fmt(r['box_baseline_iou'])} ({r['tp']}/{r['ships']} found)")


def group_cell(g: dict) -> str:
    return f"{fmt(g['recall'], 2)} ({g['found']}/{g['ships']})"


def threshold_cell(fold: dict) -> str:
    """The fold's score threshold, with the least contrast after a slash when one was chosen; "(kept)" when the
    validation scene found no ship at any threshold and the training's threshold stayed."""
    least = fold.get("contrast") or {}
    kept = " (kept)" if fold.get("kept") else ""
    return f"{fold['threshold']:g}" + (f" / {least['min']:g}" if least else "") + kept


def markdown(result: dict) -> str:
    head = ["", "ships", "threshold", "P", "R", "F1 @0.5", "matched IoU", "box-prompt IoU", "filled box IoU",
            "median length err", *[f"R {c}" for c in metrics.SIZE_CLASSES], *[f"R {p}" for p in PLACES]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(label, r, threshold=""):
        cells = [label, str(r["ships"]), threshold, fmt(r["precision"]), fmt(r["recall"]), fmt(r["f1"]),
                 fmt(r["matched_iou"]), fmt(r["box_prompt_iou"]), fmt(r["box_baseline_iou"]),
                 "n/a" if r["median_length_error"] is None else f"{100 * r['median_length_error']:.1f} %",
                 *[group_cell(r["recall_by_size"][c]) for c in metrics.SIZE_CLASSES],
                 *[group_cell(r["recall_by_place"][p]) for p in PLACES]]
        lines.append("| " + " | ".join(cells) + " |")

    for f in result["folds"]:
        for name, r in f["scenes"].items():
            row(f"{name} (fold {f['fold']})", r, threshold_cell(f))
        row(f"**fold {f['fold']}**", f["pooled"], threshold_cell(f))
    row("**overall**", result["overall"])
    a = result["args"]
    return "\n".join([
        f"# sen2ships cross-validation: folds {','.join(map(str, a['folds']))}", "",
        f"{a['model_type']} from {Path(a['init']).name if a['init'] else 'random weights'}, {a['epochs']} epochs"
        f"{', at most ' + format(a['max_minutes'], 'g') + ' min' if a['max_minutes'] else ''} per fold"
        f"{' (models trained elsewhere, scored here)' if a['skip_train'] else ''}, tiles {a['tile_size']} px "
        f"(overlap {a['overlap']}), bands "
        f"{a['bands']}, encoder {a.get('encoder', 'full')}, batch {a['batch_size']}, lr {a['lr']:g}, "
        f"negatives {a['negatives']:g}, "
        f"{a['synthetic']} synthetic scenes, seed {a['seed']}, {a['threads']} thread(s).", "",
        *lines, "",
        "Pooled over ships. Sizes: small < 100 px area, medium 100-400 px, large > 400 px. Moored: within "
        f"{MOORED_WITHIN_M:g} m of land (NDWI rule). Threshold chosen on each fold's validation scene"
        + (f", with the least {a['contrast_band']} contrast of a ship against its water (after the slash)."
           if a.get("contrast_band") else "."), "",
        f"Wall time: {result['wall_seconds'] / 60:.1f} min (prepare {result['prepare_seconds']:.0f} s; per fold "
        + "; ".join(f"{f['fold']}: train {f['seconds']['train']:.0f} s, threshold {f['seconds']['threshold']:.0f} s,"
                    f" evaluate {f['seconds']['evaluate']:.0f} s" for f in result["folds"])
        + f"); load average {result['load_average_15min']:g} at the end (CPU seconds per stage in results.json)", ""])


COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]


def bar_chart(path: Path, title: str, groups: list[str], series: list[tuple[str, list]]) -> None:
    """Grouped bars of values in [0, 1] (None drawn as no bar) as a PNG, with Pillow (matplotlib is not a
    dependency of shipseg)."""
    from PIL import Image, ImageDraw, ImageFont

    w, h, left, top, bottom = 820, 420, 50, 40, 60
    img = Image.new("RGB", (w, h), "white")
    d, font = ImageDraw.Draw(img), ImageFont.load_default(size=13)
    text = lambda xy, s: d.text(xy, s, fill="black", font=font)
    text((left, 10), title)
    y = lambda v: top + (h - top - bottom) * (1 - v)
    for v in (0, 0.25, 0.5, 0.75, 1.0):
        d.line([(left, y(v)), (w - 10, y(v))], fill=(220, 220, 220))
        text((10, y(v) - 7), f"{v:.2f}")
    slot = (w - 10 - left) / len(groups)
    bar = 0.8 * slot / len(series)
    for g, name in enumerate(groups):
        x0 = left + g * slot + 0.1 * slot
        text((x0, h - bottom + 6), name)
        for i, (_, values) in enumerate(series):
            if values[g] is not None:
                d.rectangle([x0 + i * bar, y(values[g]), x0 + (i + 1) * bar - 2, y(0)], fill=COLOURS[i])
    for i, (label, _) in enumerate(series):
        x = left + i * (w - left) / len(series)
        d.rectangle([x, h - 22, x + 12, h - 10], fill=COLOURS[i])
        text((x + 16, h - 24), label)
    with atomic_file(path) as tmp:
        img.save(tmp, format="PNG")


def plot(result: dict, out: Path) -> None:
    """scores.png: F1, box-prompt IoU and the filled-box IoU per fold and overall; recall.png: recall by size
    and place."""
    groups = [(f"fold {f['fold']}", f["pooled"]) for f in result["folds"]] + [("overall", result["overall"])]
    names, rows = [g for g, _ in groups], [r for _, r in groups]
    a = result["args"]
    budget = f" (at most {a['max_minutes']:g} min per fold)" if a.get("max_minutes") else ""
    title = f"sen2ships cross-validation, up to {a['epochs']} epochs{budget}"
    bar_chart(out / "scores.png", title + ": F1 @ IoU 0.5 and mask IoU", names,
              [(k, [r[key] for r in rows]) for k, key in (("F1", "f1"), ("box-prompt IoU", "box_prompt_iou"),
                                                          ("filled-box IoU", "box_baseline_iou"))])
    bar_chart(out / "recall.png", title + ": recall by size and place", names,
              [(c, [r["recall_by_size"][c]["recall"] for r in rows]) for c in metrics.SIZE_CLASSES]
              + [(p, [r["recall_by_place"][p]["recall"] for r in rows]) for p in PLACES])


def main(argv=None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in sorted({s for fold in FOLDS for s in fold}):
        prepared(name, *scene_files(args.data, name), args)
    extra = synthetic(args.synthetic, args)
    prepare_seconds = time.perf_counter() - started
    print(f"prepared (or found) {9 + args.synthetic} datasets in {prepare_seconds:.0f} s", flush=True)
    folds = [run_fold(k, args, extra) for k in args.folds]
    result = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "overall": summarise([s for f in folds for s in f["_scored"]]),
              "folds": [{k: v for k, v in f.items() if k != "_scored"} for f in folds],
              "prepare_seconds": round(prepare_seconds, 1)}
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    result["load_average_15min"] = round(os.getloadavg()[2], 2)  # other work on the machine slows every stage
    text = markdown(result)
    with atomic_file(args.out / "results.md") as tmp:
        Path(tmp).write_text(text)
    with atomic_file(args.out / "results.json") as tmp:
        Path(tmp).write_text(json.dumps(result, indent=1))
    plot(result, args.out)
    print(text)
    return result


if __name__ == "__main__":
    main()
