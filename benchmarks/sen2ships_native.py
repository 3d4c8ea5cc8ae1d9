"""Leave-scenes-out cross-validation of the native-pixel proposer (samgeo_ship.models.native) on the eleven sen2ships
scenes (issue #22).

    .venv/bin/python benchmarks/sen2ships_native.py [--bands B08] [--folds 1,2,3,4] [--epochs N] [--quick] ...

Four folds (_sen2ships_split.FOLDS_ALL): the three of benchmarks/sen2ships.py plus santos and los_angeles, the
scenes with only some bands. Each fold trains a proposer with the library's ``train_proposer`` (``shipseg train
--proposer native``) on every other scene that holds the bands; a seeded fifth of those training tiles picks the
best epoch and the score threshold (box F1 at IoU 0.5 per tile), so no test scene is seen. The proposer's boxes
prompt the SAM of --sam (default: benchmarks/models/synthetic_base.safetensors, trained on synthetic harbours only,
never on sen2ships), or with ``--masks native`` the proposer finds and draws the ships itself (``shipseg train
--masks native``: the regions of its ship-pixel head, their threshold chosen on the same validation tiles) and
detection runs no SAM; the box-prompted IoU is still SAM's (user box prompts go to SAM). The test scenes are scored
with ``score_scene`` (``shipseg evaluate``): precision, recall and F1 at IoU 0.5, box-prompted mask IoU (truth boxes
as prompts) beside the filled box, recall of moored ships and of ships at sea (benchmarks/sen2ships.py's rules,
land_mask). A scene without the bands is reported as not scored.

Writes OUT/results.md and OUT/results.json (atomically); the fold bundles stay in OUT/models/."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

import sen2ships as cv  # noqa: E402

from samgeo_ship.atomic import atomic_file  # noqa: E402
from samgeo_ship.bands import parse_bands  # noqa: E402
from samgeo_ship.dataset import prepare_dataset  # noqa: E402
from samgeo_ship.errors import NoSuchBand  # noqa: E402
from samgeo_ship.inference.evaluate import score_scene  # noqa: E402
from samgeo_ship.models.bundle import read_card  # noqa: E402
from samgeo_ship.raster import Scene  # noqa: E402
from samgeo_ship.training.native import ProposerConfig, train_proposer  # noqa: E402

from _sen2ships_split import DATA, FOLDS_ALL  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folds", default="1,2,3,4", help="[%(default)s]")
    p.add_argument("--bands", default="B08", help="the model's bands, 1 or 3 by name [%(default)s]")
    p.add_argument("--epochs", type=int, default=12, help="[%(default)s]")
    p.add_argument("--train-batch", type=int, default=16, help="tiles per training step [%(default)s]")
    p.add_argument("--width", type=int, default=16, help="channels of the proposer [%(default)s]")
    p.add_argument("--negatives", type=float, default=0.1, help="share of shipless tiles per epoch [%(default)s]")
    p.add_argument("--lr", type=float, default=4e-3, help="[%(default)s]")
    p.add_argument("--masks", choices=("sam", "native"), default="sam",
                   help="who draws the masks: SAM's decoder from the proposal boxes, or the proposer [%(default)s]")
    p.add_argument("--max-minutes", type=float, default=11.0, help="training budget per fold (0: none) [%(default)s]")
    p.add_argument("--sam", type=Path, default=cv.SYNTHETIC_BASE,
                   help="bundle whose SAM decodes the proposals; it must never have seen sen2ships [%(default)s]")
    p.add_argument("--tile-size", type=int, default=64, help="[%(default)s]")
    p.add_argument("--overlap", type=int, default=8, help="[%(default)s]")
    p.add_argument("--batch-size", type=int, default=8, help="tiles per detection batch [%(default)s]")
    p.add_argument("--seed", type=int, default=0, help="[%(default)s]")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads; on a loaded 2-core machine 1 is three times faster than 2 [%(default)s]")
    p.add_argument("--data", type=Path, default=DATA, help="[%(default)s]")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sen2ships_native",
                   help="[%(default)s]")
    p.add_argument("--extra", type=Path, nargs="*", default=[],
                   help="prepared datasets (`shipseg prepare`, the same bands and tiles; synthetic scenes, never "
                        "sen2ships) added to every fold's training")
    p.add_argument("--skip-train", action="store_true",
                   help="score the fold models already in OUT/models/ instead of training them again")
    p.add_argument("--aggregate", action="store_true",
                   help="pool the folds already scored in OUT/folds/ (runs of some folds each, side by side) into "
                        "OUT/results.md without running any")
    p.add_argument("--quick", action="store_true", help="a smoke run: the first fold, 1 epoch")
    args = p.parse_args(argv)
    args.folds = [int(k) for k in args.folds.split(",")]
    if not all(1 <= k <= len(FOLDS_ALL) for k in args.folds):
        p.error(f"--folds takes numbers 1-{len(FOLDS_ALL)}")
    if not args.sam.is_file():
        p.error(f"--sam {args.sam}: no such model bundle")
    if args.quick:
        args.folds, args.epochs = args.folds[:1], 1
    args.max_minutes = args.max_minutes or None
    return args


def prepared(name: str, args) -> Path | None:
    """The scene's prepared dataset (cached in OUT/cache/), or None when it lacks one of the bands."""
    out = args.out / "cache" / f"{args.bands.replace(',', '-')}_t{args.tile_size}_o{args.overlap}" / name
    if not (out / "dataset.json").exists():
        try:
            Scene.open(cv.scene_files(args.data, name)[0], bands=parse_bands(args.bands)).close()
        except NoSuchBand:
            return None
        out.parent.mkdir(parents=True, exist_ok=True)
        prepare_dataset(*cv.scene_files(args.data, name), out, bands=parse_bands(args.bands),
                        tile_size=args.tile_size, overlap=args.overlap, overwrite=True)
    return out


def run_fold(k: int, args) -> dict:
    tests = FOLDS_ALL[k - 1]
    trains = [s for fold in FOLDS_ALL for s in fold if s not in tests]
    sets = {s: prepared(s, args) for s in trains}
    used = [s for s in trains if sets[s] is not None]
    print(f"fold {k}: train {', '.join(used + [d.name for d in args.extra])}; test {', '.join(tests)}", flush=True)
    path = args.out / "models" / f"fold{k}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    config = ProposerConfig(epochs=args.epochs, batch_size=args.train_batch, width=args.width, negatives=args.negatives, lr=args.lr,
                            seed=args.seed, threads=args.threads, max_minutes=args.max_minutes, init=str(args.sam),
                            masks=args.masks)
    report = lambda r: print(f"  epoch {r['epoch']}: loss {r['loss']:.3f}, val box F1 {r['f1']:.3f} at "
                             f"{r['score_threshold']:g} ({r['seconds']:.0f} s)", flush=True)
    t0, c0 = time.perf_counter(), time.process_time()
    if not (args.skip_train and path.is_file()):
        train_proposer([sets[s] for s in used] + list(args.extra), path, config, on_epoch=report)
    card = read_card(path)
    t1, c1 = time.perf_counter(), time.process_time()
    scored = {}
    for name in tests:
        scene, labels = cv.scene_files(args.data, name)
        try:
            score = score_scene(path, scene, labels, batch_size=args.batch_size, device="cpu")
        except NoSuchBand as exc:
            print(f"  {name}: not scored ({exc})", flush=True)
            continue
        scored[name] = (score, cv.moored(scene, score.truth))
        print(f"  {name}: {cv.summary_line(cv.summarise([scored[name]]))}", flush=True)
    t2, c2 = time.perf_counter(), time.process_time()
    fold = {"fold": k, "train": used + [str(d) for d in args.extra], "test": list(tests), "threshold": card.thresholds["score"],
            "best_epoch": card.training["best_epoch"], "epochs": card.training["epochs"], "val": card.validation,
            "seconds": {"train": round(t1 - t0, 1), "evaluate": round(t2 - t1, 1)},
            "cpu_seconds": {"train": round(c1 - c0, 1), "evaluate": round(c2 - c1, 1)},
            "scenes": {n: cv.summarise([s]) for n, s in scored.items()},
            "pooled": cv.summarise(list(scored.values())) if scored else None}
    out = args.out / "folds" / f"fold{k}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out) as tmp:
        Path(tmp).write_text(json.dumps(fold, indent=1, default=str))
    return fold


def pool(summaries: list[dict]) -> dict:
    """Scores pooled over scenes from their summaries (cv.summarise): counts add up; the box-prompted IoUs are
    means over ships, weighted by each scene's ships."""
    n = lambda key: sum(r[key] for r in summaries)
    tp, predicted, ships = n("tp"), n("predicted"), n("ships")
    p, r = tp / max(predicted, 1), tp / max(ships, 1)

    def mean(key):
        pairs = [(r[key], r["ships"]) for r in summaries if r[key] is not None]
        return sum(v * w for v, w in pairs) / sum(w for _, w in pairs) if pairs else None

    places = {}
    for place in cv.PLACES:
        found = sum(r["recall_by_place"][place]["found"] for r in summaries)
        total = sum(r["recall_by_place"][place]["ships"] for r in summaries)
        places[place] = {"found": found, "ships": total, "recall": found / total if total else None}
    return {"ships": ships, "predicted": predicted, "tp": tp, "fp": predicted - tp, "fn": ships - tp,
            "precision": p, "recall": r, "f1": 2 * p * r / max(p + r, 1e-9),
            "box_prompt_iou": mean("box_prompt_iou"), "box_baseline_iou": mean("box_baseline_iou"),
            "recall_by_place": places}


def markdown(result: dict) -> str:
    head = ["", "ships", "threshold", "P", "R", "F1 @0.5", "box-prompt IoU", "filled box IoU", "R moored",
            "R at sea", "found / detections"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(label, r, threshold=""):
        lines.append("| " + " | ".join([
            label, str(r["ships"]), threshold, cv.fmt(r["precision"]), cv.fmt(r["recall"]), cv.fmt(r["f1"]),
            cv.fmt(r["box_prompt_iou"]), cv.fmt(r["box_baseline_iou"]),
            *[cv.group_cell(r["recall_by_place"][p]) for p in cv.PLACES], f"{r['tp']} / {r['predicted']}"]) + " |")

    for f in result["folds"]:
        for name, r in f["scenes"].items():
            row(f"{name} (fold {f['fold']})", r, f"{f['threshold']:g}")
        if f["pooled"]:
            row(f"**fold {f['fold']}**", f["pooled"], f"{f['threshold']:g}")
    row("**overall**", result["overall"])
    a = result["args"]
    return "\n".join([
        f"# sen2ships native-proposer cross-validation: folds {','.join(map(str, a['folds']))}", "",
        f"bands {a['bands']}, proposer width {a['width']}, up to {a['epochs']} epochs"
        f"{', at most ' + format(a['max_minutes'], 'g') + ' min' if a['max_minutes'] else ''} per fold, lr "
        f"{a['lr']:g}, negatives {a['negatives']:g}, masks by "
        f"{'the proposer (SAM only for the box prompts: ' if a['masks'] == 'native' else '('}SAM of "
        f"{Path(a['sam']).name}), tiles {a['tile_size']} px (overlap {a['overlap']}), seed {a['seed']}, "
        f"{a['threads']} thread(s)"
        f"{'; also trained on ' + ', '.join(Path(d).name for d in a['extra']) if a.get('extra') else ''}.", "", *lines, "",
        f"Wall time {result['wall_seconds'] / 60:.1f} min{' summed over the folds' if a['aggregate'] else ''} (per fold "
        + "; ".join(f"{f['fold']}: train {f['seconds']['train']:.0f} s ({f['epochs']} epochs, best "
                    f"{f['best_epoch']}), evaluate {f['seconds']['evaluate']:.0f} s" for f in result["folds"])
        + f"); load average {result['load_average_15min']:g} at the end.", ""])


def main(argv=None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.aggregate:
        folds = [json.loads(p.read_text()) for p in sorted((args.out / "folds").glob("fold*.json"))]
        args.folds = [f["fold"] for f in folds]
    else:
        folds = [run_fold(k, args) for k in args.folds]
    result = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "overall": pool([r for f in folds for r in f["scenes"].values()]), "folds": folds}
    result["wall_seconds"] = round(time.perf_counter() - started, 1) if not args.aggregate else sum(
        f["seconds"]["train"] + f["seconds"]["evaluate"] for f in folds)
    result["load_average_15min"] = round(os.getloadavg()[2], 2)
    text = markdown(result)
    with atomic_file(args.out / "results.md") as tmp:
        Path(tmp).write_text(text)
    with atomic_file(args.out / "results.json") as tmp:
        Path(tmp).write_text(json.dumps(result, indent=1, default=str))
    print(text)
    return result


if __name__ == "__main__":
    main()
