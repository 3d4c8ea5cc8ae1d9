"""Overhead of `detect` over the model alone, on the same tiles: detect's wall time divided by the time of the
forward passes (encode + propose + decode of the same batches) on tiles already in memory. Target <= 1.15: reading,
vectorising and merging overlap with compute in the background threads.

    python benchmarks/detect_overhead.py [--size 2000] [--work /tmp/shipseg-bench] [--model BUNDLE]

``--model``: a trained bundle (e.g. samgeo_ship/data/default.safetensors) instead of a random sam_tiny; a trained
proposer's number of proposals, and so of decoder passes, is that of real use. Its wall time per megapixel is
``detect_s / (size_px / 1000) ** 2``.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import bundle, save, scene  # noqa: E402
from samgeo_ship import ShipDetector  # noqa: E402
from samgeo_ship.inference.detector import _torch_threads  # noqa: E402


def model_only(scene_path, detector: ShipDetector) -> tuple[float, int]:
    """Seconds of forward passes over the tiles detect would encode (tiles read beforehand, not timed)."""
    with detector.open(scene_path) as s:
        grid = detector.grid(s)
        tiles = []
        for tile in grid:
            image, valid = s.read(tile.window)
            rs, cs = tile.core_slices()
            if valid[rs, cs].any():
                tiles.append(image)
    batch_size = detector.batch_size
    with _torch_threads(torch.device("cpu")):
        start = time.perf_counter()
        for i in range(0, len(tiles), batch_size):
            detector.predictor.predict(np.stack(tiles[i:i + batch_size]))
        return time.perf_counter() - start, len(tiles)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--work", type=Path, default=Path("/tmp/shipseg-bench"))
    ap.add_argument("--model", type=Path, default=None, help="a trained bundle [a random sam_tiny]")
    ap.add_argument("--name", default="detect_overhead", help="results file name [%(default)s]")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    detector = ShipDetector(args.model or bundle(args.work), device="cpu", batch_size=args.batch_size)
    path = scene(args.size, args.work)
    detector.detect(path)  # warm-up: page cache, torch kernels
    forward_s, n_tiles = model_only(path, detector)
    start = time.perf_counter()
    ships = detector.detect(path)
    detect_s = time.perf_counter() - start
    save(args.name, {"size_px": args.size, "tiles": n_tiles, "ships": len(ships), "forward_s": forward_s,
                     "detect_s": detect_s, "overhead_ratio": detect_s / forward_s,
                     "seconds_per_megapixel": detect_s / (args.size / 1000) ** 2,
                     "model": str(args.model) if args.model else "sam_tiny (random init)"})


if __name__ == "__main__":
    main()
