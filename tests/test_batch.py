"""shipseg batch: a small archive with two broken files, run in process, killed and resumed, and on a Dask cluster
with a worker killed mid-run; the real detection path with a randomly initialised sam_tiny bundle."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.features import shapes

from shipseg_cli.main import cli
from samgeo_ship.batch import MANIFEST, MERGED, discover_scenes, process_scene, run_batch
from samgeo_ship.batch.inputs import SceneRef
from samgeo_ship.errors import ShipsegError, fail

from conftest import write_raster

ROOT = Path(__file__).resolve().parents[1]
N_GOOD = 12
BROKEN = {"garbage": "not a raster GDAL can read", "nocrs": "CRS"}


def _scene(path, seed, n_ships=3, crs="EPSG:32631", when=None):
    """A 96 px 4-band uint16 scene (one tile of the tiny bundle): noisy water with ``n_ships`` bright rectangles."""
    rng = np.random.default_rng(seed)
    data = rng.integers(300, 700, size=(4, 96, 96), dtype=np.uint16)
    for _ in range(n_ships):
        r, c = rng.integers(6, 76, size=2)
        data[:, r:r + 4, c:c + rng.integers(6, 14)] = 4000
    write_raster(path, data, crs=crs, descriptions=["B04", "B03", "B02", "B08"])
    if when:
        with rasterio.open(path, "r+") as dst:
            dst.update_tags(TIFFTAG_DATETIME=when)
    return path


def bright_ships(scene_path, model, device="cpu"):
    """Stand-in detector with known output: the bright rectangles of band 1, as polygons in the scene CRS."""
    with rasterio.open(scene_path) as src:
        if src.crs is None:
            raise fail(scene_path, "has no CRS")
        band = src.read(1)
        geoms = [g for g, v in shapes((band > 2000).astype(np.uint8), transform=src.transform) if v == 1]
        crs = src.crs
    from shapely.geometry import shape
    return gpd.GeoDataFrame({"ship_id": np.arange(1, len(geoms) + 1), "scene": Path(scene_path).stem},
                            geometry=[shape(g) for g in geoms], crs=crs)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """12 good scenes in nested folders (one with TIFFTAG_DATETIME), a garbage .tif and a raster without a CRS."""
    root = tmp_path_factory.mktemp("archive")
    for i in range(N_GOOD):
        sub = root / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        _scene(sub / f"scene{i:02d}.tif", i, when="2024:05:06 07:08:09" if i == 0 else None)
    (root / "garbage.tif").write_bytes(b"this is not a GeoTIFF" * 50)
    _scene(root / "nocrs.tif", 99, crs=None)
    return root


@pytest.fixture(scope="module")
def reference(archive, tiny_bundle, tmp_path_factory):
    """An uninterrupted in-process run with the real detector, through the CLI."""
    out = tmp_path_factory.mktemp("reference")
    result = CliRunner().invoke(cli, ["batch", str(archive), "-o", str(out), "-m", str(tiny_bundle),
                                      "--device", "cpu", "-q"])
    return out, result


def _manifest(out):
    return json.loads((out / MANIFEST).read_text())["scenes"]


def _outputs(out):
    """scene id -> SHA-256 of its output, for every done scene."""
    return {s: r["sha256"] for s, r in _manifest(out).items() if r["state"] == "done"}


def test_failures_are_recorded_and_the_batch_goes_on(reference):
    out, result = reference
    scenes = _manifest(out)
    assert result.exit_code == 1, result.output
    assert sorted(s for s, r in scenes.items() if r["state"] == "done") == [f"scene{i:02d}" for i in range(N_GOOD)]
    for name, reason in BROKEN.items():
        assert scenes[name]["state"] == "failed" and reason in scenes[name]["error"] and name in scenes[name]["error"]
        assert f"failed {name}:" in result.output  # the summary names the failure and its reason
    assert "done          12" in result.output
    for scene_id, rec in scenes.items():
        if rec["state"] == "done":
            assert (out / rec["output"]).is_file() and rec["model_loads"] == 1  # one load, in this process
    assert scenes["scene00"]["acquired"] == "2024-05-06T07:08:09Z"  # from TIFFTAG_DATETIME
    merged = gpd.read_parquet(out / MERGED)
    assert list(merged.columns[:2]) == ["scene_id", "acquired"] and merged.crs.to_epsg() == 4326
    assert not list(out.glob(".*.tmp-*"))


def test_merged_parquet_holds_exactly_the_scene_outputs(archive, tmp_path):
    summary = run_batch(archive, tmp_path, model=None, detector=bright_ships)
    assert len(summary.done) == N_GOOD and set(summary.failed) == set(BROKEN)
    merged = gpd.read_parquet(tmp_path / MERGED)
    parts = []
    for scene_id in summary.done:
        part = gpd.read_file(tmp_path / f"{scene_id}.geojson")
        assert len(part) >= 1 and (part["scene_id"] == scene_id).all()
        parts.append(part.assign(scene_id=scene_id))
    expected = pd.concat(parts, ignore_index=True)
    assert len(merged) == len(expected) == summary.ships
    key = ["scene_id", "ship_id"]
    got, want = merged.sort_values(key).reset_index(drop=True), expected.sort_values(key).reset_index(drop=True)
    assert (got[key].values == want[key].values).all()
    assert all(a.equals_exact(b, 1e-9) for a, b in zip(got.geometry, want.geometry))
    acquired = merged.groupby("scene_id")["acquired"].first()
    assert acquired["scene00"] == pd.Timestamp("2024-05-06T07:08:09Z") and pd.isna(acquired["scene01"])


@pytest.mark.slow
def test_sigkill_mid_batch_then_resume(archive, tiny_bundle, reference, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "shipseg_cli.main", "batch", str(archive), "-o", str(out), "-m", str(tiny_bundle),
           "--device", "cpu", "--progress", "json"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 90
    done = {}
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / MANIFEST).exists():
                done = _outputs(out)
                if len(done) >= 3:
                    break
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert 3 <= len(done) < N_GOOD, "the batch was not killed in the middle"
    before = _manifest(out)  # the manifest survives SIGKILL whole
    stamps = {s: ((out / r["output"]).stat().st_ino, (out / r["output"]).stat().st_mtime_ns)
              for s, r in before.items() if r["state"] == "done"}
    summary = run_batch(archive, out, model=tiny_bundle, device="cpu")
    assert not set(summary.done) & set(stamps) and set(summary.already_done) == set(stamps)
    after = _manifest(out)
    for scene_id, stamp in stamps.items():  # recorded done before the kill: never touched again
        path = out / after[scene_id]["output"]
        assert (path.stat().st_ino, path.stat().st_mtime_ns) == stamp and after[scene_id]["runs"] == 1
    assert _outputs(out) == _outputs(reference[0])
    assert gpd.read_parquet(out / MERGED).equals(gpd.read_parquet(reference[0] / MERGED))
    assert not list(out.glob(".*.tmp-*"))


@pytest.mark.slow
def test_dask_cluster_survives_a_killed_worker(archive, tiny_bundle, reference, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        killed = []

        def kill_one_worker(state):
            if state["done"] >= 1 and not killed and state["left"] >= 4:
                pid = next(iter(client.run(os.getpid).values()))
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        summary = run_batch(archive, tmp_path, model=tiny_bundle, device="cpu", scheduler=client,
                            progress=kill_one_worker)
    assert killed, "no worker was killed"
    assert len(summary.done) == N_GOOD and set(summary.failed) == set(BROKEN)
    scenes = _manifest(tmp_path)
    assert all(r["model_loads"] == 1 for r in scenes.values() if r["state"] == "done")  # once per worker process
    assert len({r["worker"] for r in scenes.values()}) >= 2
    assert _outputs(tmp_path) == _outputs(reference[0])
    assert gpd.read_parquet(tmp_path / MERGED).equals(gpd.read_parquet(reference[0] / MERGED))


def test_stac_item_collection_sets_acquired(archive, tiny_bundle, tmp_path):
    a, b = archive / "a" / "scene01.tif", archive / "b" / "scene02.tif"
    items = [{"type": "Feature", "stac_version": "1.0.0", "id": "S2A_20230102", "properties":
              {"datetime": "2023-01-02T10:30:00Z"}, "assets": {
                  "visual": {"href": str(b), "roles": ["overview"]},
                  "data": {"href": os.path.relpath(a, tmp_path), "type": "image/tiff; application=geotiff",
                           "roles": ["data"]}}, "links": []},
             {"type": "Feature", "stac_version": "1.0.0", "id": "no_data_asset",
              "properties": {"datetime": "2023-01-03T00:00:00Z"}, "assets": {"thumb": {"href": "x.png"}}, "links": []}]
    stac = tmp_path / "items.json"
    stac.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    summary = run_batch(stac, tmp_path / "out", model=tiny_bundle, device="cpu")
    assert summary.done == ["S2A_20230102"] and list(summary.skipped) == ["no_data_asset"] and summary.ok
    scenes = _manifest(tmp_path / "out")
    assert scenes["S2A_20230102"]["source"] == str(a) and scenes["no_data_asset"]["state"] == "skipped"
    assert scenes["S2A_20230102"]["acquired"] == "2023-01-02T10:30:00Z"
    merged = gpd.read_parquet(tmp_path / "out" / MERGED)
    assert str(merged["acquired"].dtype) .startswith("datetime64") and "UTC" in str(merged["acquired"].dtype)
    # --asset picks another asset by key
    assert discover_scenes(stac, asset="visual")[0].path == str(b)


def test_text_list_rerun_and_tampered_output(archive, tiny_bundle, tmp_path):
    listing = tmp_path / "scenes.txt"
    listing.write_text(f"# three scenes\n{archive / 'a' / 'scene01.tif'}\n\n../{tmp_path.name}/missing.tif\n"
                       f"{archive / 'a' / 'scene03.tif'}\n{archive / 'b' / 'scene04.tif'}\n")
    out = tmp_path / "out"
    runner = CliRunner()
    args = ["batch", str(listing), "-o", str(out), "-m", str(tiny_bundle), "--device", "cpu", "-q"]
    first = runner.invoke(cli, args)
    assert first.exit_code == 1 and "missing" in _manifest(out)["missing"]["error"]
    (listing.parent / "missing.tif").write_bytes(Path(archive / "b" / "scene06.tif").read_bytes())
    second = runner.invoke(cli, args)  # only the failed scene is redone
    assert second.exit_code == 0, second.output
    scenes = _manifest(out)
    assert {s: r["runs"] for s, r in scenes.items()} == {"scene01": 1, "scene03": 1, "scene04": 1, "missing": 2}
    again = run_batch(listing, out, model=tiny_bundle, device="cpu")  # everything done: nothing processed
    assert again.done == [] and len(again.already_done) == 4 and _manifest(out) == scenes
    target = out / scenes["scene03"]["output"]
    target.write_text(target.read_text().replace("[]", "[ ]"))  # same meaning, other bytes: hash mismatch
    redo = run_batch(listing, out, model=tiny_bundle, device="cpu")
    assert redo.done == ["scene03"] and _manifest(out)["scene03"]["runs"] == 2
    assert _manifest(out)["scene03"]["sha256"] == scenes["scene03"]["sha256"]


def test_bad_batch_input_exits_2(tmp_path):
    result = CliRunner().invoke(cli, ["batch", str(tmp_path / "nope"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "no such file or folder" in result.output
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(cli, ["batch", str(tmp_path / "empty"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "no file in this folder matches" in result.output
    _scene(tmp_path / "one.tif", 1)
    result = CliRunner().invoke(cli, ["batch", str(tmp_path / "one.tif"), "-o", str(tmp_path / "out"), "-m",
                                      str(tmp_path / "nomodel.safetensors")])
    assert result.exit_code == 2  # a single .tif is neither a folder, a list nor STAC


def test_scene_ids_are_unique_and_a_missing_model_is_bad_input(tmp_path):
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        _scene(tmp_path / sub / "same name.tif", 1)
    ids = [r.scene_id for r in discover_scenes(tmp_path)]
    assert len(set(ids)) == 2 and all(i.startswith("same_name-") for i in ids)
    with pytest.raises(ShipsegError, match="no such model file"):
        run_batch(tmp_path, tmp_path / "out", model=tmp_path / "absent.safetensors")


def test_process_scene_reports_instead_of_raising(tmp_path):
    result = process_scene(SceneRef("ghost", str(tmp_path / "ghost.tif")), None, tmp_path, "gpkg",
                           detector=bright_ships)
    assert result["state"] == "failed" and "ghost.tif" in result["error"] and not list(tmp_path.iterdir())
    ok = process_scene(SceneRef("one", str(_scene(tmp_path / "one.tif", 3))), None, tmp_path, "gpkg",
                       detector="test_batch:bright_ships")
    assert ok["state"] == "done" and ok["ships"] == len(gpd.read_file(tmp_path / "one.gpkg")) >= 1


RENDEZVOUS = "SHIPSEG_TEST_RENDEZVOUS"
RENDEZVOUS_S = 120.0  # the longest a worker waits for the other to start (a bound, never reached unless it fails)


def bright_ships_together(scene_path, model, device="cpu"):
    """bright_ships, but each worker process waits at its first scene until another process has started one too, so
    both workers get work however busy the machine is (otherwise one may finish the archive before the other
    starts). The processes meet by files in the folder the RENDEZVOUS variable names."""
    folder = Path(os.environ[RENDEZVOUS])
    (folder / str(os.getpid())).touch()
    deadline = time.monotonic() + RENDEZVOUS_S
    while len(list(folder.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    return bright_ships(scene_path, model, device)


@pytest.mark.slow
def test_local_worker_processes(archive, tiny_bundle, tmp_path, monkeypatch):
    (tmp_path / "rendezvous").mkdir()
    monkeypatch.setenv(RENDEZVOUS, str(tmp_path / "rendezvous"))
    summary = run_batch(archive, tmp_path / "out", model=tiny_bundle, workers=2, device="cpu",
                        detector="test_batch:bright_ships_together")
    assert len(summary.done) == N_GOOD and set(summary.failed) == set(BROKEN)
    scenes = _manifest(tmp_path / "out")
    workers = {r["worker"] for r in scenes.values()}
    assert len(workers) == 2 and f":{os.getpid()}" not in " ".join(workers)
    assert all(r["model_loads"] == 1 for r in scenes.values())  # each worker process loaded the bundle once
