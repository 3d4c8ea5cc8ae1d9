"""The aerial model on real 1.5 m chips (airbus-val) and on synthetic aerial validation scenes.

    .venv/bin/python benchmarks/airbus_val.py [-m MODEL] [--data DIR] [--synthetic N] [--no-airbus] [--out DIR]

airbus-val (../shared/data/airbus-val, validation only: read its README) holds 20 real 768 x 768 px SPOT chips at
1.5 m with 57 ships. Each chip is scored with ``score_scene``, the code behind ``shipseg evaluate``, and the ships
are pooled over the chips: precision, recall and F1 at IoU 0.5 (one-to-one matching, samgeo_ship.metrics), mean
box-prompted mask IoU (each truth ship's box as the prompt) beside the IoU of the filled truth box itself. The
chips' masks are coarse, box-like outlines, so a precise hull outline can score below 1 against them.

The synthetic validation scenes are aerial harbours (``shipseg synth --kind aerial``) with seeds 800 and up: none
is a training seed (scripts/train_aerial.sh: 1000-1047, validation 900-903) or the bundled sample's (4). Their
pixel sizes cycle through SYNTH_PIXELS, from the finest to the coarsest the aerial model reads, so the figures
cover the zoo's resampling as well as the training resolution; they are pooled the same way, and per pixel size.

Without -m each scene gets the model ``shipseg detect`` would pick (the zoo). Skips airbus-val with a message when
the folder is absent. Writes OUT/airbus_val.json (benchmarks/results by default) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from samgeo_ship import metrics  # noqa: E402
from samgeo_ship.atomic import atomic_file  # noqa: E402
from samgeo_ship.inference.detector import ShipDetector  # noqa: E402
from samgeo_ship.inference.evaluate import score_scene  # noqa: E402
from samgeo_ship.synthetic import SynthSpec  # noqa: E402
from samgeo_ship.synthetic_aerial_paint import make_aerial_scene  # noqa: E402

AIRBUS = ROOT.parent / "shared" / "data" / "airbus-val"
SYNTH_PIXELS = (0.3, 0.5, 0.8, 1.2, 1.5, 2.5)
SYNTH_SEED0 = 800


def synthetic_scenes(work: Path, count: int) -> list[tuple[str, Path, Path, float]]:
    """``count`` aerial validation scenes (cached in ``work``): (name, scene, truth, pixel size)."""
    work.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        pixel, seed = SYNTH_PIXELS[i % len(SYNTH_PIXELS)], SYNTH_SEED0 + i
        tif, truth = work / f"aerial_val_{seed}.tif", work / f"aerial_val_{seed}.geojson"
        if not tif.exists():
            make_aerial_scene(SynthSpec(768, 768, pixel_size_m=pixel, bands="rgb8", n_ships=25, seed=seed,
                                        center_lonlat=(4.28, 51.9)), tif, truth)
        out.append((f"aerial_val_{seed}", tif, truth, pixel))
    return out


def airbus_scenes(data: Path) -> list[tuple[str, Path, Path, float]]:
    return [(d.name, d / "scene.tif", d / "labels.coco.json", 1.5) for d in sorted(data.iterdir())
            if (d / "scene.tif").is_file() and (d / "labels.coco.json").is_file()]


def score_set(scenes, model, batch_size) -> dict:
    """Pooled scores over ``scenes`` and per pixel size; each scene's own figures under ``scenes``."""
    rows, groups = [], {}
    for name, tif, truth, pixel in scenes:
        detector = ShipDetector.for_scene(tif, model, batch_size=batch_size)
        s = score_scene(detector, tif, truth)
        e = s.evaluation
        rows.append({"scene": name, "pixel_m": pixel, "model": detector.name, "truth": e.truth_ships,
                     "pred": e.predicted_ships, "tp": e.tp, "f1": e.f1, "box_prompt_iou": e.box_prompt_mean_iou,
                     "box_baseline_iou": e.box_baseline_mean_iou})
        for key in ("all", pixel):
            g = groups.setdefault(key, ([], [], []))
            g[0].append(s.matching)
            g[1].extend(s.box_prompt_iou)
            g[2].extend(s.box_baseline_iou)
        print(f"  {name} ({pixel:g} m, {detector.name}): {e.tp}/{e.truth_ships} found, {e.fp} false, "
              f"F1 {e.f1:.3f}; box-prompted IoU sum {sum(s.box_prompt_iou):.3f}, filled box "
              f"{sum(s.box_baseline_iou):.3f} over {len(s.box_prompt_iou)} ships", flush=True)
    pooled = {}
    for key, (matchings, box_iou, baseline) in groups.items():
        m = metrics.pool(matchings)
        pooled[str(key)] = {"ships": m.n_truth, "predicted": m.n_pred, "tp": m.tp, "precision": m.precision,
                            "recall": m.recall, "f1": m.f1, "matched_mean_iou": m.mean_iou,
                            "box_prompt_mean_iou": metrics.mean_or_none(box_iou),
                            "box_baseline_mean_iou": metrics.mean_or_none(baseline)}
    return {"pooled": pooled, "scenes": rows}


def _table(title: str, result: dict) -> str:
    lines = [f"### {title}", "", "| pixels | ships | P | R | F1 @ IoU 0.5 | box-prompted mask IoU | filled box IoU |",
             "|---|---|---|---|---|---|---|"]
    for key, p in result["pooled"].items():
        f = (lambda v: "n/a" if v is None else f"{v:.3f}")  # noqa: E731
        lines.append(f"| {key if key == 'all' else key + ' m'} | {p['ships']} | {f(p['precision'])} | "
                     f"{f(p['recall'])} | **{f(p['f1'])}** | {f(p['box_prompt_mean_iou'])} | "
                     f"{f(p['box_baseline_mean_iou'])} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-m", "--model", help="model bundle [the zoo's pick for each scene]")
    p.add_argument("--data", type=Path, default=AIRBUS, help="airbus-val folder [%(default)s]")
    p.add_argument("--synthetic", type=int, default=len(SYNTH_PIXELS), help="synthetic scenes [%(default)s]")
    p.add_argument("--no-airbus", action="store_true", help="synthetic scenes only")
    p.add_argument("--work", type=Path, default=Path("/tmp/shipseg-airbus-val"), help="synthetic scene cache")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="[%(default)s]")
    p.add_argument("--batch-size", type=int, default=8)
    args = p.parse_args(argv)
    result, started = {"model": args.model or "zoo"}, time.monotonic()
    if args.no_airbus:
        pass
    elif not args.data.is_dir() or not airbus_scenes(args.data):
        print(f"airbus-val: skipped, no chips in {args.data} (see ../shared/data/README.md)")
    else:
        print("airbus-val:")
        result["airbus_val"] = score_set(airbus_scenes(args.data), args.model, args.batch_size)
    if args.synthetic:
        print("synthetic aerial validation:")
        result["synthetic"] = score_set(synthetic_scenes(args.work, args.synthetic), args.model, args.batch_size)
    result["seconds"] = round(time.monotonic() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_file(args.out / "airbus_val.json") as tmp:
        Path(tmp).write_text(json.dumps(result, indent=1))
    for key, title in (("airbus_val", "airbus-val (real, 1.5 m, pooled)"), ("synthetic", "synthetic aerial validation")):
        if key in result:
            print(_table(title, result[key]) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
