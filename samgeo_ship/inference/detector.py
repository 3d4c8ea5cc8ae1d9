"""``ShipDetector``: a model loaded once with the settings of a run; ``.detect(scene)`` streams a scene to ships.

Like segment_anything's SamAutomaticMaskGenerator, which builds its SamPredictor once and takes only the image per
call: the model, its card, the device and the run settings are fixed when the detector is built, and every scene
(or every pass over one scene: evaluate, calibrate, a preview) reuses them. The card describes the model and is
never changed for a run; the run settings (bands, tiling, batch, thresholds) live beside it."""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import Callable

import geopandas as gpd
import numpy as np
import torch

from samgeo_ship.bands import parse_bands, same_bands
from samgeo_ship.device import resolve_device, resolve_precision
from samgeo_ship.errors import NoSuchBand, NoValidPixels, fail
from samgeo_ship.inference.contrast import keep, ring_contrast
from samgeo_ship.inference.memory import auto_batch_size, run_memory_mb
from samgeo_ship.inference.predictor import TilePredictor
from samgeo_ship.inference.prompts import assign_prompts, read_prompt_file
from samgeo_ship.inference.stream import stream
from samgeo_ship.inference.water import dry_tiles
from samgeo_ship.inference.windows import split_large_boxes
from samgeo_ship.models import official
from samgeo_ship.models.bundle import BundleCard
from samgeo_ship.models.card_schema import MAX_TILE_SIZE
from samgeo_ship.models.zoo import (MAX_RESAMPLE, choose_model, describe_choice, fitting_models, load_model,
                                    model_path, resolution_band)
from samgeo_ship.raster import Normalisation, Scene
from samgeo_ship.tiling import TileGrid
from samgeo_ship.vector.attributes import ship_table
from samgeo_ship.vector.merge import ShipMerger, suppress_overlaps

MIN_SHIP_PX = 4  # a hull shorter than ~4 scene pixels is a blob without shape: below what a model resolves

Progress = Callable[[int, int, int], None]


class DetectWarning(UserWarning):
    """Detection runs, but the result may be poorer than the model can do (resolution, band choice)."""


class ShipDetector:
    """Find ships in scenes with one model.

    Args:
        model: a bundle path, an official SAM checkpoint (a .pth file, or vit_b / vit_l / vit_h from the weights
            cache), a loaded ``(ShipSam, BundleCard)``, or None for the bundled default model. An official
            checkpoint has no ship prompter: it segments boxes and points only, at the scene's own resolution.
        device: "auto" (CUDA when available), "cpu" or "cuda[:n]".
        bands: band names or 1-based indexes of the scenes (default: the model's bands, by name).
        tile_size, overlap: the card's tiling overridden, in pixels of the model's pixel size (scene pixels for an
            official checkpoint). The overlap only moves seams and halos; another tile size changes the ground each
            model input covers, so ships look larger or smaller to the model than in training.
        batch_size: tiles encoded at once; None chooses from the free memory and what one tile costs the
            encoder (``memory.auto_batch_size``).
        precision: the image encoder's arithmetic: "auto" (bfloat16 for a vit_b-sized or wider encoder where the
            CPU has it in hardware, or on CUDA the device's autocast; else float32), "fp32", "bf16" or "int8" (CPU
            only); see ``device.resolve_precision``.
        score_threshold: the card's detection score threshold overridden for this detector.
        nodata: the fill value of scenes that declare none (pixels of that value in every band are invalid).
        all_tiles: encode every tile; by default the learned prompter skips tiles far from any water in scenes
            with green and near or short-wave infrared bands (samgeo_ship.inference.water), whichever bands the
            model reads. User prompts are always answered.
    """

    def __init__(self, model=None, *, device: str = "auto", bands=None, tile_size: int | None = None,
                 overlap: int | None = None, batch_size: int | None = None, score_threshold: float | None = None,
                 nodata: float | None = None, precision: str = "auto", all_tiles: bool = False):
        self.device = resolve_device(device)
        if isinstance(model, tuple):
            net, card = model
            self.model, self.card, self.name = net.to(self.device).eval(), card, card.model_type
        else:
            path = model_path(model)
            self.model, self.card = load_model(path, self.device)
            self.name = path.name
        self.precision = resolve_precision(precision, self.device)
        self.bands = parse_bands(bands)
        if overlap is None and tile_size is not None and self.any_resolution:
            overlap = int(tile_size) // 8  # the card's halo is for its own tile size
        self.nodata = nodata
        self.tile_size, self.overlap = _tiling(self.card, tile_size, overlap, self.name)
        self.batch_size = (auto_batch_size(self.model.config, self.device, self.precision) if batch_size is None
                           else max(1, int(batch_size)))
        thresholds = {} if score_threshold is None else {"score": float(score_threshold)}
        self.predictor = TilePredictor(self.model, self.card, self.device, thresholds, self.precision)
        self.choice: str | None = None  # set by for_scene: which bundled model was picked, and why
        self.all_tiles = all_tiles
        self.tiles_skipped = 0  # tiles of the last scene left out for holding no water

    @classmethod
    def for_scene(cls, scene_path, model=None, **settings) -> "ShipDetector":
        """A detector for ``scene_path``: ``model`` when one is named, else the bundled model that fits the scene's
        ground pixel size and bands (``models.zoo.choose_model``; the bands are not checked when ``settings`` names
        them), with ``choice`` saying which it picked. ``settings``: those of ``ShipDetector``."""
        if model is not None:
            return cls(model, **settings)
        with Scene.open(scene_path, nodata=settings.get("nodata")) as scene:
            scene.require_crs()
            pixel_m = scene.ground_pixel_size_m
            names = None if settings.get("bands") is not None else scene.descriptions
        detector = cls(choose_model(pixel_m, names, scene_path), **settings)
        detector.choice = describe_choice(detector.name, detector.card, pixel_m)
        return detector

    @property
    def any_resolution(self) -> bool:
        """Whether the model reads scenes at their own pixels (an official SAM checkpoint) rather than at the pixel
        size it was trained on."""
        return self.card.pixel_size_m is None

    # ---- scenes ----------------------------------------------------------------------------------------------
    def open(self, scene_path) -> Scene:
        """``scene_path`` opened once with this detector's bands and the model's normalisation (computed here,
        once); the caller closes it (``with detector.open(path) as scene: ...``). Raises NoValidPixels for a scene
        that is all nodata."""
        scene = self._open_bands(scene_path)
        try:
            scene.use_normalisation(self._normalisation(scene))
        except BaseException:
            scene.close()
            raise
        return scene

    def grid(self, scene: Scene) -> TileGrid:
        """The grid whose windows cover the same ground as the training tiles: ``tile_size * card.pixel_size_m /
        scene pixel size`` scene pixels (rounded), later resampled to the model's input size. Refuses scenes more
        than MAX_RESAMPLE times finer or coarser than the model's pixels; warns when ships become too few pixels.
        A model of any resolution tiles the scene at its own pixels, ``tile_size`` scene pixels a tile."""
        if self.any_resolution:
            return TileGrid.for_scene(scene, self.tile_size, overlap_px=self.overlap)
        pixel_m, model_m = scene.ground_pixel_size_m, self.card.pixel_size_m
        low, high = resolution_band(model_m)
        for side_m in scene.ground_pixel_sizes_m:  # both sides: near a pole the mean hides a 2 mm x 11 m pixel
            if not low <= side_m <= high:
                raise fail(scene.path, f"its pixels are {side_m:.3g} m but the model was trained on {model_m:g} m "
                                       f"pixels, more than {MAX_RESAMPLE:g}x apart (resample the scene to between "
                                       f"{low:g} and {high:g} m{_fitting(side_m, scene)})")
        ratio = model_m / pixel_m  # scene pixels per training pixel
        if pixel_m > model_m * 1.25:
            warnings.warn(f"{scene.path.name}: pixels are {pixel_m:.3g} m, coarser than the model's {model_m:g} m; "
                          f"ships shorter than about {MIN_SHIP_PX * pixel_m:.0f} m are below what the model "
                          "resolves and will be missed", DetectWarning, stacklevel=3)
        size = max(round(self.tile_size * ratio), 8)
        overlap = min(round(self.overlap * ratio), (size - 1) // 2)
        return TileGrid.for_scene(scene, size, overlap_px=overlap)

    def wet_grid(self, scene: Scene) -> TileGrid:
        """``grid(scene)`` without the tiles that hold no water (none left out with ``all_tiles``, or for a scene
        without the bands of the water test); ``tiles_skipped`` says how many were."""
        grid = self.grid(scene)
        dry = None if self.all_tiles else dry_tiles(scene, grid)
        self.tiles_skipped = len(dry or ())
        return grid.without(dry) if dry else grid

    # ---- detection -------------------------------------------------------------------------------------------
    def detect(self, scene, boxes=None, points=None, progress: Progress | None = None,
               on_plan: Callable[[dict], None] | None = None) -> gpd.GeoDataFrame:
        """Find the ships in ``scene`` (a path, or a Scene from ``open``).

        Args:
            boxes: user box prompts instead of the learned prompter: a vector file (bounds of each feature, any
                CRS) or an (N, 4) array ``xmin, ymin, xmax, ymax`` in the scene CRS. One ship per box.
            points: a vector file of points or an (N, 2) array in the scene CRS; one positive point per ship.
            progress: called as ``progress(tiles_done, tiles_total, ships_so_far)`` (distinct ships after merging
                across seams; the last call's count is the number of rows returned); raising in it cancels.
            on_plan: called once, after the first batch, with the tile count and the time they will take (see
                ``stream.stream``), the batch size and the memory the run needs (``memory.run_memory_mb``).

        Returns a GeoDataFrame in the scene CRS with the columns of ``vector.attributes.COLUMNS`` (plus ``prompt``,
        the index of the user prompt, with boxes/points), one Polygon per ship, ids ordered north to south; empty,
        with a DetectWarning, for a scene with no valid pixels."""
        if boxes is not None and points is not None:
            raise fail(getattr(scene, "path", scene), "give either box prompts or point prompts, not both")
        user = boxes is not None or points is not None
        if not user:
            self._need_prompter()
        else:
            self._warn_prompted_sam(points=points is not None)
        with self._scene(scene) as (opened, why):
            if why is not None:
                return self._no_ships(opened, why, progress, user)
            grid = self.grid(opened) if user else self.wet_grid(opened)
            prompts, windows = _prompts(opened, grid, boxes, points, self.any_resolution)
            merger = self._merge(opened, grid, prompts, progress, on_plan, windows)
            merged = merger.ships() if user else self._keep(opened, suppress_overlaps(merger.ships()))
            if progress:
                total = len(grid) + len(windows)
                progress(total, total, len(merged))
            geoms = gpd.GeoSeries([m.geometry for m in merged], crs=opened.crs)
            extra = {"prompt": [m.prompt for m in merged]} if user else {}
            return ship_table(geoms, [m.score for m in merged], opened.name, self.name, **extra)

    def collect(self, scene, progress: Progress | None = None) -> ShipMerger | None:
        """Every part the learned prompter finds above this detector's score threshold, merged across seams but
        before duplicates are dropped and before the card's contrast test (``calibrate`` re-merges the parts above
        each threshold of its sweep); None for a scene with no valid pixels."""
        self._need_prompter()
        with self._scene(scene) as (opened, why):
            if why is not None:
                return None
            return self._merge(opened, self.wet_grid(opened), None, progress)

    @property
    def finds_ships(self) -> bool:
        """Whether the model finds ships without prompts (an official SAM checkpoint has no ship prompter)."""
        return self.card.kind != official.KIND

    def _warn_prompted_sam(self, points: bool) -> None:
        """The bundle's SAM answers point prompts, and box prompts unless its proposer draws its own ships (then its
        ship-pixel map answers them: inference.predictor.TilePredictor.answers_boxes); a native bundle's proposer may
        read other bands than that SAM was trained on (``shipseg train --masks native --bands B08`` on an RGB SAM),
        which then masks poorly."""
        if getattr(self.model.proposer, "draws_ships", False) and not points:
            return
        sam_bands = (self.card.proposer or {}).get("sam_bands")
        if sam_bands and not same_bands(sam_bands, self.card.bands):
            warnings.warn(f"{self.name}: prompts are answered by its SAM, trained on {','.join(sam_bands)}, while "
                          f"the model reads {','.join(self.card.bands)}: expect poor masks", DetectWarning,
                          stacklevel=3)

    def _need_prompter(self) -> None:
        if not self.finds_ships:
            raise official.no_prompter(self.name, self.card.model_type)

    def _merge(self, scene: Scene, grid: TileGrid, prompts, progress, on_plan=None, windows=()) -> ShipMerger:
        merger = ShipMerger(scene.pixel_size[0], cell=grid.tile_size * scene.pixel_size[0])
        # The learned prompter's specks (a glint, a fleck of foam) are dropped; a user's prompt is always answered.
        min_px = MIN_SHIP_PX * self.card.pixel_size_m / scene.ground_pixel_size_m if prompts is None else 0.0
        if on_plan is not None:
            needs = run_memory_mb(self.model.config, self.precision, self.batch_size, grid.tile_size,
                                  len(scene.band_indexes), self.device)
            on_plan = _with(on_plan, {"batch_size": self.batch_size, "memory_mb": needs})
        with _torch_threads(self.device):
            stream(scene, grid, self.predictor, prompts, self.batch_size, merger, progress, min_px, on_plan,
                   windows)
        return merger

    def _keep(self, scene: Scene, ships: list) -> list:
        """The ships that pass the card's contrast test against the water (all of them without one)."""
        test = self.card.contrast
        if test.get("min", 0) <= 0:
            return ships
        with contrast_band(scene.path, test["band"]) as band:
            if band is None:
                return ships
            return [m for m, k in zip(ships, keep(ring_contrast(band, [m.geometry for m in ships]), test["min"]))
                    if k]

    def _no_ships(self, scene: Scene, why: str, progress, user: bool) -> gpd.GeoDataFrame:
        """The empty result of a scene with no valid pixels: every tile is skipped, so no ship can be found."""
        warnings.warn(f"{why}: no ships to find", DetectWarning, stacklevel=4)
        total = len(self.grid(scene))
        if progress:
            progress(total, total, 0)
        return self.empty_table(scene, user)

    def empty_table(self, scene: Scene, user: bool = False) -> gpd.GeoDataFrame:
        """The table ``detect`` returns for ``scene`` when it finds no ship (``user``: with the prompt column)."""
        extra = {"prompt": []} if user else {}
        return ship_table(gpd.GeoSeries([], crs=scene.require_crs()), [], scene.name, self.name, **extra)

    # ---- opening ---------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _scene(self, scene):
        """(the scene, None) ready to read, or (the scene, why) when it holds no valid pixels. A path is opened
        here and closed afterwards; a Scene is the caller's."""
        if isinstance(scene, Scene):
            yield scene, None
            return
        opened = self._open_bands(scene)
        try:
            try:
                opened.use_normalisation(self._normalisation(opened))
            except NoValidPixels as exc:
                yield opened, str(exc)
                return
            yield opened, None
        finally:
            opened.close()

    def _open_bands(self, path) -> Scene:
        chosen = self.bands if self.bands is not None else self.card.bands
        try:
            scene = Scene.open(path, bands=chosen, nodata=self.nodata)
        except NoSuchBand:
            if self.bands is not None:
                raise
            scene = self._unnamed_bands(path)
        try:
            scene.require_crs()
        except BaseException:
            scene.close()
            raise
        if len(scene.band_indexes) not in (1, 3):
            scene.close()
            raise fail(path, f"{len(scene.band_indexes)} bands were selected but the model takes 3 (or 1)")
        return scene

    def _unnamed_bands(self, path) -> Scene:
        """A scene without the model's band names: bands without names cannot be checked, so the first three (the
        common RGB order) are used, with a warning; a scene whose bands have other names is refused. A model of any
        resolution takes any 3 bands: its first three, silently (an orthophoto stores red, green, blue first)."""
        scene = Scene.open(path, nodata=self.nodata)
        try:
            scene.require_crs()  # a scene that will be refused says only why, without the warning below
            if self.any_resolution:
                return scene
            if scene.has_band_names:
                raise fail(path, f"has no bands named {','.join(self.card.bands)} as the model expects; name the "
                                 "scene's matching bands with --bands (e.g. --bands 3,2,1)")
        except BaseException:
            scene.close()
            raise
        warnings.warn(f"{Path(path).name}: bands have no names, using bands 1-3 as {','.join(self.card.bands)} "
                      "(choose others with --bands)", DetectWarning, stacklevel=5)
        return scene

    def _normalisation(self, scene: Scene) -> Normalisation:
        spec = self.card.normalisation or {}
        if "low" in spec and "high" in spec:  # fixed statistics recorded at training time
            return Normalisation.from_dict(spec)
        return scene.compute_normalisation(tuple(spec.get("percentiles", (1.0, 99.0))),
                                           min_span=float(spec.get("min_span", 0.0)))


def detect(scene, model=None, *, boxes=None, points=None, progress: Progress | None = None, device: str = "auto",
           bands=None, tile_size: int | None = None, overlap: int | None = None, batch_size: int | None = None,
           nodata: float | None = None, precision: str = "auto", all_tiles: bool = False) -> gpd.GeoDataFrame:
    """Find the ships in one scene: ``ShipDetector.for_scene(scene, model, ...).detect(scene, boxes, points,
    progress)`` (without ``model``, the bundled model that fits the scene). Build a ShipDetector yourself to detect
    in several scenes with one loaded model."""
    detector = ShipDetector.for_scene(getattr(scene, "path", scene), model, device=device, bands=bands,
                                      tile_size=tile_size, overlap=overlap, batch_size=batch_size, nodata=nodata,
                                      precision=precision, all_tiles=all_tiles)
    return detector.detect(scene, boxes=boxes, points=points, progress=progress)


@contextlib.contextmanager
def contrast_band(scene_path, band: str):
    """The scene opened on the band of the model's contrast test (see samgeo_ship.inference.contrast), or None with a
    DetectWarning when the scene has no band of that name (the test is then skipped)."""
    try:
        opened = Scene.open(scene_path, bands=[band])
    except NoSuchBand:
        warnings.warn(f"{Path(scene_path).name}: no band named {band}, so the model's contrast test against the "
                      "water is skipped (more false alarms)", DetectWarning, stacklevel=5)
        yield None
        return
    with opened:
        yield opened


def _fitting(pixel_size_m: float, scene: Scene) -> str:
    """``, or use MODEL, made for Z m pixels`` naming the bundled model that fits the scene, when one does."""
    fits = fitting_models(pixel_size_m, scene.descriptions)
    if not fits:
        return ""
    path, card = fits[0]
    return f", or use {path.name}, made for {card.pixel_size_m:g} m pixels"


def _tiling(card: BundleCard, tile_size, overlap, source) -> tuple[int, int]:
    """The card's (tile size, overlap), or a run's own, checked."""
    size = card.tile_size if tile_size is None else int(tile_size)
    halo = card.overlap if overlap is None else int(overlap)
    if not 8 <= size <= MAX_TILE_SIZE or halo < 0 or 2 * halo >= size:
        raise fail(source, f"tile size {size} px with overlap {halo} px: need a tile of 8 to {MAX_TILE_SIZE} px "
                           "and an overlap of 0 to under half the tile size")
    return size, halo


def _prompts(scene, grid, boxes, points, whole_boxes: bool = False):
    """(the user's prompts per tile, or None without any; the box windows). ``whole_boxes``: a box longer than a
    tile gets a decimated window of its own (samgeo_ship.inference.windows) instead of being cut at the seams."""
    if boxes is None and points is None:
        return None, []
    source = boxes if boxes is not None else points
    kind = "boxes" if boxes is not None else "points"
    from_file = isinstance(source, (str, Path))
    array = read_prompt_file(source, scene, kind) if from_file else np.asarray(source, float)
    if len(array) == 0:
        raise fail(source if from_file else scene.path, f"no {kind} were given")
    prompts = assign_prompts(grid, scene, **{kind: array}, source=source if from_file else kind)
    if whole_boxes and boxes is not None:
        return split_large_boxes(grid, scene, array.reshape(-1, 4), prompts)
    return prompts, []


def _with(on_plan: Callable[[dict], None], extra: dict) -> Callable[[dict], None]:
    return lambda plan: on_plan({**plan, **extra})


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
