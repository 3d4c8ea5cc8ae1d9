"""The one place detections are scored against truth: greedy IoU matching, precision/recall/F1, mask IoU, and the
length and heading errors of matched ships. Used by `shipseg evaluate`, the tests and the benchmarks alike."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import shapely
from affine import Affine
from rasterio.features import rasterize

from samgeo_ship.raster import window_around

IOU_THRESHOLD = 0.5
# Detection score thresholds searched on validation data (prompter peaks, oneshot similarities).
SCORE_GRID = tuple(round(float(t), 2) for t in np.arange(0.1, 0.95, 0.05))


@dataclass
class Matching:
    """Result of one-to-one matching. ``pairs``: (pred_index, truth_index, iou) sorted by IoU, highest first.

    Precision and recall follow the usual zero-division convention: 0 when there is nothing to divide by, except
    that an empty prediction of an empty truth scores 1 everywhere (nothing to find, nothing wrongly found)."""

    n_pred: int
    n_truth: int
    pairs: list[tuple[int, int, float]] = field(default_factory=list)

    @property
    def tp(self) -> int:
        return len(self.pairs)

    @property
    def fp(self) -> int:
        return self.n_pred - self.tp

    @property
    def fn(self) -> int:
        return self.n_truth - self.tp

    @property
    def precision(self) -> float:
        if self.n_pred == 0:
            return 1.0 if self.n_truth == 0 else 0.0
        return self.tp / self.n_pred

    @property
    def recall(self) -> float:
        if self.n_truth == 0:
            return 1.0 if self.n_pred == 0 else 0.0
        return self.tp / self.n_truth

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0

    @property
    def mean_iou(self) -> float | None:
        """Mean IoU of the matched pairs (None without a match)."""
        return mean_or_none([iou for _, _, iou in self.pairs])


def polygon_iou(a, b) -> float:
    """Intersection over union of two (Multi)Polygons in the same CRS (0 when either is empty)."""
    if a is None or b is None or a.is_empty or b.is_empty:
        return 0.0
    inter = shapely.intersection(a, b).area
    union = a.area + b.area - inter
    return float(inter / union) if union > 0 else 0.0


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two same-shape boolean masks (0 when both are empty)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def match(pred: Sequence, truth: Sequence, iou_threshold: float = IOU_THRESHOLD) -> Matching:
    """Greedy one-to-one matching of predicted and truth polygons (same CRS): candidate pairs are taken highest
    IoU first, each polygon at most once, and a pair counts when its IoU is >= ``iou_threshold``."""
    pred = np.asarray(list(pred), dtype=object)
    truth = np.asarray(list(truth), dtype=object)
    out = Matching(len(pred), len(truth))
    if len(pred) == 0 or len(truth) == 0:
        return out
    # Only intersecting pairs can reach the threshold; the tree keeps this O(n log n) for thousands of ships.
    p_idx, t_idx = shapely.STRtree(truth).query(pred, predicate="intersects")
    candidates = sorted(((polygon_iou(pred[i], truth[j]), int(i), int(j)) for i, j in zip(p_idx, t_idx)),
                        key=lambda c: (-c[0], c[1], c[2]))
    used_p, used_t = set(), set()
    for iou, i, j in candidates:
        if iou < iou_threshold:
            break
        if i in used_p or j in used_t:
            continue
        used_p.add(i)
        used_t.add(j)
        out.pairs.append((i, j, iou))
    return out


def pool(matchings: Sequence[Matching]) -> Matching:
    """One Matching over several scenes: predictions and truths are numbered on, scene after scene, so the pooled
    precision, recall, F1 and matched IoU count every ship once (not a mean of per-scene scores)."""
    out = Matching(sum(m.n_pred for m in matchings), sum(m.n_truth for m in matchings))
    n_pred = n_truth = 0
    for m in matchings:
        out.pairs.extend((i + n_pred, j + n_truth, iou) for i, j, iou in m.pairs)
        n_pred, n_truth = n_pred + m.n_pred, n_truth + m.n_truth
    out.pairs.sort(key=lambda p: (-p[2], p[0], p[1]))
    return out


def found(matching: Matching) -> np.ndarray:
    """(n_truth,) bool: which truth ships were matched."""
    hit = np.zeros(matching.n_truth, bool)
    hit[[j for _, j, _ in matching.pairs]] = True
    return hit


def recall_by_group(matching: Matching, groups, order: Sequence[str]) -> dict[str, dict]:
    """Recall within each group of truth ships. ``groups``: one label per truth ship; ``order``: the labels to
    report (a label without ships gets recall None). Returns {label: {"ships", "found", "recall"}}."""
    groups, hit = np.asarray(groups, dtype=object), found(matching)
    out = {}
    for label in order:
        members = groups == label
        n, k = int(members.sum()), int(hit[members].sum())
        out[label] = {"ships": n, "found": k, "recall": k / n if n else None}
    return out


SMALL_BELOW_PX, LARGE_ABOVE_PX = 100, 400
SIZE_CLASSES = ("small", "medium", "large")


def size_class(area_px) -> np.ndarray:
    """Per ship area in scene pixels: "small" (< 100 px), "medium" (100-400 px, both ends included) or "large"
    (> 400 px)."""
    a = np.asarray(area_px, float)
    return np.where(a < SMALL_BELOW_PX, "small", np.where(a > LARGE_ABOVE_PX, "large", "medium")).astype(object)


def best_threshold(sweep: list[tuple], f1: Callable = operator.attrgetter("f1")) -> tuple:
    """The (threshold, result) of a sweep with the highest F1; on a tie, the highest threshold (as good, with
    fewer detections; calibrate keeps the card's own when nothing is found at any threshold). A threshold may be a
    tuple (score, minimum contrast): ties then go to the highest score, then the highest contrast. ``f1``: the F1
    of a result (default: a Matching's)."""
    return max(sweep, key=lambda tm: (f1(tm[1]), tm[0]))


def heading_difference_deg(a, b) -> np.ndarray:
    """Absolute difference of axial headings (degrees, modulo 180): 179 vs 1 is 2 degrees apart."""
    d = np.abs(np.asarray(a, float) - np.asarray(b, float)) % 180.0
    return np.minimum(d, 180.0 - d)


def matched_errors(matching: Matching, pred_length_m, truth_length_m, pred_heading_deg, truth_heading_deg
                   ) -> dict[str, float | None]:
    """Median relative length error |pred - truth| / truth and median absolute heading error (degrees, mod 180)
    over the matched pairs; None where there is no pair."""
    if not matching.pairs:
        return {"median_length_error": None, "median_heading_error_deg": None}
    i, j = _pair_indices(matching)
    ph, th = np.asarray(pred_heading_deg, float)[i], np.asarray(truth_heading_deg, float)[j]
    return {"median_length_error": float(np.median(length_errors(matching, pred_length_m, truth_length_m))),
            "median_heading_error_deg": float(np.median(heading_difference_deg(ph, th)))}


def length_errors(matching: Matching, pred_length_m, truth_length_m) -> np.ndarray:
    """Relative length error |pred - truth| / truth of each matched pair, in the order of ``matching.pairs``."""
    i, j = _pair_indices(matching)
    pl, tl = np.asarray(pred_length_m, float)[i], np.asarray(truth_length_m, float)[j]
    return np.abs(pl - tl) / tl


def _pair_indices(matching: Matching) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([p for p, _, _ in matching.pairs], int), np.array([t for _, t, _ in matching.pairs], int))


def box_baseline_iou(geometry, transform: Affine) -> float:
    """IoU of a ship's filled bounding box with its own mask, both on the scene's pixel grid (pixel-centre rule).

    The score a model gets for answering a box prompt with the box itself: a box-prompted mask must beat it."""
    win = window_around(geometry.bounds, transform)
    c0, r0, h, w = int(win.col_off), int(win.row_off), int(win.height), int(win.width)
    mask = rasterize([geometry], out_shape=(h, w), transform=transform @ Affine.translation(c0, r0),
                     dtype=np.uint8) > 0
    if not mask.any():
        return 0.0
    rows, cols = np.nonzero(mask)
    box = np.zeros_like(mask)
    box[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = True
    return mask_iou(mask, box)


def mean_or_none(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None
