"""A whole Sentinel-2 tile: `detect` with the bundled default model on a 10,980 x 10,980 px scene (synthetic, 4 x
uint16 B04, B03, B02, B08, 10 m; made once with `shipseg synth`), in a fresh process: wall time, CPU time, peak RSS
(ru_maxrss), tiles, tiles skipped for holding no water, ships found, the load average beside them.

    python benchmarks/full_scene.py [--work /tmp/shipseg-full] [--device cpu] [--all-tiles]
    python benchmarks/full_scene.py --device cuda --batch-size 64     # on a machine with a GPU

The default model reads 64 px windows (48 px cores at 10 m with its 8 px overlap): 52,441 tiles on a full scene, so a
run takes most of an hour on 2 CPU cores; on a GPU the same command with ``--device cuda`` and a larger batch.
``--scene`` runs on a scene of your own (any size) instead. A progress log (``progress.jsonl`` in ``--work``,
one line per 0.5 % of the tiles) tells the rate while it runs."""

import argparse
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import save  # noqa: E402
from benchmarks._measure import _CHILD  # noqa: E402

SIDE = 10980  # a Sentinel-2 L1C/L2A tile at 10 m: 109.8 km

RUN = """
import json, time
from samgeo_ship import ShipDetector
log = open({log!r}, "w")
t0, c0 = time.perf_counter(), time.process_time()
detector = ShipDetector.for_scene({scene!r}, device={device!r}, batch_size={batch}, all_tiles={all_tiles})
step = [0]

def report(done, total, ships):
    if done >= step[0] or done == total:
        step[0] = done + max(1, total // 200)
        log.write(json.dumps({{"s": round(time.perf_counter() - t0, 1), "done": done, "total": total,
                               "ships": ships}}) + "\\n")
        log.flush()

with detector.open({scene!r}) as opened:
    tiles = len(detector.grid(opened))
    w0 = time.perf_counter()
    detector.wet_grid(opened)  # timed alone here; detect does it again
    water_s = round(time.perf_counter() - w0, 2)
    ships = detector.detect(opened, progress=report, on_plan=lambda plan: log.write(json.dumps(plan) + "\\n"))
print("@@" + json.dumps({{"tiles": tiles, "water_test_s": water_s, "tiles_skipped": detector.tiles_skipped,
                          "ships": len(ships), "model": detector.name}}))
"""


def synthetic(work: Path, ships: int) -> Path:
    """The 10,980² px synthetic scene (written once: ~1 min, ~430 MB)."""
    path = work / f"s2_{SIDE}.tif"
    if not path.exists():
        subprocess.run([sys.executable, "-m", "shipseg_cli.main", "synth", str(path), "--size", f"{SIDE}x{SIDE}",
                        "--bands", "s2", "--ships", str(ships), "--seed", "11", "-q"], check=True)
    return path


def run(body: str, max_s: float | None) -> dict:
    """Run ``body`` in a fresh interpreter (as benchmarks._measure does) and return what it prints after "@@",
    plus its wall time and peak RSS (the kernel's ru_maxrss of the child, also when it is stopped at ``max_s``)."""
    code = _CHILD.format(body=textwrap.dedent(body))
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    timer = threading.Timer(max_s, child.terminate) if max_s else None
    if timer:
        timer.start()
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    if timer:
        timer.cancel()
    result = {"wall_s": round(time.perf_counter() - start, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024),
              "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "finished": status == 0}
    for line in out.splitlines():
        if line.startswith("@@"):
            result.update(json.loads(line[2:]))
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("/tmp/shipseg-full"))
    ap.add_argument("--scene", type=Path, default=None, help="A scene of your own instead of the synthetic one.")
    ap.add_argument("--ships", type=int, default=3000, help="Ships in the synthetic scene.")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto.")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--all-tiles", action="store_true", help="Encode tiles far from water too.")
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="Stop the run after this long and report the tiles done, their rate and the projected "
                         "wall time (for a busy machine; the peak RSS is the run's so far).")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    scene = args.scene or synthetic(args.work, args.ships)
    log = args.work / "progress.jsonl"
    load_before = os.getloadavg()
    result = run(RUN.format(log=str(log), scene=str(scene), device=args.device, batch=args.batch_size,
                            all_tiles=args.all_tiles), args.max_minutes and args.max_minutes * 60)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    plan = next((line for line in lines if "tiles_total" in line), {})
    last = next((line for line in reversed(lines) if "done" in line), {})
    result.update(tiles_to_encode=plan.get("tiles_total"), tiles_done=last.get("done"), ships_so_far=last.get("ships"))
    if not result["finished"] and last.get("done"):  # the rate of the tiles after the water test and start-up
        first = next(line for line in lines if "done" in line)
        rate = (last["s"] - first["s"]) / max(1, last["done"] - first["done"])
        result["seconds_per_tile"] = round(rate, 4)
        result["projected_wall_s"] = round(last["s"] + rate * (last["total"] - last["done"]))
    result.update(scene=str(scene), device=args.device, batch_size=args.batch_size, all_tiles=args.all_tiles,
                  cpus=len(os.sched_getaffinity(0)), load_average_before=load_before,
                  load_average_after=os.getloadavg())
    save("full_scene", result)


if __name__ == "__main__":
    main()
