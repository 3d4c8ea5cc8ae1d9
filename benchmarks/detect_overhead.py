"""Overhead of `detect` over the model alone, on the same tiles: detect's wall time divided by the time of the
forward passes (encode + propose + decode of the same batches) on tiles already in memory. Target <= 1.15: reading,
vectorising and merging overlap with compute in the background threads.

    python benchmarks/detect_overhead.py [--size 2000] [--work /tmp/shipseg-bench]
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import bundle, save, scene  # noqa: E402
from samgeo_ship.inference.detect import _torch_threads, detect_scene, load_model, open_scene, tile_grid  # noqa: E402
from samgeo_ship.inference.predictor import TilePredictor  # noqa: E402


def model_only(scene_path, model_path, batch_size) -> tuple[float, int]:
    """Seconds of forward passes over the tiles detect would encode (tiles read beforehand, not timed)."""
    net, card, _ = load_model(model_path, torch.device("cpu"))
    with open_scene(scene_path, card) as s:
        grid = tile_grid(s, card)
        tiles = []
        for tile in grid:
            image, valid = s.read(tile.window)
            rs, cs = tile.core_slices()
            if valid[rs, cs].any():
                tiles.append(image)
    predictor = TilePredictor(net, card, "cpu")
    with _torch_threads(torch.device("cpu")):
        start = time.perf_counter()
        for i in range(0, len(tiles), batch_size):
            predictor.predict(np.stack(tiles[i:i + batch_size]))
        return time.perf_counter() - start, len(tiles)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--work", type=Path, default=Path("/tmp/shipseg-bench"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    model, path = bundle(args.work), scene(args.size, args.work)
    detect_scene(path, model, device="cpu", batch_size=args.batch_size)  # warm-up: page cache, torch kernels
    forward_s, n_tiles = model_only(path, model, args.batch_size)
    start = time.perf_counter()
    ships = detect_scene(path, model, device="cpu", batch_size=args.batch_size)
    detect_s = time.perf_counter() - start
    save("detect_overhead", {"size_px": args.size, "tiles": n_tiles, "ships": len(ships), "forward_s": forward_s,
                             "detect_s": detect_s, "overhead_ratio": detect_s / forward_s,
                             "model": "sam_tiny (random init)"})


if __name__ == "__main__":
    main()
