"""Peak memory of box-prompted `detect` with an official-format vit_b checkpoint on a 4096 x 4096 px scene against a
1024 x 1024 px one: memory must not grow with the scene (largest / smallest <= 1.5).

    python benchmarks/official_memory.py [--model sam_vit_b_01ec64.pth] [--sizes 1024 4096] [--work DIR]

The model is Meta's vit_b when ``--model`` names it, else an official-format vit_b state_dict with random weights
(segment_anything's builder and torch.save, as the tests make it): the memory of a pass does not depend on the
weights' values. Scenes are 8-bit RGB at 0.3 m. Each scene gets five boxes of about 60 m along its diagonal
(only the tiles holding a box are encoded) and, on scenes larger than two tiles, one box 1.5 tiles long, segmented
whole in a decimated window. Each detect runs in a fresh process
(benchmarks/_measure.py), so its peak RSS (ru_maxrss) is its own; the time excludes imports and model loading.
Results: benchmarks/results/official_memory.json.
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import save  # noqa: E402
from benchmarks._measure import measure  # noqa: E402

PIXEL_M = 0.3
TILE = 1024  # the official card's tile: SAM's input size, in scene pixels
BOX_PX = 200  # 60 m at 0.3 m


def random_vit_b(work: Path) -> Path:
    path = work / "random_vit_b.pth"
    if not path.exists():
        import torch
        from segment_anything import build_sam_vit_b

        torch.manual_seed(0)
        torch.save(build_sam_vit_b(checkpoint=None).state_dict(), path)
    return path


def scene_and_boxes(size: int, work: Path) -> tuple[Path, Path]:
    """An RGB scene of ``size`` px written in strips (never whole in memory) and its boxes as GeoJSON."""
    import geopandas as gpd
    import rasterio
    import shapely
    from affine import Affine

    path, boxes_path = work / f"ortho_{size}.tif", work / f"ortho_{size}.boxes.geojson"
    transform = Affine(PIXEL_M, 0, 500_000.0, 0, -PIXEL_M, 5_700_000.0)
    if not path.exists():
        rng = np.random.default_rng(size)
        profile = {"driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8",
                   "crs": "EPSG:32631", "transform": transform, "tiled": True, "compress": "deflate"}
        with rasterio.open(path, "w", **profile) as dst:
            for row in range(0, size, 512):
                h = min(512, size - row)
                dst.write(rng.integers(0, 255, (3, h, size), dtype=np.uint8),
                          window=rasterio.windows.Window(0, row, size, h))
    centres = np.linspace(BOX_PX, size - BOX_PX, 5)
    px = [(c - BOX_PX / 2, c - BOX_PX / 4, c + BOX_PX / 2, c + BOX_PX / 4) for c in centres]
    if size > 2 * TILE:
        px.append((size / 2 - 0.75 * TILE, size / 4, size / 2 + 0.75 * TILE, size / 4 + 200))
    geoms = []
    for c0, r0, c1, r1 in px:
        x0, y1 = transform * (c0, r0)
        x1, y0 = transform * (c1, r1)
        geoms.append(shapely.box(x0, y0, x1, y1))
    gpd.GeoDataFrame(geometry=geoms, crs="EPSG:32631").to_file(boxes_path)
    return path, boxes_path


def detect(scene: Path, boxes: Path, model: Path, cpus: int) -> dict:
    return measure(f"""
        import os
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:{cpus}])
        from samgeo_ship import ShipDetector
        detector = ShipDetector({str(model)!r}, device="cpu", batch_size=1)
        tiles = []
        t0, c0 = time.perf_counter(), time.process_time()
        ships = detector.detect({str(scene)!r}, boxes={str(boxes)!r},
                                progress=lambda done, total, n: tiles.append(total))
        print("@@" + json.dumps({{"ships": len(ships), "tiles": tiles[-1]}}))
    """)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="an official vit_b .pth (default: random weights)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096], help="scene sides, px")
    ap.add_argument("--cpus", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--work", type=Path, default=Path("/tmp/shipseg-bench"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    model = args.model or random_vit_b(args.work)
    runs = []
    for size in sorted(args.sizes):
        scene, boxes = scene_and_boxes(size, args.work)
        run = {"size_px": size, **detect(scene, boxes, model, args.cpus)}
        runs.append(run)
        print(f"{size} x {size} px: {run['tiles']} tiles, {run['ships']} ships, {run['seconds']:.1f} s wall, "
              f"peak RSS {run['peak_rss_mb']:.0f} MB", flush=True)
    save("official_memory", {
        "runs": runs,
        "memory_ratio": runs[-1]["peak_rss_mb"] / runs[0]["peak_rss_mb"],
        "model": str(model) if args.model else "vit_b, random weights (official format)",
        "cpus": args.cpus,
    })


if __name__ == "__main__":
    main()
