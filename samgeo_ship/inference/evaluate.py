"""Evaluate a model bundle on a scene with truth polygons: detection scores at IoU 0.5, mask quality with the truth
boxes as prompts against the filled-box baseline, and length and heading errors of the matched ships."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np

from samgeo_ship import metrics
from samgeo_ship.inference.detector import ShipDetector
from samgeo_ship.labels import load_labels
from samgeo_ship.vector.attributes import measure
from samgeo_ship.vector.preview import SHIP_COLOUR, TRUTH_COLOUR, render_preview


@dataclass
class Evaluation:
    """Scores of one model on one scene. IoU values are in [0, 1]; ``median_length_error`` is relative
    (0.05 = 5 %); ``median_heading_error_deg`` is in degrees modulo 180. None where nothing could be measured: every
    detection figure for a model without a ship prompter (an official SAM checkpoint), which is scored on the
    truth boxes as prompts only."""

    scene: str
    model: str
    truth_ships: int
    predicted_ships: int | None
    iou_threshold: float
    tp: int | None
    fp: int | None
    fn: int | None
    precision: float | None
    recall: float | None
    f1: float | None
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
                ("truth ships / predicted", f"{self.truth_ships} / {_text(self.predicted_ships)}"),
                (f"TP / FP / FN at IoU {self.iou_threshold:g}", " / ".join(_text(v) for v in (self.tp, self.fp,
                                                                                              self.fn))),
                ("precision", f(self.precision)), ("recall", f(self.recall)), ("F1", f(self.f1)),
                ("mean IoU of matched ships", f(self.matched_mean_iou)),
                ("mean mask IoU, truth boxes as prompts", f(self.box_prompt_mean_iou)),
                ("mean IoU of the filled truth box (baseline)", f(self.box_baseline_mean_iou)),
                ("median length error", f(self.median_length_error, pct=True)),
                ("median heading error (deg)", "n/a" if self.median_heading_error_deg is None
                 else f"{self.median_heading_error_deg:.1f}")]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _text(count) -> str:
    return "n/a" if count is None else str(count)


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


def evaluate_scene(model, scene_path, truth_path, bands=None, batch_size: int | None = None, device: str = "auto",
                   progress=None, figure=None, iou_threshold: float = metrics.IOU_THRESHOLD) -> Evaluation:
    """Run detection on ``scene_path`` and score it against the polygons in ``truth_path`` (any vector format or
    COCO JSON that ``load_labels`` reads). ``model``: a ShipDetector, or what ShipDetector takes (a bundle path, a
    loaded ``(ShipSam, BundleCard)``, None for the default). ``figure``: optional PNG path for the scene with truth
    (green) and predictions (magenta) outlined."""
    return score_scene(model, scene_path, truth_path, bands, batch_size, device, progress, figure,
                       iou_threshold).evaluation


def score_scene(model, scene_path, truth_path, bands=None, batch_size: int | None = None, device: str = "auto",
                progress=None, figure=None, iou_threshold: float = metrics.IOU_THRESHOLD) -> SceneScore:
    """``evaluate_scene`` with the per-ship measurements kept (see SceneScore). The scene is opened and normalised
    once for the detection, the box-prompted pass and the figure. A model without a ship prompter is scored on the
    box-prompted pass alone (its detection figures are None)."""
    detector = model if isinstance(model, ShipDetector) else ShipDetector(model, device=device, bands=bands,
                                                                          batch_size=batch_size)
    with detector.open(scene_path) as scene:
        truth = load_labels(truth_path, scene).ships
        pred = detector.detect(scene, progress=progress) if detector.finds_ships else detector.empty_table(scene)
        box_iou, baseline = _box_prompts(detector, scene, truth)
        if figure is not None:
            render_preview(scene, [(truth.geometry.values, TRUTH_COLOUR), (pred.geometry.values, SHIP_COLOUR)],
                           figure)
    matching = metrics.match(pred.geometry.values, truth.geometry.values, iou_threshold)
    t = measure(truth.geometry)
    errors = metrics.matched_errors(matching, pred["length_m"].to_numpy(), t["length_m"],
                                    pred["heading_deg"].to_numpy(), t["heading_deg"])
    evaluation = Evaluation(
        scene=scene.name, model=str(model) if isinstance(model, (str, Path)) else detector.name,
        truth_ships=len(truth), predicted_ships=len(pred), iou_threshold=iou_threshold, tp=matching.tp,
        fp=matching.fp, fn=matching.fn, precision=matching.precision, recall=matching.recall, f1=matching.f1,
        matched_mean_iou=matching.mean_iou, box_prompt_mean_iou=metrics.mean_or_none(box_iou),
        box_baseline_mean_iou=metrics.mean_or_none(baseline), **errors)
    if not detector.finds_ships:
        evaluation = dataclasses.replace(evaluation, predicted_ships=None, tp=None, fp=None, fn=None, precision=None,
                                         recall=None, f1=None)
    return SceneScore(evaluation, truth, pred, matching, box_iou, baseline,
                      metrics.length_errors(matching, pred["length_m"].to_numpy(), t["length_m"]))


def _box_prompts(detector: ShipDetector, scene, truth: gpd.GeoDataFrame):
    """Each truth ship's bounding box (clipped to the scene) as a user box prompt; per ship, the IoU of the mask it
    gives with the truth polygon (0 when no mask came back), and the IoU the filled box itself would score."""
    if len(truth) == 0:
        return [], []
    bounds = scene.bounds
    b = truth.geometry.bounds.to_numpy().copy()
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], bounds.left, bounds.right)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], bounds.bottom, bounds.top)
    pred = detector.detect(scene, boxes=b)
    by_prompt = dict(zip(pred["prompt"], pred.geometry))
    truth_geoms = truth.geometry.values
    ious = [metrics.polygon_iou(by_prompt.get(i), g) for i, g in enumerate(truth_geoms)]
    baseline = [metrics.box_baseline_iou(g, scene.transform) for g in truth_geoms]
    return ious, baseline
