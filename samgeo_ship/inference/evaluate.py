"""Evaluate a model bundle on a scene with truth polygons: detection scores at IoU 0.5, mask quality with the truth
boxes as prompts against the filled-box baseline, and length and heading errors of the matched ships."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import geopandas as gpd
import numpy as np

from samgeo_ship import metrics
from samgeo_ship.inference.contrast import CONTRAST_GRID, keep, ring_contrast
from samgeo_ship.inference.detect import detect_scene, load_model, open_scene
from samgeo_ship.device import resolve_device
from samgeo_ship.labels import load_labels
from samgeo_ship.models.bundle import save_bundle
from samgeo_ship.raster import Scene
from samgeo_ship.vector.attributes import measure
from samgeo_ship.vector.merge import suppress_overlaps
from samgeo_ship.vector.preview import SHIP_COLOUR, TRUTH_COLOUR, render_preview


@dataclass
class Evaluation:
    """Scores of one model on one scene. IoU values are in [0, 1]; ``median_length_error`` is relative
    (0.05 = 5 %); ``median_heading_error_deg`` is in degrees modulo 180. None where nothing could be measured."""

    scene: str
    model: str
    truth_ships: int
    predicted_ships: int
    iou_threshold: float
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    matched_mean_iou: float | None
    box_prompt_mean_iou: float | None
    box_baseline_mean_iou: float | None
    median_length_error: float | None
    median_heading_error_deg: float | None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def table(self) -> str:
        """A table for people."""
        def f(v, pct=False):
            return "n/a" if v is None else (f"{100 * v:.1f} %" if pct else f"{v:.3f}")
        rows = [("scene", self.scene), ("model", self.model),
                ("truth ships / predicted", f"{self.truth_ships} / {self.predicted_ships}"),
                (f"TP / FP / FN at IoU {self.iou_threshold:g}", f"{self.tp} / {self.fp} / {self.fn}"),
                ("precision", f(self.precision)), ("recall", f(self.recall)), ("F1", f(self.f1)),
                ("mean IoU of matched ships", f(self.matched_mean_iou)),
                ("mean mask IoU, truth boxes as prompts", f(self.box_prompt_mean_iou)),
                ("mean IoU of the filled truth box (baseline)", f(self.box_baseline_mean_iou)),
                ("median length error", f(self.median_length_error, pct=True)),
                ("median heading error (deg)", "n/a" if self.median_heading_error_deg is None
                 else f"{self.median_heading_error_deg:.1f}")]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


@dataclass
class SceneScore:
    """An Evaluation and the ship-by-ship measurements behind it, to pool scores over scenes or break recall down
    by group: ``truth`` (ship_id, area_px, geometry) and ``pred`` (the detections) in the scene CRS, their
    ``matching``, per truth ship ``box_prompt_iou`` and ``box_baseline_iou``, and per matched pair
    ``length_error`` (relative)."""

    evaluation: Evaluation
    truth: gpd.GeoDataFrame
    pred: gpd.GeoDataFrame
    matching: metrics.Matching
    box_prompt_iou: list
    box_baseline_iou: list
    length_error: np.ndarray


def evaluate_scene(model, scene_path, truth_path, bands=None, batch_size: int = 4, device: str = "auto",
                   progress=None, figure=None, iou_threshold: float = metrics.IOU_THRESHOLD) -> Evaluation:
    """Run detection on ``scene_path`` and score it against the polygons in ``truth_path`` (any vector format or
    COCO JSON that ``load_labels`` reads). ``model``: bundle path or (ShipSam, BundleCard), loaded once for both
    runs. ``figure``: optional PNG path for the scene with truth (green) and predictions (magenta) outlined."""
    return score_scene(model, scene_path, truth_path, bands, batch_size, device, progress, figure,
                       iou_threshold).evaluation


def score_scene(model, scene_path, truth_path, bands=None, batch_size: int = 4, device: str = "auto",
                progress=None, figure=None, iou_threshold: float = metrics.IOU_THRESHOLD) -> SceneScore:
    """``evaluate_scene`` with the per-ship measurements kept (see SceneScore)."""
    dev = resolve_device(device)
    net, card, name = load_model(model, dev)
    loaded = (net, card)
    with open_scene(scene_path, card, bands) as scene:
        truth = load_labels(truth_path, scene).ships
        transform, bounds = scene.transform, scene.bounds
    run = dict(bands=bands, batch_size=batch_size, device=str(dev))
    pred = detect_scene(scene_path, loaded, progress=progress, **run)
    matching = metrics.match(pred.geometry.values, truth.geometry.values, iou_threshold)
    t = measure(truth.geometry)
    errors = metrics.matched_errors(matching, pred["length_m"].to_numpy(), t["length_m"],
                                    pred["heading_deg"].to_numpy(), t["heading_deg"])
    box_iou, baseline = _box_prompts(scene_path, loaded, truth, transform, bounds, run)
    if figure is not None:
        with open_scene(scene_path, card, bands) as scene:
            render_preview(scene, [(truth.geometry.values, TRUTH_COLOUR), (pred.geometry.values, SHIP_COLOUR)],
                           figure)
    evaluation = Evaluation(
        scene=scene.name, model=name if isinstance(model, tuple) else str(model), truth_ships=len(truth),
        predicted_ships=len(pred), iou_threshold=iou_threshold, tp=matching.tp, fp=matching.fp, fn=matching.fn,
        precision=matching.precision, recall=matching.recall, f1=matching.f1, matched_mean_iou=matching.mean_iou,
        box_prompt_mean_iou=metrics.mean_or_none(box_iou), box_baseline_mean_iou=metrics.mean_or_none(baseline),
        **errors)
    return SceneScore(evaluation, truth, pred, matching, box_iou, baseline,
                      metrics.length_errors(matching, pred["length_m"].to_numpy(), t["length_m"]))


def _box_prompts(scene_path, loaded, truth: gpd.GeoDataFrame, transform, bounds, run):
    """Each truth ship's bounding box (clipped to the scene) as a user box prompt; per ship, the IoU of the mask it
    gives with the truth polygon (0 when no mask came back), and the IoU the filled box itself would score."""
    if len(truth) == 0:
        return [], []
    b = truth.geometry.bounds.to_numpy().copy()
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], bounds.left, bounds.right)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], bounds.bottom, bounds.top)
    pred = detect_scene(scene_path, loaded, boxes=b, **run)
    by_prompt = dict(zip(pred["prompt"], pred.geometry))
    truth_geoms = truth.geometry.values
    ious = [metrics.polygon_iou(by_prompt.get(i), g) for i, g in enumerate(truth_geoms)]
    baseline = [metrics.box_baseline_iou(g, transform) for g in truth_geoms]
    return ious, baseline


@dataclass
class Calibration:
    """The detection score threshold (and, when asked for, the minimum contrast against the water) with the best F1
    at IoU 0.5 on labelled scenes. ``sweep``: (score threshold, matching) at the chosen contrast; ``contrast_sweep``:
    (minimum contrast, matching) at the chosen threshold (empty without a contrast band). ``found_none``: no ship of
    the scenes was found at any threshold, so nothing was chosen and the card was left as it was."""

    threshold: float
    previous: float
    best: metrics.Matching
    sweep: list
    contrast: dict = dataclasses.field(default_factory=dict)
    contrast_sweep: list = dataclasses.field(default_factory=list)
    found_none: bool = False

    def table(self) -> str:
        lines = [f"{'threshold':>9}  {'precision':>9}  {'recall':>6}  {'F1':>5}"]
        for t, m in self.sweep:
            mark = "  <- chosen" if t == self.threshold and not self.found_none else ""
            lines.append(f"{t:>9.2f}  {m.precision:>9.3f}  {m.recall:>6.3f}  {m.f1:>5.3f}{mark}")
        if self.contrast_sweep:
            lines.append(f"\n{'min ' + self.contrast['band'] + ' contrast':>16}  {'precision':>9}  {'recall':>6}  "
                         f"{'F1':>5}   (at threshold {self.threshold:g})")
            for c, m in self.contrast_sweep:
                mark = "  <- chosen" if c == self.contrast["min"] else ""
                lines.append(f"{c:>16.2f}  {m.precision:>9.3f}  {m.recall:>6.3f}  {m.f1:>5.3f}{mark}")
        return "\n".join(lines)


def calibrate(model_path, scene_path, truth_path, bands=None, batch_size: int = 4, device: str = "auto",
              progress=None, grid=metrics.SCORE_GRID, write: bool = True, more=(),
              contrast_band: str | None = None) -> Calibration:
    """Detect once on a labelled scene at the lowest threshold of ``grid``, keep the grid threshold with the best F1
    at IoU 0.5 (the parts scored above each threshold are merged, and duplicates dropped, as a detection at that
    threshold would: the proposals' NMS, refinement and ownership do not depend on weaker proposals, those do) and,
    with ``write``, store it in the bundle's card (``thresholds.score``; the file is rewritten
    atomically). ``more``: further ``(scene, truth)`` pairs; the F1 is then that of the ships of all scenes pooled
    (``metrics.pool``), so one threshold serves every kind of scene given. ``contrast_band``: also choose, jointly
    with the threshold, the minimum contrast of a ship against its water in that band (``contrast.CONTRAST_GRID``,
    0 = no test), stored as the card's ``contrast``; every scene must have the band. Use validation scenes, never the
    scenes the model will be scored on. A model that finds no ship at any threshold is left unchanged
    (``Calibration.found_none``, the card's own threshold returned)."""
    dev = resolve_device(device)
    net, card, _ = load_model(model_path, dev)
    low = dataclasses.replace(card, thresholds={**card.thresholds, "score": min(grid)}, contrast={})
    pairs = [(scene_path, truth_path), *more]
    truths = []  # every truth read before any detection: a bad file in the last pair fails at once
    for scene, truth_file in pairs:
        with open_scene(scene, card, bands) as opened:
            truths.append(load_labels(truth_file, opened).ships.geometry.values)
        if contrast_band:
            Scene.open(scene, bands=[contrast_band]).close()  # the band is there, before any detection
    scenes = []  # per scene: (the ShipMerger of its parts, or None for a scene with no valid pixels; truth)
    for (scene, _), truth in zip(pairs, truths):
        found = []
        detect_scene(scene, (net, low), bands=bands, batch_size=batch_size, device=str(dev), progress=progress,
                     on_merger=found.append)
        scenes.append((found[0] if found else None, truth))
    ships = {t: [[s.geometry for s in suppress_overlaps(merger.above(t).ships())] if merger else []
                 for merger, _ in scenes] for t in grid}
    contrast = [_Contrasts(scene, contrast_band) if contrast_band else None for scene, _ in pairs]

    def kept(i, geoms, c):
        return [g for g, k in zip(geoms, keep(contrast[i](geoms), c)) if k] if c else geoms

    def at(t, c):
        return metrics.pool([metrics.match(kept(i, geoms, c), truth)
                             for i, (geoms, (_, truth)) in enumerate(zip(ships[t], scenes))])
    mins = CONTRAST_GRID if contrast_band else (0.0,)
    table = {(float(t), float(c)): at(t, c) for t in grid for c in mins}
    (threshold, minimum), best = metrics.best_threshold(list(table.items()))
    previous = float(card.thresholds.get("score", 0.3))
    if best.tp == 0:
        # No ship found at any setting: the scenes say nothing about the threshold (the tie rule would pick the
        # strictest, 0.9, and the model would then detect nothing anywhere). Keep the card as it is.
        sweep = [(t, m) for (t, c), m in table.items() if c == 0.0]
        return Calibration(previous, previous, best, sweep, dict(card.contrast), [], found_none=True)
    sweep = [(t, m) for (t, c), m in table.items() if c == minimum]
    chosen = {"band": contrast_band, "min": minimum} if contrast_band else {}
    contrast_sweep = [(c, m) for (t, c), m in table.items() if t == threshold] if contrast_band else []
    if write:
        save_bundle(net.cpu(), dataclasses.replace(card, thresholds={**card.thresholds, "score": threshold},
                                                   contrast=chosen or card.contrast), model_path)
    return Calibration(threshold, previous, best, sweep, chosen, contrast_sweep)


class _Contrasts:
    """Contrast of ship polygons in one band of one scene, each polygon measured once."""

    def __init__(self, scene_path, band: str):
        self.path, self.band, self.seen = scene_path, band, {}

    def __call__(self, geoms) -> np.ndarray:
        todo = [g for g in geoms if g.wkb not in self.seen]
        if todo:
            with Scene.open(self.path, bands=[self.band]) as scene:
                self.seen.update(zip((g.wkb for g in todo), ring_contrast(scene, todo)))
        return np.array([self.seen[g.wkb] for g in geoms], dtype=float)
