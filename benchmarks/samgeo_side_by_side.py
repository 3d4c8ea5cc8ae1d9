"""samgeo beside shipseg on the same scene, the same vit_b weights and the same number of encoder inputs: wall time
and peak RSS of each (medians of ``--rounds`` rounds, each run in a fresh process), and their ratios.

    python benchmarks/samgeo_side_by_side.py --samgeo-python /work/samgeo-venv/bin/python [--size 512]
    SHIPSEG_SAMGEO_PYTHON=/path/to/venv/bin/python python benchmarks/samgeo_side_by_side.py --size 1024

samgeo (segment-geospatial 1.4.2) runs in its own environment, named by ``--samgeo-python`` or the environment
variable SHIPSEG_SAMGEO_PYTHON (an interpreter that can ``import samgeo``); without one the benchmark says so and
exits 0. To make one without a second torch download, give a venv the torch of shipseg's environment at the end of
its path (a ``.pth`` file holding shipseg's site-packages folder) and ``pip install segment-geospatial==1.4.2``.

- weights: an official-format vit_b checkpoint with random weights (segment_anything's builder, ``torch.save`` of
  the state_dict; time and memory do not depend on the values), read by samgeo as its ``checkpoint`` and loaded into
  a shipseg vit_b bundle (the same SAM weights plus a randomly initialised ship prompter).
- scene: a ``--size`` px square RGB crop (8-bit, 1-99 % stretched) of a sen2ships scene (``--data``), or a
  synthetic harbour when the data is absent, 10 m pixels.
- samgeo: ``SamGeo(model_type="vit_b", checkpoint=..., automatic=True).generate(scene, out, batch=True)``: its
  default 512 px samples with a 128 px border, each 768 px window upscaled to SAM's 1024 px input and segmented by
  the automatic mask generator (32 x 32 point prompts). shipseg: ``ShipDetector(bundle).detect(scene)`` with
  1024 px tiles and a 128 px halo at 10 m (the encoder sees each tile at 1:1), the learned prompter.
  Encoder inputs: samgeo len(range(-128, size, 512))² windows, shipseg ceil(size / 768)² tiles: the default
  384 px scene gives one each, 1024 px gives 9 and 4 (the issue's comparison); the per-input figures compare
  sizes that give different counts.

Wall time counts the model's construction and the run (not Python's imports); peak RSS is the process's ru_maxrss.
Results: benchmarks/results/samgeo_side_by_side.json.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks._common import save  # noqa: E402
from benchmarks._measure import _CHILD  # noqa: E402

TILE, HALO = 1024, 128  # shipseg's vit_b tiling at 10 m
SAMPLE, BORDER = 512, 128  # samgeo's batch defaults

SAMGEO = """
import os
from samgeo import SamGeo
t0, c0 = time.perf_counter(), time.process_time()
sam = SamGeo(model_type="vit_b", checkpoint={checkpoint!r}, automatic=True, device="cpu")
g0 = time.perf_counter()
sam.generate({scene!r}, {out!r}, batch=True)
print("@@" + json.dumps({{"run_s": time.perf_counter() - g0}}))
"""

SHIPSEG = """
from samgeo_ship import ShipDetector
t0, c0 = time.perf_counter(), time.process_time()
detector = ShipDetector({bundle!r}, device="cpu")
g0 = time.perf_counter()
ships = detector.detect({scene!r})
print("@@" + json.dumps({{"run_s": time.perf_counter() - g0, "ships": len(ships),
                          "batch_size": detector.batch_size}}))
"""


def samgeo_python(given: str | None) -> str | None:
    """The interpreter of samgeo's environment, or None (with the reason printed) when there is none usable."""
    python = given or os.environ.get("SHIPSEG_SAMGEO_PYTHON")
    if not python:
        print("samgeo side by side skipped: no samgeo environment (give --samgeo-python or SHIPSEG_SAMGEO_PYTHON)")
        return None
    probe = subprocess.run([python, "-c", "import samgeo; print(samgeo.__version__)"], capture_output=True, text=True)
    if probe.returncode != 0:
        print(f"samgeo side by side skipped: {python} cannot import samgeo ({probe.stderr.strip().splitlines()[-1:]})")
        return None
    return python


def weights(work: Path) -> tuple[Path, Path]:
    """(the official-format random vit_b checkpoint, a shipseg vit_b bundle holding the same SAM weights)."""
    import torch
    from segment_anything import build_sam_vit_b

    from samgeo_ship.models.bundle import BundleCard, save_bundle
    from samgeo_ship.models.shipsam import ShipSam

    pth, bundle = work / "random_vit_b.pth", work / "random_vit_b_same.safetensors"
    if not pth.exists():
        torch.manual_seed(0)
        torch.save(build_sam_vit_b(checkpoint=None).state_dict(), pth)
    if not bundle.exists():
        torch.manual_seed(1)
        net = ShipSam.from_config("vit_b")
        net.sam.load_state_dict(torch.load(pth, weights_only=True))
        save_bundle(net, BundleCard("vit_b", ["red", "green", "blue"], 10.0, TILE, HALO), bundle)
    return pth, bundle


def crop(size: int, data: Path, work: Path) -> Path:
    """A ``size`` px RGB 8-bit crop of the largest sen2ships scene that fits it, or a synthetic harbour."""
    import rasterio
    from rasterio.windows import Window

    path = work / f"side_by_side_{size}.tif"
    if path.exists():
        return path
    scenes = [p for p in sorted(data.glob("*/scene.tif"))] if data.is_dir() else []
    for scene in scenes:
        with rasterio.open(scene) as src:
            names = [d.lower() if d else "" for d in src.descriptions]
            if src.width < size or src.height < size or not {"b04", "b03", "b02"} <= set(names):
                continue
            window = Window((src.width - size) // 2, (src.height - size) // 2, size, size)
            rgb = np.stack([src.read(names.index(b) + 1, window=window) for b in ("b04", "b03", "b02")])
            lo, hi = np.percentile(rgb, [1, 99], axis=(1, 2))
            rgb = np.clip((rgb - lo[:, None, None]) / (hi - lo)[:, None, None] * 255, 0, 255).astype(np.uint8)
            profile = {"driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8",
                       "crs": src.crs, "transform": src.window_transform(window)}
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(rgb)
                dst.descriptions = ("red", "green", "blue")
            return path
    from samgeo_ship.synthetic import SynthSpec, make_scene
    make_scene(SynthSpec(size, size, bands="rgb8", n_ships=max(5, size * size // 80_000), seed=size), path)
    return path


def run(python: str, body: str) -> dict:
    """``body`` in a fresh ``python``: its @@ results, wall time (from after imports) and ru_maxrss in MB."""
    code = _CHILD.format(body=body)
    out = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)} if python == sys.executable else None).stdout
    result = {}
    for line in out.splitlines():
        if line.startswith("@@"):
            result.update(json.loads(line[2:]))
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samgeo-python", default=None, help="python of an environment with segment-geospatial")
    ap.add_argument("--size", type=int, default=384, help="scene side, px (384: one encoder input each)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "sen2ships")
    ap.add_argument("--work", type=Path, default=Path("/tmp/shipseg-samgeo"))
    args = ap.parse_args()
    python = samgeo_python(args.samgeo_python)
    if python is None:
        return
    args.work.mkdir(parents=True, exist_ok=True)
    checkpoint, bundle = weights(args.work)
    scene = crop(args.size, args.data, args.work)
    inputs = {"samgeo": len(range(-BORDER, args.size, SAMPLE)) ** 2,
              "shipseg": math.ceil(args.size / (TILE - 2 * HALO)) ** 2}
    rounds = {"samgeo": [], "shipseg": []}
    for k in range(args.rounds):  # alternated, so a change in the machine's load falls on both
        out = args.work / f"samgeo_mask_{k}.tif"
        rounds["samgeo"].append(run(python, SAMGEO.format(checkpoint=str(checkpoint), scene=str(scene),
                                                          out=str(out))))
        rounds["shipseg"].append(run(sys.executable, SHIPSEG.format(bundle=str(bundle), scene=str(scene))))
        print(f"round {k + 1}: " + "; ".join(f"{tool} {r[-1]['seconds']:.1f} s, {r[-1]['peak_rss_mb']:.0f} MB"
                                             for tool, r in rounds.items()), flush=True)
    median = {tool: {key: statistics.median(r[key] for r in runs) for key in ("seconds", "run_s", "peak_rss_mb")}
              for tool, runs in rounds.items()}
    for tool in median:
        median[tool]["seconds_per_input"] = median[tool]["seconds"] / inputs[tool]
    save("samgeo_side_by_side", {
        "scene": str(scene), "size_px": args.size, "encoder_inputs": inputs, "rounds": rounds, "median": median,
        "speed_ratio": median["samgeo"]["seconds"] / median["shipseg"]["seconds"],
        "speed_ratio_per_input": median["samgeo"]["seconds_per_input"] / median["shipseg"]["seconds_per_input"],
        "memory_ratio": median["shipseg"]["peak_rss_mb"] / median["samgeo"]["peak_rss_mb"],
        "samgeo_python": python, "cpus": len(os.sched_getaffinity(0)), "load_average_after": os.getloadavg(),
        "weights": "official-format vit_b, random weights (the same SAM weights in both)"})


if __name__ == "__main__":
    main()
