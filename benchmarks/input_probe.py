"""Which input representation lets a small network find sen2ships ships in scenes it never saw? (issue #5, item 2)

    .venv/bin/python benchmarks/input_probe.py --write-pack /tmp/sen2ships_log8.npz   # scenes -> 30 MB, 8 bits
    python benchmarks/input_probe.py --pack /tmp/sen2ships_log8.npz --variants pct_rgb   # on a GPU machine
    .venv/bin/python benchmarks/input_probe.py --variants pct_rgb,pct_rgbn --folds 1 --steps 300   # a CPU taste

A probe, not the product: a from-scratch fully convolutional network (7 conv layers, dilations up to 8, ~80 k
weights) at the scenes' own 10 m pixels, trained on each fold's six training scenes of benchmarks/sen2ships.py
(FOLDS; no validation scene) to predict ship pixels and the pixels where two ships touch, then scored on the
fold's test scenes: connected ship pixels (8-neighbour, at least 8 px, touching-ship pixels removed) are the
detections, matched one to one to the truth ships at IoU 0.5 (highest IoU first). Same training for every
variant; only the input changes, so the comparison isolates what the bands and the stretch do.

Variants are STRETCH_BANDS. Stretches: ``pct`` (per scene 1-99 % percentile, what shipseg does), ``pctw``
(5-99 %), ``log`` (a fixed log stretch of the digital numbers, 200-50000, no scene statistics), ``top`` (pct plus
a white top-hat, value minus its 11 x 11 grey opening, which keeps bright things narrower than 11 px: ships,
and also piers), ``ltop`` (log plus its top-hat). Bands: ``rgb`` (B04 B03 B02), ``rgbn`` (+ B08), ``nrg`` (B08
B04 B03, three bands as a SAM input takes them), ``n`` (B08), ``ns`` (B08 B11).

``--eleven`` runs the eleven-scene split instead (``_sen2ships_split.FOLDS_ALL``: the three folds plus santos and
los_angeles, which lack blue or all visible bands), so each fold trains on eight to ten scenes; only the bands every
scene has (``n``, ``ns``) can take it. Results also give the recall of moored ships and ships at sea
(benchmarks/sen2ships.py's rule).

``--log-quantise`` first rounds every scene to 8 bits on that log scale (200-50000 DN, steps of 2.2 %), as
``--write-pack`` stores them for a machine without the data or GDAL (the reported run: an H200, whose transfer
limit the 16-bit scenes did not fit); ``--pack`` reads such a file."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from samgeo_ship.atomic import atomic_file  # noqa: E402
from samgeo_ship.models.native import components as native_components  # noqa: E402

from _sen2ships_split import DATA, FOLDS, FOLDS_ALL  # noqa: E402

VARIANTS = "pct_rgb,pct_rgbn,pct_nrg,pctw_rgbn,log_rgbn,top_rgbn,top_nrg,ltop_rgbn"
LOG_RANGE = (math.log(200.0), math.log(50000.0))
READ = ["B04", "B03", "B02", "B08", "B11"]  # what read_scene stacks (zeros where a scene lacks a band)
BANDS = {"rgb": [0, 1, 2], "rgbn": [0, 1, 2, 3], "nrg": [3, 0, 1], "n": [3], "ns": [3, 4]}
EVERY_SCENE = ("n", "ns")  # band sets all eleven scenes hold
STRETCHES = ("pct", "pctw", "log", "top", "ltop")
CROP, BATCH, THRESHOLD, MIN_PX = 96, 16, 0.5, 8


def read_scene(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(5, H, W) float32 digital numbers of READ (zeros for a band the scene lacks), (H, W) int32 truth ship ids
    (0 = none) and (N,) bool: ship k + 1 is moored (sen2ships.moored)."""
    from rasterio.features import rasterize  # here, not above: a --pack run needs no GDAL
    from rasterio.windows import Window

    from samgeo_ship.labels import load_labels
    from samgeo_ship.raster import Scene
    from sen2ships import moored

    path = DATA / name / "scene.tif"
    with Scene.open(path) as scene:
        held = [b for b in READ if b in scene.descriptions]
    with Scene.open(path, bands=held) as scene:
        read = scene.read_raw(Window(0, 0, scene.width, scene.height))[0].astype(np.float32)
        ships = load_labels(DATA / name / "labels.coco.json", scene).ships
        ids = rasterize([(g, i + 1) for i, g in enumerate(ships.geometry)], out_shape=read.shape[1:],
                        transform=scene.transform, dtype=np.int32)
    dn = np.zeros((len(READ), *read.shape[1:]), np.float32)
    dn[[READ.index(b) for b in held]] = read
    return dn, ids, moored(path, ships.geometry)


def log_codes(dn: np.ndarray) -> np.ndarray:
    """Digital numbers -> uint8 codes on the log scale LOG_RANGE."""
    v = (np.log(np.maximum(dn, 1)) - LOG_RANGE[0]) / (LOG_RANGE[1] - LOG_RANGE[0]) * 255
    return np.clip(np.round(v), 0, 255).astype(np.uint8)


def from_codes(codes: np.ndarray) -> np.ndarray:
    return np.exp(codes.astype(np.float32) / 255 * (LOG_RANGE[1] - LOG_RANGE[0]) + LOG_RANGE[0])


def load_scenes(args, folds) -> dict:
    """Every scene of ``folds`` as ((5, H, W) digital numbers, (H, W) ids) tensors on the device and (N,) moored."""
    names = [s for fold in folds for s in fold]
    if args.pack:
        with np.load(args.pack) as z:
            raw = {s: (from_codes(z[f"{s}_dn"]), z[f"{s}_ids"], z[f"{s}_moored"]) for s in names}
    else:
        raw = {s: read_scene(s) for s in names}
        if args.log_quantise:
            raw = {s: (from_codes(log_codes(dn)), ids, m) for s, (dn, ids, m) in raw.items()}
    return {s: (torch.from_numpy(dn).to(args.device), torch.from_numpy(ids.astype(np.int64)).to(args.device), m)
            for s, (dn, ids, m) in raw.items()}


def opening(x: torch.Tensor, k: int = 11) -> torch.Tensor:
    return F.max_pool2d(-F.max_pool2d(-x[None], k, 1, k // 2), k, 1, k // 2)[0]


def stretch(dn: torch.Tensor, low: float, high: float = 0.99) -> tuple[torch.Tensor, torch.Tensor]:
    q = torch.quantile(dn.reshape(len(dn), -1)[:, ::7], torch.tensor([low, high], device=dn.device), dim=1)
    span = (q[1] - q[0])[:, None, None]
    return ((dn - q[0][:, None, None]) / span).clamp(0, 1), span


def features(variant: str, dn: torch.Tensor) -> torch.Tensor:
    kind, bands = variant.split("_")
    logv = ((dn.clamp(min=1).log() - LOG_RANGE[0]) / (LOG_RANGE[1] - LOG_RANGE[0])).clamp(0, 1)
    if kind in ("pct", "top"):  # kind is one of STRETCHES (main checks)
        x, span = stretch(dn, 0.01)
        if kind == "top":
            x = torch.cat([x, ((dn - opening(dn)) / span * 3).clamp(0, 1)])
    elif kind == "pctw":
        x, _ = stretch(dn, 0.05)
    elif kind == "log":
        x = logv
    elif kind == "ltop":
        x = torch.cat([logv, ((logv - opening(logv)) * 4).clamp(0, 1)])
    idx = BANDS[bands] + ([i + len(READ) for i in BANDS[bands]] if len(x) == 2 * len(READ) else [])
    return x[idx].contiguous()


def network(chans: int, device) -> nn.Module:
    layers, c = [], chans
    for out, dil in ((32, 1), (32, 1), (48, 2), (48, 4), (48, 8), (32, 1)):
        layers += [nn.Conv2d(c, out, 3, padding=dil, dilation=dil), nn.ReLU()]
        c = out
    return nn.Sequential(*layers, nn.Conv2d(c, 2, 1)).to(device)


def touching(ids: torch.Tensor) -> torch.Tensor:
    """(B, H, W) ids -> float mask of ship pixels with another id (or background) in their 3 x 3 neighbourhood."""
    f = ids.float()[:, None]
    hi = F.max_pool2d(f, 3, 1, 1)
    lo = -F.max_pool2d(-torch.where(f > 0, f, torch.full_like(f, 1e9)), 3, 1, 1)
    return (((hi != f) | (lo != f)) & (f > 0))[:, 0].float()


def components(mask: torch.Tensor) -> torch.Tensor:
    """8-connected components of an (H, W) 0/1 float mask -> (H, W) ids numbered from 1, 0 = background."""
    labels = native_components(mask[None] > 0)[0]
    return torch.unique(labels, return_inverse=True)[1].reshape(mask.shape)


def score(truth: torch.Tensor, pred: torch.Tensor) -> tuple[int, int, int, list]:
    """(true positives, detections, truth ships, ids of the ships found) at IoU 0.5, greedy one-to-one, detections
    under MIN_PX dropped."""
    n_pred = int(pred.max())
    sizes = torch.bincount(pred.flatten(), minlength=n_pred + 1)
    keep = sizes >= MIN_PX
    keep[0] = False
    pred = torch.where(keep[pred], pred, torch.zeros_like(pred))
    t_sizes = torch.bincount(truth.flatten()).tolist()
    both = (truth > 0) & (pred > 0)
    pairs, counts = torch.unique(truth[both] * (n_pred + 1) + pred[both], return_counts=True)
    cand = sorted(((c / (t_sizes[p // (n_pred + 1)] + sizes[p % (n_pred + 1)].item() - c), p // (n_pred + 1),
                    p % (n_pred + 1)) for p, c in zip(pairs.tolist(), counts.tolist())), reverse=True)
    seen_t, seen_p, tp = set(), set(), 0
    for iou, t, p in cand:
        if iou >= 0.5 and t not in seen_t and p not in seen_p:
            seen_t.add(t)
            seen_p.add(p)
            tp += 1
    return tp, int(keep.sum()), int(truth.max()), sorted(seen_t)


def run_fold(variant: str, k: int, folds, scenes: dict, steps: int, seed: int, device) -> dict:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    trains = [s for fold in folds for s in fold if s not in folds[k - 1]]
    data = [(features(variant, scenes[s][0]), scenes[s][1]) for s in trains]
    ship_px = [torch.nonzero(ids > 0) for _, ids in data]
    net = network(data[0][0].shape[0], device)
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps, pct_start=0.1)
    weight = torch.tensor(3.0, device=device)
    for _ in range(steps):
        xs, ys = [], []
        for _ in range(BATCH):  # 60 % of crops hold a ship pixel; flips, quarter turns, brightness x0.8-1.2
            j = int(rng.integers(len(data)))
            x, ids = data[j]
            h, w = ids.shape
            if rng.random() < 0.6:
                r, c = ship_px[j][rng.integers(len(ship_px[j]))].tolist()
                r0, c0 = (int(np.clip(v - rng.integers(CROP), 0, n - CROP)) for v, n in ((r, h), (c, w)))
            else:
                r0, c0 = int(rng.integers(h - CROP)), int(rng.integers(w - CROP))
            xx, yy = x[:, r0:r0 + CROP, c0:c0 + CROP], ids[r0:r0 + CROP, c0:c0 + CROP]
            turns = int(rng.integers(4))
            xx, yy = torch.rot90(xx, turns, (1, 2)), torch.rot90(yy, turns, (0, 1))
            if rng.random() < 0.5:
                xx, yy = xx.flip(2), yy.flip(1)
            xs.append(xx * float(rng.uniform(0.8, 1.2)))
            ys.append(yy)
        ids = torch.stack(ys)
        ship = (ids > 0).float()
        out = net(torch.stack(xs))
        p = out[:, 0].sigmoid()
        loss = (F.binary_cross_entropy_with_logits(out[:, 0], ship, pos_weight=weight)
                + 1 - (2 * (p * ship).sum() + 1) / (p.sum() + ship.sum() + 1)
                + F.binary_cross_entropy_with_logits(out[:, 1], touching(ids), pos_weight=weight))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    result = {}
    with torch.no_grad():
        for name in folds[k - 1]:
            out = net(features(variant, scenes[name][0])[None])[0].sigmoid()
            found = components(((out[0] > THRESHOLD) & (out[1] < 0.5)).float())
            tp, n_pred, n_truth, ids = score(scenes[name][1], found)
            moored = scenes[name][2]
            result[name] = (tp, n_pred, n_truth, int(moored.sum()), int(sum(moored[i - 1] for i in ids)))
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default=VARIANTS)
    p.add_argument("--folds", help="which folds of the split, e.g. 1,3 [all]")
    p.add_argument("--eleven", action="store_true", help="the eleven-scene split (FOLDS_ALL; bands n or ns only)")
    p.add_argument("--steps", type=int, default=3000, help="training steps of 16 crops of 96 px [3000]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--log-quantise", action="store_true", help="round the scenes to 8 bits on a log scale first")
    p.add_argument("--write-pack", type=Path, help="write the scenes, log-quantised, to this .npz and stop")
    p.add_argument("--pack", type=Path, help="read the scenes from a --write-pack file (implies --log-quantise)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "input_probe.json")
    args = p.parse_args(argv)
    split = FOLDS_ALL if args.eleven else FOLDS
    for v in args.variants.split(","):
        kind, _, bands = v.partition("_")
        if kind not in STRETCHES or bands not in BANDS:
            p.error(f"--variants: {v!r} is not STRETCH_BANDS with STRETCH in {', '.join(STRETCHES)} and BANDS in "
                    f"{', '.join(BANDS)}")
        if args.eleven and bands not in EVERY_SCENE:
            p.error(f"--variants: {v!r} with --eleven: santos and los_angeles hold only the bands "
                    f"{', '.join(EVERY_SCENE)} of every scene")
    numbers = [str(k) for k in range(1, len(split) + 1)]
    args.folds = args.folds or ",".join(numbers)
    if not set(args.folds.split(",")) <= set(numbers):
        p.error(f"--folds: {args.folds!r} is not a list of {', '.join(numbers)}")
    if args.pack is None and not DATA.is_dir():
        p.error(f"no sen2ships data at {DATA} (set SHIPSEG_SEN2SHIPS)")
    if args.pack is not None and not args.pack.is_file():
        p.error(f"--pack: no file {args.pack}")
    if args.write_pack:
        packed = {}
        for s in (s for fold in FOLDS_ALL for s in fold):
            dn, ids, moored = read_scene(s)
            packed.update({f"{s}_dn": log_codes(dn), f"{s}_ids": ids.astype(np.uint8), f"{s}_moored": moored})
        with atomic_file(args.write_pack) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **packed)
        return 0
    torch.set_num_threads(args.threads)
    folds = [int(f) for f in args.folds.split(",")]
    scenes = load_scenes(args, split)
    results = {}
    for variant in args.variants.split(","):
        t0, per_scene = time.perf_counter(), {}
        for k in folds:
            per_scene.update(run_fold(variant, k, split, scenes, args.steps, args.seed, args.device))
        tp, n_pred, n_truth, n_moored, tp_moored = (sum(v[i] for v in per_scene.values()) for i in range(5))
        prec, rec = tp / max(n_pred, 1), tp / max(n_truth, 1)
        results[variant] = {"tp": tp, "detections": n_pred, "ships": n_truth, "precision": prec, "recall": rec,
                            "f1": 2 * prec * rec / max(prec + rec, 1e-9), "moored": [tp_moored, n_moored],
                            "at_sea": [tp - tp_moored, n_truth - n_moored], "scenes": per_scene,
                            "seconds": round(time.perf_counter() - t0, 1)}
        r = results[variant]
        print(f"{variant:10s} P {prec:.3f} R {rec:.3f} F1 {r['f1']:.3f} ({tp}/{n_truth} found, {n_pred} "
              f"detections; moored {tp_moored}/{n_moored}, at sea {tp - tp_moored}/{n_truth - n_moored}; "
              f"{r['seconds']:.0f} s)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(args.out) as tmp:
        Path(tmp).write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
