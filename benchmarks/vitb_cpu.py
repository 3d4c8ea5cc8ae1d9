"""vit_b on a CPU at detect's default settings: peak memory on a small and a large scene, the share of the wall time
spent in the encoder, and each encoder precision against float32.

    python benchmarks/vitb_cpu.py [--sizes 1024 4096] [--precision-size 768]
                                  [--parts memory precision samples attention] [--rounds 3]
                                  [--work DIR]

- memory: ``detect`` with a vit_b bundle (random weights: neither memory nor time depends on their values; 10 m RGB,
  1024 px tiles with a 128 px halo, the learned prompter), on synthetic harbours of each size, each in a fresh
  process (benchmarks/_measure.py): peak RSS (ru_maxrss, read as detect returns), the batch size chosen and the
  memory the plan said. On the smallest scene the same process also encodes the same tiles with the encoder alone
  (tiles already in memory, the batch detect used), just before and just after detect: detect's wall / their mean
  is what detect spends outside the encoder (the mean brackets a shared machine's changing load); the encoder's own
  clock inside detect gives its share of that run. One untimed encoder pass first warms the kernels.
- precision: the same vit_b on a harbour of ``--precision-size`` px (768: one tile) with its true ship boxes as
  prompts, once per encoder precision (fp32, bf16, int8), one process: encoder seconds and each prompt's mask IoU
  against fp32.
- attention: vit_b's encoder alone on one 1024 px input (random weights, random relative positions), with
  segment_anything's own attention and with shipseg's by blocks of queries (``models/attention.py``), in float32
  and bf16, alternating ``--rounds`` times in one process: median seconds, speed-up and the largest difference of
  the embeddings.
- samples: the bundled default models on sample_tiles/*.tif at each precision: ships found, how many match fp32's
  (IoU >= 0.5), their mean IoU, and the encoder's speed-up.

Results: benchmarks/results/vitb_cpu.json.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks._common import RESULTS, harbour_scene, save  # noqa: E402
from benchmarks._measure import measure  # noqa: E402

PRECISIONS = ("fp32", "bf16", "int8")
TILE, HALO = 1024, 128  # the bundle's tiling at 10 m: the encoder sees each tile at 1:1


def vit_b_bundle(work: Path) -> Path:
    import torch

    from samgeo_ship.models.bundle import BundleCard, save_bundle
    from samgeo_ship.models.shipsam import ShipSam

    path = work / "random_vit_b.safetensors"
    if not path.exists():
        torch.manual_seed(0)
        save_bundle(ShipSam.from_config("vit_b"), BundleCard("vit_b", ["red", "green", "blue"], 10.0, TILE, HALO),
                    path)
    return path


def harbour(size: int, work: Path) -> tuple[Path, Path]:
    """A synthetic RGB harbour of ``size`` px at 10 m and its truth."""
    return harbour_scene(size, work, "rgb8", 80_000, 12, "rgb")


def detect_run(scene: str, model: str, encoder_only: bool) -> dict:
    """In the measured process: warm-up, ``detect`` at default settings and, with ``encoder_only``, the encoder alone
    on the same tiles just before and just after it (their mean brackets the load of a shared machine)."""
    import resource

    from samgeo_ship import ShipDetector

    detector = ShipDetector(model, device="cpu")
    predictor, plans, alone = detector.predictor, [], []
    warm_up(detector)
    if encoder_only:
        alone.append(encode_tiles(detector, scene))
    predictor.encoder.seconds = 0.0
    start, cpu = time.perf_counter(), time.process_time()
    ships = detector.detect(scene, on_plan=plans.append)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    out = {"ships": len(ships), "detect_s": wall, "detect_cpu_s": cpu,
           "encoder_in_detect_s": predictor.encoder.seconds,
           "encoder_share_in_detect": predictor.encoder.seconds / wall,
           "detect_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "plan": plans[0],
           "batch_size": detector.batch_size, "precision": detector.precision}
    if encoder_only:
        alone.append(encode_tiles(detector, scene))
        out.update(encoder_only_s=[a[0] for a in alone], encoder_only_cpu_s=[a[1] for a in alone],
                   wall_over_encoder=wall / np.mean([a[0] for a in alone]),
                   cpu_over_encoder=cpu / np.mean([a[1] for a in alone]))
    return out


def encode_tiles(detector, scene: str) -> tuple[float, float]:
    """Wall and CPU seconds of the encoder alone over the tiles detect encodes, in detect's batches (tiles read
    beforehand). CPU time is what other jobs on a shared machine inflate least."""
    from samgeo_ship.inference.detector import _torch_threads

    tiles = []
    with detector.open(scene) as opened:
        for tile in detector.grid(opened):
            image, valid = opened.read(tile.window)
            if valid[tile.core_slices()].any():
                tiles.append(image)
    predictor, batch = detector.predictor, detector.batch_size
    with _torch_threads(detector.device):
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(tiles), batch):
            predictor.encoder(predictor.inputs(np.stack(tiles[i:i + batch])))
        return time.perf_counter() - start, time.process_time() - cpu


def memory(sizes, model: Path, work: Path) -> dict:
    runs = []
    for k, size in enumerate(sorted(sizes)):
        scene, _ = harbour(size, work)
        run = {"size_px": size, **measure(f"""
            import json, sys
            sys.path.insert(0, {str(ROOT)!r})
            from benchmarks.vitb_cpu import detect_run
            print("@@" + json.dumps(detect_run({str(scene)!r}, {str(model)!r}, {k == 0})))
        """)}
        runs.append(run)
        print(json.dumps(run), flush=True)
    return {"runs": runs, "memory_ratio": runs[-1]["detect_peak_rss_mb"] / runs[0]["detect_peak_rss_mb"],
            "wall_over_encoder": runs[0].get("wall_over_encoder")}


def warm_up(detector) -> None:
    """One untimed encoder pass of a batch, so that the timed passes do not pay for making this precision's
    kernels; the encoder's clock is then reset."""
    import torch

    from samgeo_ship.inference.detector import _torch_threads

    size = detector.model.img_size
    with _torch_threads(detector.device):
        detector.predictor.encoder(torch.zeros(detector.batch_size, 3, size, size))
    detector.predictor.encoder.seconds = 0.0


def mask_ious(reference, other, key: str = "prompt") -> list[float]:
    """IoU of each reference polygon with the polygon of ``other`` for the same prompt (0 when it has none)."""
    theirs = dict(zip(other[key], other.geometry))
    out = []
    for k, geom in zip(reference[key], reference.geometry):
        mine = theirs.get(k)
        out.append(0.0 if mine is None else geom.intersection(mine).area / max(geom.union(mine).area, 1e-9))
    return out


def matches(reference, other) -> tuple[int, list[float]]:
    """Ships of ``reference`` that ``other`` finds (best IoU >= 0.5) and each reference ship's best IoU."""
    best = []
    for geom in reference.geometry:
        hits = other.geometry[other.geometry.intersects(geom)]
        best.append(max((geom.intersection(h).area / geom.union(h).area for h in hits), default=0.0))
    return sum(b >= 0.5 for b in best), best


def precision_run(scene: str, truth: str, model: str) -> dict:
    """vit_b with the true boxes as prompts at each precision, in this process."""
    from samgeo_ship import ShipDetector
    from samgeo_ship.models.zoo import load_model

    loaded, ref, out = load_model(Path(model)), None, {}
    for precision in PRECISIONS:
        detector = ShipDetector(loaded, device="cpu", precision=precision, batch_size=1)
        warm_up(detector)
        ships = detector.detect(scene, boxes=truth)
        ref = ships if ref is None else ref
        ious = mask_ious(ref, ships)
        out[precision] = {"encoder_s": detector.predictor.encoder.seconds, "masks": len(ships),
                          "mean_iou_vs_fp32": float(np.mean(ious)) if ious else None,
                          "min_iou_vs_fp32": float(np.min(ious)) if ious else None}
        print(precision, json.dumps(out[precision]), flush=True)
    for precision in PRECISIONS:
        out[precision]["speedup"] = out["fp32"]["encoder_s"] / out[precision]["encoder_s"]
    return out


def samples_run() -> dict:
    """The bundled default models on the sample scenes at each precision, in this process."""
    from samgeo_ship import ShipDetector

    out = {}
    for scene in sorted((ROOT / "sample_tiles").glob("*.tif")):
        ref, rows = None, {}
        for precision in PRECISIONS:
            detector = ShipDetector.for_scene(scene, device="cpu", precision=precision)
            warm_up(detector)
            ships = detector.detect(scene)
            ref = ships if ref is None else ref
            found, best = matches(ref, ships)
            back, _ = matches(ships, ref)
            rows[precision] = {"ships": len(ships), "fp32_ships_found": found, "ships_found_by_fp32": back,
                               "mean_iou_vs_fp32": float(np.mean(best)) if best else None,
                               "encoder_s": detector.predictor.encoder.seconds, "model": detector.name}
        for precision in PRECISIONS:
            rows[precision]["speedup"] = rows["fp32"]["encoder_s"] / rows[precision]["encoder_s"]
        out[scene.name] = rows
        print(scene.name, json.dumps(rows), flush=True)
    return out


def attention_run(rounds: int) -> dict:
    """segment_anything's attention against the chunked one in vit_b's encoder, in this process."""
    import torch
    from segment_anything.modeling import image_encoder

    from samgeo_ship.models.attention import ChunkedAttention
    from samgeo_ship.models.registry import CONFIGS, build_sam

    torch.manual_seed(0)
    encoder = build_sam(CONFIGS["vit_b"]).image_encoder
    layers = [m for m in encoder.modules() if isinstance(m, image_encoder.Attention)]
    with torch.no_grad():
        for layer in layers:  # zero-initialised in a fresh model: give them values, or they would not be tested
            layer.rel_pos_h.normal_(0, 0.5)
            layer.rel_pos_w.normal_(0, 0.5)
    image = torch.randn(1, 3, 1024, 1024)
    out = {"threads": torch.get_num_threads()}
    for precision in ("fp32", "bf16"):
        times, embeddings = {"segment_anything": [], "chunked": []}, {}
        for _ in range(rounds + 1):  # the first round warms the kernels and is not counted
            for name, cls in (("segment_anything", image_encoder.Attention), ("chunked", ChunkedAttention)):
                for layer in layers:
                    layer.__class__ = cls
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                           enabled=precision == "bf16"):
                    start = time.perf_counter()
                    embeddings[name] = encoder(image).float()
                    times[name].append(time.perf_counter() - start)
        row = {name: float(np.median(t[1:])) for name, t in times.items()}
        row["speedup"] = row["segment_anything"] / row["chunked"]
        row["max_abs_difference"] = float((embeddings["chunked"] - embeddings["segment_anything"]).abs().max())
        out[precision] = row
        print(precision, json.dumps(row), flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096], help="scene sides, px")
    ap.add_argument("--precision-size", type=int, default=768, help="side of the precision part's scene, px")
    ap.add_argument("--parts", nargs="+", default=["memory", "precision", "samples"],
                    choices=["memory", "precision", "samples", "attention"])
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of the attention part")
    ap.add_argument("--work", type=Path, default=Path("/tmp/shipseg-bench"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    model = vit_b_bundle(args.work)
    earlier = RESULTS / "vitb_cpu.json"  # the parts not run now are kept from the last run
    result = json.loads(earlier.read_text()) if earlier.exists() else {}
    result.update({"model": "vit_b bundle, random weights", "sizes": sorted(args.sizes)})
    if "memory" in args.parts:
        result["memory"] = memory(args.sizes, model, args.work)
    if "precision" in args.parts:
        scene, truth = harbour(args.precision_size, args.work)
        result["precision"] = measure(f"""
            import json, sys
            sys.path.insert(0, {str(ROOT)!r})
            from benchmarks.vitb_cpu import precision_run
            print("@@" + json.dumps(precision_run({str(scene)!r}, {str(truth)!r}, {str(model)!r})))
        """)
    if "samples" in args.parts:
        result["samples"] = samples_run()
    if "attention" in args.parts:
        result["attention"] = attention_run(args.rounds)
    save("vitb_cpu", result)


if __name__ == "__main__":
    main()
