"""Peak memory and time of `detect` on synthetic scenes of growing size: memory must not grow with the scene
(largest / smallest <= 1.5) and time should grow linearly with the area (the same seconds per megapixel).

    python benchmarks/detect_scaling.py [--sizes 2000 6000 20000] [--cpus N] [--work /tmp/shipseg-bench]

The model is the bundled default (sam_tiny, 256 px input) with a card whose tiles are 256 px windows at the
scenes' 10 m pixels, overlap 16 (benchmarks/_common.default_model_at): each tile costs what a production tile costs
(one 256 px encoder pass, the decoder per proposal), but a 20000 x 20000 px scene is 8,100 tiles instead of the
~230,000 of the production 64 px windows (56 px at 10 m), which would take many hours on two cores. Scenes are
Sentinel-2-like 4-band uint16 with one ship per 40,000 px (benchmarks/_common.s2_scene, shared with
prepare_memory.py).

Each detect runs in a fresh process, so its peak RSS (ru_maxrss) is its own; the time is ShipDetector.detect alone
(imports, model loading excluded), as wall time and as CPU time: on a machine shared with other jobs only the CPU
time is a fair test of linearity. Results: benchmarks/results/detect_scaling.json.
"""

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import default_model_at, s2_scene, save  # noqa: E402
from benchmarks._measure import measure  # noqa: E402

PIXEL_M, TILE, OVERLAP = 10.0, 256, 16


def detect(scene: Path, model: Path, cpus: int) -> dict:
    """One ShipDetector.detect in a fresh process limited to ``cpus`` cores (detect uses one torch thread per core)."""
    return measure(f"""
        import os
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:{cpus}])
        from samgeo_ship import ShipDetector
        detector = ShipDetector({str(model)!r}, device="cpu", batch_size=4)
        tiles = []
        t0, c0 = time.perf_counter(), time.process_time()
        ships = detector.detect({str(scene)!r}, progress=lambda done, total, n: tiles.append(total))
        print("@@" + json.dumps({{"ships": len(ships), "tiles": tiles[-1]}}))
    """)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 6000, 20000], help="scene sides, px")
    ap.add_argument("--cpus", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--work", type=Path, default=Path("/tmp/shipseg-bench"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    model = default_model_at(args.work, PIXEL_M, TILE, OVERLAP)
    runs = []
    for size in sorted(args.sizes):
        scene, _ = s2_scene(size, args.work)
        run = {"size_px": size, "megapixels": size * size / 1e6, **detect(scene, model, args.cpus)}
        run["s_per_megapixel"] = run["seconds"] / run["megapixels"]
        run["cpu_s_per_megapixel"] = run["cpu_seconds"] / run["megapixels"]
        runs.append(run)
        print(f"{size} x {size} px: {run['tiles']} tiles, {run['ships']} ships, {run['seconds']:.1f} s wall "
              f"({run['s_per_megapixel']:.2f} s/MP), {run['cpu_seconds']:.1f} s CPU ({run['cpu_s_per_megapixel']:.2f} "
              f"s/MP), peak RSS {run['peak_rss_mb']:.0f} MB", flush=True)
    small, large = runs[0], runs[-1]
    save("detect_scaling", {
        "runs": runs,
        "memory_ratio": large["peak_rss_mb"] / small["peak_rss_mb"],
        "area_ratio": large["megapixels"] / small["megapixels"],
        "time_ratio": large["seconds"] / small["seconds"],
        "time_per_megapixel_ratio": large["s_per_megapixel"] / small["s_per_megapixel"],
        "cpu_time_per_megapixel_ratio": large["cpu_s_per_megapixel"] / small["cpu_s_per_megapixel"],
        "model": f"bundled default (sam_tiny) weights; card: {TILE} px tiles at {PIXEL_M:g} m, overlap {OVERLAP} px",
        "cpus": args.cpus,
    })


if __name__ == "__main__":
    main()
