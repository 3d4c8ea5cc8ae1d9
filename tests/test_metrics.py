import numpy as np
import pytest
import shapely
from affine import Affine
from shapely import affinity

from samgeo_ship.metrics import (best_threshold, box_baseline_iou, heading_difference_deg, length_errors, mask_iou,
                                 match, matched_errors, polygon_iou, pool, recall_by_group, size_class)


def sq(x, y, size=10.0):
    return shapely.box(x, y, x + size, y + size)


def test_perfect_and_empty_matches():
    truth = [sq(0, 0), sq(100, 0)]
    m = match(truth, truth)
    assert (m.tp, m.fp, m.fn, m.precision, m.recall, m.f1) == (2, 0, 0, 1.0, 1.0, 1.0)
    assert m.mean_iou == 1.0
    none = match([], truth)
    assert (none.precision, none.recall, none.f1, none.mean_iou) == (0.0, 0.0, 0.0, None)
    assert match([], []).f1 == 1.0
    assert match(truth, []).precision == 0.0


def test_matching_is_greedy_one_to_one_highest_iou_first():
    truth = [sq(0, 0), sq(3, 0)]  # IoU of the two truths = 7/13
    pred_a = sq(1, 0)  # IoU 9/11 with truth 0, 8/12 with truth 1
    pred_b = sq(0.5, 0)  # IoU 9.5/10.5 with truth 0: takes it first
    m = match([pred_a, pred_b], truth)
    assert [(i, j) for i, j, _ in m.pairs] == [(1, 0), (0, 1)]
    assert m.pairs[0][2] == pytest.approx(9.5 / 10.5)
    assert (m.tp, m.fp, m.fn) == (2, 0, 0)
    # a second prediction of the same ship is a false positive, not a second match
    m = match([sq(0, 0), sq(0.5, 0)], [sq(0, 0)])
    assert (m.tp, m.fp, m.fn) == (1, 1, 0)


def test_iou_threshold_is_inclusive_at_half():
    truth = sq(0, 0)
    half = shapely.box(0, 0, 10, 5)  # IoU 0.5 exactly
    assert polygon_iou(half, truth) == pytest.approx(0.5)
    assert match([half], [truth]).tp == 1
    assert match([shapely.box(0, 0, 10, 4.9)], [truth]).tp == 0


def test_heading_and_length_errors():
    assert heading_difference_deg(179, 1) == pytest.approx(2)
    assert heading_difference_deg(10, 100) == pytest.approx(90)
    m = match([sq(0, 0), sq(100, 0)], [sq(100, 0), sq(0, 0)])
    errs = matched_errors(m, pred_length_m=[110, 90], truth_length_m=[100, 100], pred_heading_deg=[178, 5],
                          truth_heading_deg=[10, 2])
    # pairs: pred 0 <-> truth 1 (110 vs 100, 178 vs 2), pred 1 <-> truth 0 (90 vs 100, 5 vs 10)
    assert errs["median_length_error"] == pytest.approx(0.1)
    assert errs["median_heading_error_deg"] == pytest.approx(4.5)
    assert matched_errors(match([], []), [], [], [], [])["median_length_error"] is None


def test_mask_iou_and_box_baseline():
    a = np.zeros((10, 10), bool)
    a[2:6, 2:6] = True
    b = np.zeros((10, 10), bool)
    b[4:8, 2:6] = True
    assert mask_iou(a, b) == pytest.approx(8 / 24)
    assert mask_iou(np.zeros((3, 3)), np.zeros((3, 3))) == 0.0
    t = Affine(10.0, 0, 500_000.0, 0, -10.0, 4_800_000.0)
    upright = shapely.box(500_100, 4_799_500, 500_400, 4_799_560)
    assert box_baseline_iou(upright, t) == pytest.approx(1.0)
    diamond = affinity.rotate(shapely.box(500_100, 4_799_500, 500_400, 4_799_800), 45)
    assert box_baseline_iou(diamond, t) == pytest.approx(0.5, abs=0.05)
    ship = affinity.rotate(shapely.box(500_000, 4_799_000, 500_200, 4_799_030), 45)  # long thin hull at 45 deg
    assert box_baseline_iou(ship, t) < 0.35


def test_pool_counts_every_ship_once_across_scenes():
    a = match([sq(0, 0), sq(50, 50)], [sq(0, 0)])  # 1 TP, 1 FP
    b = match([sq(0, 0)], [sq(0, 0), sq(100, 0), sq(200, 0)])  # 1 TP, 2 FN
    m = pool([a, b])
    assert (m.n_pred, m.n_truth, m.tp, m.fp, m.fn) == (3, 4, 2, 1, 2)
    assert sorted(j for _, j, _ in m.pairs) == [0, 1]  # b's truth 0 is truth 1 of the pool
    assert m.precision == pytest.approx(2 / 3) and m.recall == pytest.approx(0.5)
    assert pool([]).f1 == 1.0


def test_recall_by_group_and_size_classes():
    assert list(size_class([10, 99.9, 100, 400, 400.5])) == ["small", "small", "medium", "medium", "large"]
    m = match([sq(0, 0)], [sq(0, 0), sq(100, 0), sq(200, 0)])
    r = recall_by_group(m, ["a", "a", "b"], ["a", "b", "c"])
    assert r["a"] == {"ships": 2, "found": 1, "recall": 0.5}
    assert r["b"] == {"ships": 1, "found": 0, "recall": 0.0}
    assert r["c"] == {"ships": 0, "found": 0, "recall": None}


def threshold_sweep(pred, scores, truth, thresholds):
    return [(t, match([p for p, s in zip(pred, scores) if s >= t], truth)) for t in thresholds]


def test_best_threshold_keeps_the_best_f1_highest_threshold_on_ties():
    truth = [sq(0, 0), sq(100, 0)]
    pred = [sq(0, 0), sq(100, 0), sq(300, 0)]
    sweep = threshold_sweep(pred, [0.9, 0.4, 0.2], truth, [0.1, 0.3, 0.35, 0.5, 0.95])
    assert [m.tp for _, m in sweep] == [2, 2, 2, 1, 0]
    t, m = best_threshold(sweep)
    assert (t, m.f1) == (0.35, 1.0)
    assert best_threshold(threshold_sweep([sq(300, 0)], [0.9], truth, [0.1, 0.5]))[0] == 0.5


def test_length_errors_per_pair():
    m = match([sq(0, 0), sq(100, 0)], [sq(100, 0), sq(0, 0)])
    assert sorted(length_errors(m, [110, 90], [100, 100])) == pytest.approx([0.1, 0.1])
    assert length_errors(match([], []), [], []).size == 0
