"""Peak memory of `prepare` on a 20000 x 20000 px synthetic scene against a 2000 x 2000 px one.

    python benchmarks/prepare_memory.py [--big 20000] [--small 2000] [--workdir /tmp/shipseg-bench]

Both scenes are 4-band uint16 (Sentinel-2-like) with ships in proportion to their area; each prepare runs in its
own process so its peak RSS is its own. Prints a markdown table and writes benchmarks/results/prepare_memory.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from _common import s2_scene
from _measure import measure


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=2000)
    ap.add_argument("--big", type=int, default=20000)
    ap.add_argument("--tile-size", type=int, default=512)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/shipseg-bench"))
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in (args.small, args.big):
        tif, truth = s2_scene(size, args.workdir)
        out = args.workdir / f"dataset_{size}"
        shutil.rmtree(out, ignore_errors=True)
        stats = measure(f"""
            from samgeo_ship.dataset import prepare_dataset
            t0 = time.perf_counter()
            s = prepare_dataset({str(tif)!r}, {str(truth)!r}, {str(out)!r}, tile_size={args.tile_size}, overlap=32)
            print("ships", s.ships, "tiles", s.tiles)
        """)
        shutil.rmtree(out, ignore_errors=True)
        rows.append({"size_px": size, **stats})
    ratio = rows[1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    print("| scene (px) | peak RSS (MB) | wall (s) |\n|---|---|---|")
    for r in rows:
        print(f"| {r['size_px']} x {r['size_px']} | {r['peak_rss_mb']:.0f} | {r['seconds']:.1f} |")
    print(f"\npeak memory ratio {args.big}/{args.small}: {ratio:.2f} (target <= 1.5); "
          f"area ratio {(args.big / args.small) ** 2:.0f}x, time ratio {rows[1]['seconds'] / rows[0]['seconds']:.1f}x")
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / "prepare_memory.json").write_text(json.dumps({"runs": rows, "memory_ratio": ratio}, indent=2))


if __name__ == "__main__":
    main()
