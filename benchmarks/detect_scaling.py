"""Peak memory and time of `detect` on a small and a 100x larger scene: memory must not grow with the scene
(ratio <= 1.5), time should grow with the area (~100x).

    python benchmarks/detect_scaling.py [--size 20000] [--small 2000] [--work /tmp/shipseg-bench]

Each run is a fresh process, so its peak RSS (ru_maxrss) is its own. Results: benchmarks/results/detect_scaling.json.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import bundle, save, scene  # noqa: E402

CHILD = """
import json, resource, sys, time
from samgeo_ship.inference.detect import detect_scene
t = time.perf_counter()
ships = detect_scene(sys.argv[1], sys.argv[2], device="cpu", batch_size=4)
print(json.dumps({"wall_s": time.perf_counter() - t, "ships": len(ships),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(scene_path: Path, model: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(scene_path), str(model)], check=True, capture_output=True,
                         text=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", type=int, default=2000)
    ap.add_argument("--size", type=int, default=20000, help="side of the large scene, px")
    ap.add_argument("--work", type=Path, default=Path("/tmp/shipseg-bench"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    model = bundle(args.work)
    small, large = measure(scene(args.small, args.work), model), measure(scene(args.size, args.work), model)
    save("detect_scaling", {
        "small_px": args.small, "large_px": args.size, "area_ratio": (args.size / args.small) ** 2,
        "small": small, "large": large,
        "memory_ratio": large["peak_rss_mb"] / small["peak_rss_mb"],
        "time_ratio": large["wall_s"] / small["wall_s"],
        "model": "sam_tiny (random init)", "cpu_threads": len(__import__("os").sched_getaffinity(0)),
    })


if __name__ == "__main__":
    main()
