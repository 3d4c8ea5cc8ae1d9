"""Scene-level streaming detection: tiles are read ahead by a background thread, encoded in batches, their masks
vectorised in each tile's own affine by a second thread, then merged across seams as they arrive. Memory is bounded
by tile size times batch size (plus one polygon per ship), never by the scene size."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import threading
import time
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import geopandas as gpd
import numpy as np
import rasterio
import torch
from affine import Affine

from samgeo_ship.errors import NoValidPixels, ShipsegError, fail
from samgeo_ship.inference.contrast import keep, ring_contrast
from samgeo_ship.inference.predictor import TilePredictor, resolve_device
from samgeo_ship.inference.prompts import assign_prompts, read_prompt_file
from samgeo_ship.models.bundle import load_bundle
from samgeo_ship.models.card_schema import MAX_TILE_SIZE
from samgeo_ship.raster import Normalisation, Scene
from samgeo_ship.tiling import TileGrid
from samgeo_ship.vector.attributes import ship_table
from samgeo_ship.vector.merge import Part, ShipMerger, largest_polygon, owns, suppress_overlaps, touches_edge
from samgeo_ship.vector.vectorise import georeference, length_px, vectorise

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "data" / "default.safetensors"
MAX_RESAMPLE = 4.0  # beyond 4x up or down the model sees textures unlike anything it was trained on
MIN_SHIP_PX = 4  # a hull shorter than ~4 scene pixels is a blob without shape: below what a model resolves
PENDING_BATCHES = 2  # batches being vectorised while the next one is encoded


class DetectWarning(UserWarning):
    """Detection runs, but the result may be poorer than the model can do (resolution, band choice)."""


def load_model(model, device) -> tuple[object, object, str]:
    """``model``: a bundle path, or an already loaded ``(ShipSam, BundleCard)``. Returns (model, card, name)."""
    if isinstance(model, tuple):
        net, card = model
        return net.to(device).eval(), card, card.model_type
    path = Path(model)
    if not path.exists() and path.resolve() == DEFAULT_MODEL:
        raise fail(path, "the default model is not installed; pass a model bundle with -m MODEL "
                         "(train one with `shipseg train`)")
    net, card = load_bundle(path, device)
    return net, card, path.name


def with_tiling(card, tile_size: int | None = None, overlap: int | None = None, source="model"):
    """``card`` with its tile size and/or overlap replaced (pixels of the model's pixel size, as on the card).

    The overlap only moves seams and halos; a tile size other than the training one changes the ground each model
    input covers, so ships appear larger or smaller to the model than in training."""
    if tile_size is None and overlap is None:
        return card
    size = card.tile_size if tile_size is None else int(tile_size)
    halo = card.overlap if overlap is None else int(overlap)
    if not 8 <= size <= MAX_TILE_SIZE or halo < 0 or 2 * halo >= size:
        raise fail(source, f"tile size {size} px with overlap {halo} px: need a tile of 8 to {MAX_TILE_SIZE} px "
                           "and an overlap of 0 to under half the tile size")
    return dataclasses.replace(card, tile_size=size, overlap=halo)


def tile_grid(scene, card) -> TileGrid:
    """The grid whose windows cover the same ground as the training tiles: ``card.tile_size * card.pixel_size_m /
    scene pixel size`` scene pixels (rounded), later resampled to the model's input size. Refuses scenes more than
    MAX_RESAMPLE times finer or coarser than the model's pixels; warns when ships become too few pixels."""
    pixel_m = scene.ground_pixel_size_m
    for side_m in scene.ground_pixel_sizes_m:  # both sides: near a pole the mean hides a 2 mm x 11 m pixel
        ratio = card.pixel_size_m / side_m if side_m > 0 else float("inf")  # scene pixels per training pixel
        if not 1 / MAX_RESAMPLE <= ratio <= MAX_RESAMPLE:
            raise fail(scene.path, f"its pixels are {side_m:.3g} m but the model was trained on "
                                   f"{card.pixel_size_m:g} m pixels, more than {MAX_RESAMPLE:g}x apart (resample the "
                                   f"scene to between {card.pixel_size_m / MAX_RESAMPLE:g} and "
                                   f"{card.pixel_size_m * MAX_RESAMPLE:g} m)")
    ratio = card.pixel_size_m / pixel_m
    if pixel_m > card.pixel_size_m * 1.25:
        warnings.warn(f"{scene.path.name}: pixels are {pixel_m:.3g} m, coarser than the model's {card.pixel_size_m:g} "
                      f"m; ships shorter than about {MIN_SHIP_PX * pixel_m:.0f} m are below what the model resolves "
                      "and will be missed", DetectWarning, stacklevel=3)
    size = max(round(card.tile_size * ratio), 8)
    overlap = min(round(card.overlap * ratio), (size - 1) // 2)
    return TileGrid.for_scene(scene, size, overlap_px=overlap)


def open_scene(path, card, bands=None, nodata: float | None = None) -> Scene:
    """Open ``path`` with the model's bands (or ``bands``) and the model's normalisation method; ``nodata``: the
    fill value of a scene that does not declare one (see Scene.open)."""
    chosen = bands if bands is not None else card.bands
    try:
        probe = Scene.open(path, bands=chosen, nodata=nodata)
    except ShipsegError as exc:
        if bands is not None or "no band named" not in str(exc):
            raise
        with rasterio.open(path) as src:
            named = any(src.descriptions)
        if named:
            raise fail(path, f"has no bands named {','.join(card.bands)} as the model expects; name the scene's "
                             "matching bands with --bands (e.g. --bands 3,2,1)") from None
        chosen, probe = None, Scene.open(path, nodata=nodata)
        if probe.crs is None:  # a scene that will be refused says only why, without the warning below
            probe.close()
            probe.require_crs()
        # Bands without names cannot be checked; the first three are the common RGB order.
        warnings.warn(f"{Path(path).name}: bands have no names, using bands 1-3 as {','.join(card.bands)} "
                      "(choose others with --bands)", DetectWarning, stacklevel=3)
    with probe:
        probe.require_crs()
        if len(probe.band_indexes) not in (1, 3):
            raise fail(path, f"{len(probe.band_indexes)} bands were selected but the model takes 3 (or 1)")
        norm = _normalisation(probe, card)
    return Scene.open(path, bands=chosen, normalisation=norm, nodata=nodata)


def _normalisation(scene, card) -> Normalisation:
    spec = card.normalisation or {}
    if "low" in spec and "high" in spec:  # fixed statistics recorded at training time
        return Normalisation.from_dict(spec)
    return scene.compute_normalisation(tuple(spec.get("percentiles", (1.0, 99.0))))


def detect_scene(scene_path, model=DEFAULT_MODEL, bands=None, boxes=None, points=None, batch_size: int = 4,
                 device: str = "auto", progress: Callable[[int, int, int], None] | None = None,
                 tile_size: int | None = None, overlap: int | None = None,
                 on_merger: Callable[[ShipMerger], None] | None = None, nodata: float | None = None,
                 on_plan: Callable[[dict], None] | None = None) -> gpd.GeoDataFrame:
    """Find the ships in a scene.

    Args:
        scene_path: any GDAL raster with a CRS.
        model: a bundle path or a loaded ``(ShipSam, BundleCard)``.
        bands: band names or 1-based indexes (default: the model's bands).
        boxes: user box prompts instead of the learned prompter: a vector file (bounds of each feature) or an
            (N, 4) array ``xmin, ymin, xmax, ymax`` in the scene CRS. One ship per box.
        points: a vector file of points or an (N, 2) array in the scene CRS; one positive point per ship.
        batch_size: tiles encoded at once.
        device: "auto", "cpu" or "cuda".
        progress: called as ``progress(tiles_done, tiles_total, ships_so_far)`` (distinct ships after merging
            across seams, before duplicates are dropped; the last call's count is the number of rows returned);
            raising in it cancels.
        tile_size, overlap: override the bundle card's (see ``with_tiling``).
        on_merger: called with the ShipMerger holding every part found, before the table is made (``calibrate``
            re-merges the parts above each threshold from it).
        nodata: the fill value of a scene that declares none (pixels of that value in every band are invalid).
        on_plan: called once, after the first batch, with ``tiles_total``, ``tiles_done``, ``seconds_per_tile``
            (measured on that batch) and ``eta_s``, so a scene that would take days is known before it does.

    Returns a GeoDataFrame in the scene CRS with the columns of ``vector.attributes.COLUMNS`` (plus ``prompt``, the
    index of the user prompt, with boxes/points), one Polygon per ship, ids ordered north to south; empty, with a
    DetectWarning, for a scene with no valid pixels."""
    dev = resolve_device(device)
    net, card, model_name = load_model(model, dev)
    card = with_tiling(card, tile_size, overlap, model_name)
    if boxes is not None and points is not None:
        raise fail(scene_path, "give either box prompts or point prompts, not both")
    try:
        opened = open_scene(scene_path, card, bands, nodata)
    except NoValidPixels as exc:
        user_prompts = boxes is not None or points is not None
        return _no_ships(scene_path, card, bands, model_name, str(exc), progress, user_prompts)
    with opened as scene:
        grid = tile_grid(scene, card)
        prompts = _prompts(scene, grid, boxes, points)
        predictor = TilePredictor(net, card, dev)
        merger = ShipMerger(scene.pixel_size[0], cell=grid.tile_size * scene.pixel_size[0])
        # The learned prompter's specks (a glint, a fleck of foam) are dropped; a user's prompt is always answered.
        min_px = MIN_SHIP_PX * card.pixel_size_m / scene.ground_pixel_size_m if prompts is None else 0.0
        with _torch_threads(dev):
            _run(scene, grid, predictor, prompts, max(1, int(batch_size)), merger, progress, min_px, on_plan)
        if on_merger:
            on_merger(merger)
        merged = merger.ships() if prompts is not None else suppress_overlaps(merger.ships())
        if prompts is None and card.contrast.get("min", 0) > 0:
            with contrast_band(scene_path, card.contrast["band"]) as band:
                if band is not None:
                    merged = [m for m, k in zip(merged, keep(ring_contrast(band, [m.geometry for m in merged]),
                                                             card.contrast["min"])) if k]
        if progress:
            progress(len(grid), len(grid), len(merged))
        geoms = gpd.GeoSeries([m.geometry for m in merged], crs=scene.crs)
        extra = {"prompt": [m.prompt for m in merged]} if prompts is not None else {}
        return ship_table(geoms, [m.score for m in merged], scene.name, model_name, **extra)


@contextlib.contextmanager
def contrast_band(scene_path, band: str):
    """The scene opened on the band of the model's contrast test (see samgeo_ship.inference.contrast), or None with a
    DetectWarning when the scene has no band of that name (the test is then skipped)."""
    try:
        opened = Scene.open(scene_path, bands=[band])
    except ShipsegError as exc:
        if "no band named" not in str(exc):
            raise
        warnings.warn(f"{Path(scene_path).name}: no band named {band}, so the model's contrast test against the "
                      "water is skipped (more false alarms)", DetectWarning, stacklevel=4)
        yield None
        return
    with opened:
        yield opened


def _no_ships(scene_path, card, bands, model_name, why, progress, user_prompts) -> gpd.GeoDataFrame:
    """The empty result of a scene with no valid pixels: every tile is skipped, so no ship can be found."""
    warnings.warn(f"{why}: no ships to find", DetectWarning, stacklevel=3)
    with Scene.open(scene_path, bands=bands) as scene:  # the size and CRS are all it needs
        total = len(tile_grid(scene, card))
        if progress:
            progress(total, total, 0)
        extra = {"prompt": []} if user_prompts else {}
        return ship_table(gpd.GeoSeries([], crs=scene.require_crs()), [], scene.name, model_name, **extra)


def _prompts(scene, grid, boxes, points):
    if boxes is None and points is None:
        return None
    source = boxes if boxes is not None else points
    kind = "boxes" if boxes is not None else "points"
    array = read_prompt_file(source, scene, kind) if isinstance(source, (str, Path)) else np.asarray(source, float)
    if len(array) == 0:
        raise fail(source if isinstance(source, (str, Path)) else scene.path, f"no {kind} were given")
    if kind == "boxes":
        return assign_prompts(grid, scene, boxes=array, source=source if isinstance(source, (str, Path)) else kind)
    return assign_prompts(grid, scene, points=array, source=source if isinstance(source, (str, Path)) else kind)


@contextlib.contextmanager
def _torch_threads(device):
    """Use every core this process may run on for the CPU forward pass, and give the setting back afterwards."""
    before = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _run(scene, grid, predictor, prompts, batch_size, merger: ShipMerger, progress, min_px: float = 0.0,
         on_plan=None) -> None:
    """The streaming loop: read ahead -> encode/decode in batches -> vectorise in the background -> ``merger``.
    Progress reports the distinct ships merged so far; detect_scene makes the last report, after dropping
    duplicates (``suppress_overlaps``), with the number of ships it returns."""
    total, done, start, plan = len(grid), 0, time.perf_counter(), on_plan
    pending: deque = deque()
    wanted = set(prompts) if prompts is not None else None
    reader = Prefetch(_read_tiles(scene, grid, wanted), depth=2 * batch_size)
    batch: list = []

    def flush():
        nonlocal done, plan
        if batch:
            tile_prompts = [prompts.get((t.row, t.col)) for t, _, _ in batch] if prompts is not None else None
            detections = predictor.predict(np.stack([image for _, image, _ in batch]), tile_prompts)
            items = [(t, valid, dets) for (t, _, valid), dets in zip(batch, detections)]
            pending.append(pool.submit(_tile_parts, items, prompts is None, min_px))
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


def _read_tiles(scene, grid, wanted):
    """(tile, (C, T, T) image, (T, T) valid) per grid tile; image None for a tile to skip."""
    for tile in grid:
        if wanted is not None and (tile.row, tile.col) not in wanted:
            yield tile, None, None
            continue
        image, valid = scene.read(tile.window)
        rs, cs = tile.core_slices()
        yield (tile, image, valid) if valid[rs, cs].any() else (tile, None, None)


def _tile_parts(items, auto: bool, min_px: float = 0.0) -> list[Part]:
    """Masks -> owned polygons in the scene CRS. Nodata pixels never belong to a ship. With the learned prompter,
    a tile keeps only the ships whose centroid lies in its core; a user prompt went to one tile only. A polygon
    shorter than ``min_px`` pixels is dropped (the learned prompter's specks, like the lone pixels of a fragmented
    mask on glint): shorter than any hull the model resolves (MIN_SHIP_PX; the shortest sen2ships ship is 7 px)."""
    parts = []
    for tile, valid, detections in items:
        core = tile.core_slices()
        for det in detections:
            mask = det.mask & valid
            if not mask.any() or (auto and not owns(core, mask)):
                continue
            geom = _polygon(mask, tile.transform, min_px)
            if geom is not None:
                parts.append(Part(geom, det.score, touches_edge(mask), det.prompt))
    return parts


def _polygon(mask: np.ndarray, transform: Affine, min_px: float = 0.0):
    """Vectorise only the mask's bounding box (plus a 1 px frame), in the tile's own affine; its largest polygon, or
    None when that is shorter than ``min_px`` pixels. A ship cut by the tile's edge is not at risk: its tile owns it
    only when the mask's centroid lies in the core, so the piece reaches across the halo (8 px in the default)."""
    rows = np.nonzero(mask.any(axis=1))[0]
    cols = np.nonzero(mask.any(axis=0))[0]
    r0, c0 = max(rows[0] - 1, 0), max(cols[0] - 1, 0)
    poly = largest_polygon(vectorise(mask[r0:rows[-1] + 2, c0:cols[-1] + 2], Affine.identity()))
    if poly is None or length_px(poly) < min_px:
        return None
    return georeference(poly, transform @ Affine.translation(int(c0), int(r0)))


class Prefetch:
    """Runs a generator in a background thread at most ``depth`` items ahead (a bounded queue keeps memory flat when
    reading outpaces the model). Errors in the generator are raised where the items are consumed."""

    _END = object()

    def __init__(self, generator, depth: int):
        self._queue: queue.Queue = queue.Queue(max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(generator,), daemon=True, name="shipseg-read")
        self._thread.start()

    def _fill(self, generator):
        try:
            for item in generator:
                if not self._put((item, None)):
                    return
            self._put((self._END, None))
        except BaseException as exc:  # handed to the consumer, who raises it
            self._put((None, exc))

    def _put(self, message) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(message, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        while True:
            item, exc = self._queue.get()
            if exc is not None:
                raise exc
            if item is self._END:
                return
            yield item

    def close(self):
        """Stop the reader and wait for it, so the scene can be closed safely afterwards."""
        self._stop.set()
        self._thread.join()
