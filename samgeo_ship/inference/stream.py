"""The streaming loop of detection: tiles read ahead by a background thread, encoded and decoded in batches, their
masks vectorised by a second thread and merged across seams as they arrive. Memory is bounded by tile size times
batch size (plus one polygon per ship), never by the scene size."""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from itertools import chain

import numpy as np

from samgeo_ship.inference.prefetch import Prefetch
from samgeo_ship.inference.windows import read_windows
from samgeo_ship.vector.merge import ShipMerger
from samgeo_ship.vector.parts import tile_parts

PENDING_BATCHES = 2  # batches being vectorised while the next one is encoded


def stream(scene, grid, predictor, prompts, batch_size: int, merger: ShipMerger, progress=None,
           min_px: float = 0.0, on_plan=None, windows=()) -> None:
    """Read -> encode/decode in batches of ``batch_size`` -> vectorise in the background -> ``merger``.

    ``prompts``: None for the learned prompter, else {(row, col): TilePrompts} (tiles without prompts are not
    encoded). ``progress(tiles_done, tiles_total, ships_so_far)`` reports the distinct ships merged so far.
    ``on_plan(plan)`` is called once, after the first batch, with ``tiles_total``, ``tiles_done``,
    ``seconds_per_tile`` (measured on that batch) and ``eta_s``, so a scene that would take days is known early.
    ``windows``: box windows read decimated after the grid (samgeo_ship.inference.windows), counted as tiles."""
    total, done, start, plan = len(grid) + len(windows), 0, time.perf_counter(), on_plan
    pending: deque = deque()
    wanted = set(prompts) if prompts is not None else None
    reader = Prefetch(chain(read_tiles(scene, grid, wanted), read_windows(scene, windows, grid.tile_size)),
                      depth=2 * batch_size)
    batch: list = []

    def flush():
        nonlocal done, plan
        if batch:
            tile_prompts = [prompts.get((t.row, t.col)) for t, _, _ in batch] if prompts is not None else None
            detections = predictor.predict(np.stack([image for _, image, _ in batch]), tile_prompts)
            items = [(t, valid, dets) for (t, _, valid), dets in zip(batch, detections)]
            pending.append(pool.submit(tile_parts, items, prompts is None, min_px))
            done += len(batch)
            batch.clear()
            if plan is not None:
                per_tile = (time.perf_counter() - start) / done
                plan({"tiles_total": total, "tiles_done": done, "seconds_per_tile": round(per_tile, 4),
                      "eta_s": round(per_tile * (total - done), 1)})
                plan = None
        while pending and (len(pending) > PENDING_BATCHES or pending[0].done()):
            merger.add(pending.popleft().result())
        if progress:
            progress(done, total, len(merger))

    with ThreadPoolExecutor(1, thread_name_prefix="shipseg-vectorise") as pool:
        try:
            for tile, image, valid in reader:
                if image is None:  # all nodata, or no prompt in it: counted, never encoded
                    done += 1
                    continue
                batch.append((tile, image, valid))
                if len(batch) == batch_size:
                    flush()
            flush()
            while pending:
                merger.add(pending.popleft().result())
        finally:
            reader.close()
            for future in pending:
                future.cancel()


def read_tiles(scene, grid, wanted=None):
    """(tile, (C, T, T) image, (T, T) valid) per grid tile; image None for a tile to skip (no valid pixel in its
    core, or not in ``wanted``)."""
    for tile in grid:
        if wanted is not None and (tile.row, tile.col) not in wanted:
            yield tile, None, None
            continue
        image, valid = scene.read(tile.window)
        rs, cs = tile.core_slices()
        yield (tile, image, valid) if valid[rs, cs].any() else (tile, None, None)
