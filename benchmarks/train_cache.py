"""Frozen-encoder training: one epoch with a warm embedding cache vs the same epoch recomputing the encoder.

    .venv/bin/python benchmarks/train_cache.py [--model-type sam_small] [--tiles-side 3] [--threads N]

Prints both epoch times and their ratio, and writes benchmarks/results/train_cache.json."""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import torch  # noqa: E402

from samgeo_ship.models.registry import CONFIGS, build_sam  # noqa: E402
from samgeo_ship.training import TrainConfig, train  # noqa: E402
from test_training import ship_dataset  # noqa: E402  (the synthetic ship datasets the tests train on)


def epoch_seconds(dataset, out: Path, model_type: str, threads, use_cache: bool, cache_dir: Path, base) -> float:
    """Seconds of the second of two epochs (the first warms the cache when there is one)."""
    config = TrainConfig(model_type=model_type, encoder="frozen", epochs=2, batch_size=2, val_fraction=0.0,
                         augment=False, use_cache=use_cache, cache_dir=str(cache_dir), threads=threads,
                         base_checkpoint=base)
    history = train([dataset], out, config).history
    return history[-1]["seconds"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-type", default="sam_small")
    parser.add_argument("--tiles-side", type=int, default=3, help="the scene is this many 128-px tiles square")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dataset = ship_dataset(tmp / "ds", seed=0, size=128 * args.tiles_side, ships=4 * args.tiles_side ** 2)
        base = None
        if CONFIGS[args.model_type].official:  # an official-format checkpoint (random weights: speed is the same)
            base = tmp / CONFIGS[args.model_type].checkpoint
            torch.save(build_sam(CONFIGS[args.model_type]).state_dict(), base)
        cached = epoch_seconds(dataset, tmp / "a.safetensors", args.model_type, args.threads, True, tmp / "cache",
                               base)
        started = time.perf_counter()
        recomputed = epoch_seconds(dataset, tmp / "b.safetensors", args.model_type, args.threads, False, tmp / "c",
                                   base)
        total = time.perf_counter() - started
    result = {"model_type": args.model_type, "tiles": args.tiles_side ** 2, "threads": args.threads,
              "epoch_s_cached": cached, "epoch_s_recomputed": recomputed,
              "ratio": round(recomputed / cached, 2), "uncached_run_s": round(total, 2)}
    print(f"{args.model_type}, {result['tiles']} tiles: cached epoch {cached:.2f} s, recomputed epoch "
          f"{recomputed:.2f} s, {result['ratio']:.1f}x")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_cache.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
