"""The batch driver: decide what is left to do, hand scenes to an executor (in process, a local process pool or a
Dask cluster), record every result in the manifest as it arrives, and write the merged ships.parquet at the end."""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import shutil
import socket
import time
import uuid
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from samgeo_ship.atomic import write_error
from samgeo_ship.batch.inputs import SceneRef, discover_scenes
from samgeo_ship.batch.manifest import DONE, FAILED, SKIPPED, Manifest, sha256_file
from samgeo_ship.batch.worker import process_scene
from samgeo_ship.errors import fail
from samgeo_ship.vector.writers import FORMATS

MERGED = "ships.parquet"
LOCK = ".shipseg-batch.lock"
SCHEDULER_TIMEOUT_S = 5.0


@dataclass
class BatchSummary:
    """What a run did. ``done``/``failed``/``skipped``: scene ids of this run (failed and skipped with reasons);
    ``already_done``: verified outputs of earlier runs, left alone; ``ships``: ships in all done scenes."""
    outdir: Path
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    already_done: list[str] = field(default_factory=list)
    ships: int = 0
    ships_new: int = 0
    seconds: float = 0.0
    merged: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.failed


def run_batch(source, outdir, *, model=None, fmt: str = "geojson", glob: str = "*.tif",
              asset: str | None = None, workers: int = 1, scheduler=None, retries: int = 2, device: str = "auto",
              detector=None, progress: Callable[[dict], None] | None = None,
              all_tiles: bool = False) -> BatchSummary:
    """Process every scene of ``source`` (folder, text list or STAC JSON; see discover_scenes) into ``outdir``.

    ``model``: bundle path (loaded once per worker process), None for the bundled default, or a loaded
    ``(ShipSam, BundleCard)`` or ShipDetector for ``workers=1``; ``fmt``: a name of ``vector.writers.FORMATS``
    (geojson, gpkg, fgb, parquet) per scene; ``workers``: local processes (1: in this
    process); ``scheduler``: a Dask scheduler address "tcp://host:port", a ``distributed.Client`` or a cluster
    object (then ``workers`` is ignored; OUTDIR, the scenes and the bundle must be readable on the workers);
    ``retries``: extra attempts for a scene whose worker died; ``detector``: a stand-in for shipseg's detection
    (see ``worker.run_detector``); ``all_tiles``: encode tiles far from any water too (see ShipDetector);
    ``progress``: called with a dict of counts after every scene. Raises ShipsegError for bad batch input only."""
    start = time.perf_counter()
    if fmt not in FORMATS:
        raise fail(outdir, f"unknown output format {fmt!r} (use {', '.join(FORMATS)})")
    scenes = discover_scenes(source, glob=glob, asset=asset)
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise fail(outdir, "exists and is not a folder")
    if isinstance(scheduler, str):
        check_scheduler(scheduler)
    with _exclusive(outdir):
        for stale in outdir.glob(".*.tmp-*"):  # left by a run that was killed; no writer can be active now
            stale.unlink()
        manifest = Manifest.load(outdir)
        summary = BatchSummary(outdir)
        todo = []
        for scene in scenes:
            if scene.skip_reason:
                if manifest.scenes.get(scene.scene_id, {}).get("error") != scene.skip_reason:
                    manifest.record({"scene_id": scene.scene_id, "state": SKIPPED, "source": scene.path,
                                     "acquired": scene.acquired, "error": scene.skip_reason})
                summary.skipped[scene.scene_id] = scene.skip_reason
            elif manifest.is_done(scene.scene_id) and manifest.scenes[scene.scene_id]["output"].endswith(
                    FORMATS[fmt][0]):
                summary.already_done.append(scene.scene_id)
            else:
                todo.append(scene)
        if todo and (isinstance(model, (str, Path)) or (model is None and detector is None)):
            from samgeo_ship.models import official
            from samgeo_ship.models.zoo import model_card
            card = model_card(model)  # a missing or foreign model file is bad input to the whole batch
            if card.kind == official.KIND:  # batch has no prompts to give a model without a ship prompter
                raise official.no_prompter(model, card.model_type)
        job = (str(model) if isinstance(model, Path) else model, str(outdir), fmt, device, detector, all_tiles)
        counts = {"total": len(scenes), "done": len(summary.already_done), "failed": 0,
                  "skipped": len(summary.skipped), "left": len(todo), "ships": 0}
        counts["ships"] = sum(manifest.scenes[s].get("ships") or 0 for s in summary.already_done)
        if progress:
            progress({**counts, "elapsed_s": 0.0, "eta_s": None, "scene_id": None, "state": None})
        for result in _execute(todo, job, workers, scheduler, retries):
            rec = manifest.record(result)
            counts["left"] -= 1
            if rec["state"] == DONE:
                counts["done"] += 1
                counts["ships"] += rec["ships"]
                summary.done.append(result["scene_id"])
                summary.ships_new += rec["ships"]
            else:
                counts["failed"] += 1
                summary.failed[result["scene_id"]] = rec["error"]
            if progress:
                elapsed = time.perf_counter() - start
                finished = len(todo) - counts["left"]
                progress({**counts, "elapsed_s": round(elapsed, 2), "eta_s": round(elapsed / finished *
                          counts["left"], 1), "scene_id": result["scene_id"], "state": rec["state"]})
        summary.ships = counts["ships"]
        summary.merged = merge_outputs(manifest, [s.scene_id for s in scenes])
    summary.seconds = time.perf_counter() - start
    return summary


def _execute(todo: list[SceneRef], job: tuple, workers: int, scheduler, retries: int):
    """Yield one result dict per scene of ``todo``, in completion order."""
    if not todo:
        return iter(())
    if scheduler is not None:
        return _on_dask(todo, job, scheduler, retries)
    if workers <= 1:
        return (process_scene(scene, *job) for scene in todo)
    return _on_pool(todo, job, workers, retries)


def _lost(scene: SceneRef, why: str) -> dict:
    return {"scene_id": scene.scene_id, "source": scene.path, "acquired": scene.acquired, "state": FAILED,
            "error": f"{scene.path}: {why}"}


def _init_worker(threads: int) -> None:
    import torch
    torch.set_num_threads(threads)  # N workers share the cores instead of each grabbing all of them


def _on_pool(todo, job, workers, retries):
    """A local pool of spawned processes (fork is unsafe once torch has started threads). At most 2 scenes per
    worker are queued, so a worker that dies takes few with it; those are retried in a fresh pool."""
    context = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // workers)
    queue, attempts = deque(todo), Counter()
    while queue:
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(threads,))
        running, broken = {}, False
        try:
            while queue or running:
                while queue and not broken and len(running) < 2 * workers:
                    scene = queue.popleft()
                    running[pool.submit(process_scene, scene, *job)] = scene
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    scene = running.pop(fut)
                    try:
                        yield fut.result()
                    except BrokenProcessPool:
                        broken = True
                        attempts[scene.scene_id] += 1
                        if attempts[scene.scene_id] > retries:
                            yield _lost(scene, f"its worker process died {attempts[scene.scene_id]} times")
                        else:
                            queue.appendleft(scene)
                if broken and not running:
                    break
        finally:
            pool.shutdown(wait=not broken and not running, cancel_futures=True)


def _on_dask(todo, job, scheduler, retries):
    """One task per scene; Dask reruns the task of a worker that died (up to distributed.scheduler.allowed-failures
    times) and ``retries`` more times if the task itself raised."""
    from distributed import Client, as_completed

    own = not isinstance(scheduler, Client)
    try:
        client = Client(scheduler, set_as_default=False, timeout=SCHEDULER_TIMEOUT_S) if own else scheduler
    except OSError as exc:  # answered the probe but is not a Dask scheduler, or went away since
        raise fail(scheduler, f"cannot connect to the Dask scheduler ({exc})") from None
    run = uuid.uuid4().hex[:8]
    futures = {}
    try:
        for scene in todo:
            fut = client.submit(process_scene, scene, *job, key=f"shipseg-{scene.scene_id}-{run}", pure=False,
                                retries=retries)
            futures[fut.key] = (fut, scene)
        for fut in as_completed([f for f, _ in futures.values()]):
            scene = futures.pop(fut.key)[1]
            try:
                result = fut.result()
            except Exception as exc:
                result = _lost(scene, f"the Dask cluster gave up on it ({type(exc).__name__}: {exc})")
            fut.release()
            yield result
    finally:
        if futures:
            client.cancel([f for f, _ in futures.values()])
        if own:
            client.close()


def check_scheduler(address: str, timeout_s: float = SCHEDULER_TIMEOUT_S) -> None:
    """Refuse, within ``timeout_s``, a Dask scheduler address that is malformed or where nothing answers (Dask's own
    client retries for its whole connect timeout, half a minute, and then ends in a traceback)."""
    parsed = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:
        host = port = None
    if parsed.scheme not in ("tcp", "tls") or not host or not port:
        raise fail(address, "is not a Dask scheduler address (tcp://HOST:PORT)")
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        raise fail(address, f"no Dask scheduler answers there ({exc.strerror or exc})") from None


@contextlib.contextmanager
def _exclusive(outdir: Path):
    """One batch driver per OUTDIR: the manifest has exactly one writer. A folder this run created is removed
    again when the run fails before writing anything but the lock, so a failed start leaves nothing behind."""
    created = not outdir.exists()
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(outdir, exc) from None
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; the user keeps runs apart
        fcntl = None
    try:
        with open(outdir / LOCK, "w") as f:
            if fcntl is not None:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    raise fail(outdir, "another shipseg batch is writing to this folder") from None
            yield
    except BaseException:
        if created and {p.name for p in outdir.iterdir()} <= {LOCK}:
            shutil.rmtree(outdir, ignore_errors=True)
        raise


def read_ships(path: Path):
    import geopandas as gpd
    return gpd.read_parquet(path) if path.suffix == ".parquet" else gpd.read_file(path, engine="pyogrio")


def merge_outputs(manifest: Manifest, scene_ids: list[str]) -> Path:
    """OUTDIR/ships.parquet: the ships of every done scene of ``scene_ids`` in WGS84, with ``scene_id`` and
    ``acquired`` (UTC timestamp or null). Rebuilt only when a scene output changed since the last merge."""
    import geopandas as gpd
    import pandas as pd

    outdir = manifest.path.parent
    target = outdir / MERGED
    done = [(s, manifest.scenes[s]) for s in scene_ids if manifest.scenes.get(s, {}).get("state") == DONE]
    inputs = hashlib.sha256(json.dumps([(s, r["sha256"], r["acquired"]) for s, r in done]).encode()).hexdigest()
    if manifest.merged.get("inputs") == inputs and target.is_file() and \
            sha256_file(target) == manifest.merged.get("sha256"):
        return target
    parts = []
    for scene_id, rec in done:
        ships = read_ships(outdir / rec["output"])
        if len(ships) == 0:
            continue
        ships = ships.to_crs(4326).drop(columns=["scene_id", "acquired"], errors="ignore")
        ships.insert(0, "acquired", pd.Timestamp(rec["acquired"]) if rec["acquired"] else pd.NaT)
        ships.insert(0, "scene_id", scene_id)
        parts.append(ships)
    if parts:
        merged = gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), geometry="geometry", crs=4326)
    else:
        merged = gpd.GeoDataFrame({"scene_id": pd.Series([], dtype=str), "acquired": pd.Series([], dtype=str)},
                                  geometry=gpd.GeoSeries([], crs=4326))
    merged["acquired"] = pd.to_datetime(merged["acquired"], utc=True)
    tmp = target.with_name(f".{target.stem}.tmp-{os.getpid()}{target.suffix}")
    try:
        merged.to_parquet(tmp)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    manifest.merged = {"inputs": inputs, "sha256": sha256_file(target), "ships": len(merged)}
    manifest.save()
    return target
