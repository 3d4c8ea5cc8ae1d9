"""Tiles skipped for holding no water (samgeo_ship.inference.water), per scene: the tiles of the default model's
grid, how many the water test leaves out, the truth ships that touch a left-out tile's core (must be 0: a ship
there could be lost), and the time `detect` saves (with and without skipping, same run, default model).

    python benchmarks/water_skip.py [--data ../shared/data/sen2ships] [--no-timing] [--scenes busan genoa]

Scenes: the eleven sen2ships scenes (when the folder exists) and the sample scenes. Timing runs only where the
default model can read the scene (it needs B04, B03, B02: santos and los_angeles lack blue)."""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import save  # noqa: E402
from samgeo_ship import ShipDetector  # noqa: E402
from samgeo_ship.errors import ShipsegError  # noqa: E402
from samgeo_ship.labels import load_labels  # noqa: E402
from samgeo_ship.raster import Scene  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ["harbour_s2_16bit", "harbour_rgb", "harbour_4326"]


def scenes(data: Path, only) -> list[tuple[str, Path, Path]]:
    """(name, scene, truth) of the sen2ships scenes under ``data`` and the samples, those in ``only`` if given."""
    found = []
    if data.is_dir():
        found += [(d.name, d / "scene.tif", d / "labels.coco.json") for d in sorted(data.iterdir())
                  if (d / "scene.tif").exists()]
    found += [(n, ROOT / "sample_tiles" / f"{n}.tif", ROOT / "sample_tiles" / f"{n}.geojson") for n in SAMPLES]
    return [s for s in found if not only or s[0] in only]


def ships_in_skipped(grid, skipped, scene_path: Path, truth: Path) -> tuple[int, int]:
    """(truth ships, those whose pixel bounds touch the core of a skipped tile)."""
    with Scene.open(scene_path) as scene:
        ships = load_labels(truth, scene).ships
        inverse = ~scene.transform
    cs, hits = grid.core_size, 0
    for geom in ships.geometry:
        xmin, ymin, xmax, ymax = geom.bounds
        cols, rows = zip(*(inverse @ (x, y) for x in (xmin, xmax) for y in (ymin, ymax)))
        tiles = {(r, c) for r in range(int(min(rows) // cs), int(max(rows) // cs) + 1)
                 for c in range(int(min(cols) // cs), int(max(cols) // cs) + 1)}
        hits += bool(tiles & skipped)
    return len(ships), hits


def timed(detector: ShipDetector, path: Path) -> tuple[float, int]:
    start = time.perf_counter()
    ships = detector.detect(path)
    return time.perf_counter() - start, len(ships)


def measure(name, path, truth, skipping: ShipDetector, everything: ShipDetector, timing: bool) -> dict:
    with Scene.open(path) as scene:  # the grid needs only the pixel size: also for scenes the model cannot read
        grid = skipping.grid(scene)
        wet = skipping.wet_grid(scene)
    n_ships, lost = ships_in_skipped(grid, wet.skipped, path, truth)
    row = {"scene": name, "tiles": len(grid), "skipped": len(wet.skipped),
           "skipped_share": round(len(wet.skipped) / len(grid), 3), "truth_ships": n_ships,
           "truth_ships_in_skipped_tiles": lost}
    if timing:
        try:
            row["detect_all_s"], row["ships_all"] = timed(everything, path)
            row["detect_skip_s"], row["ships_skip"] = timed(skipping, path)
            row["saved_share"] = round(1 - row["detect_skip_s"] / row["detect_all_s"], 3)
        except ShipsegError as exc:
            row["timing"] = f"not run: {exc}"
    print(row, flush=True)
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "sen2ships")
    ap.add_argument("--scenes", nargs="*", default=None)
    ap.add_argument("--no-timing", action="store_true", help="Count tiles and ships only (seconds, not minutes).")
    args = ap.parse_args()
    skipping = ShipDetector(None, device="cpu")
    everything = ShipDetector(None, device="cpu", all_tiles=True)
    rows = [measure(*s, skipping, everything, not args.no_timing) for s in scenes(args.data, args.scenes)]
    save("water_skip", {"rows": rows, "lost_total": sum(r["truth_ships_in_skipped_tiles"] for r in rows),
                        "load_average": os.getloadavg(), "model": skipping.name})


if __name__ == "__main__":
    main()
