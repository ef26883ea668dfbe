"""Matching and scores against brute-force oracles and hand-counted cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linear_sum_assignment

from stemscale.detect import column_scores, confusion_matrix, detection_scores, match_points
from stemscale.detect.metrics import sum_scores


def _oracle(pred, true, radius):
    """Dense assignment: maximise the number of pairs within radius, then minimise distance."""
    d = np.hypot(pred[:, None, 0] - true[None, :, 0], pred[:, None, 1] - true[None, :, 1])
    cost = np.where(d < radius, d, 1e6)
    r, c = linear_sum_assignment(cost)
    ok = cost[r, c] < 1e6
    return ok.sum(), d[r[ok], c[ok]].sum()


@pytest.mark.parametrize("seed", range(8))
def test_matching_agrees_with_dense_assignment(seed):
    rng = np.random.default_rng(seed)
    true = rng.uniform(0, 80, (60, 2))
    pred = np.concatenate([true[:45] + rng.normal(0, 3, (45, 2)), rng.uniform(0, 80, (20, 2))])
    m = match_points(pred, true, 7.5)
    # one-to-one, all within radius
    assert len(set(m[:, 0])) == len(m) and len(set(m[:, 1])) == len(m)
    dist = np.hypot(*(pred[m[:, 0]] - true[m[:, 1]]).T)
    assert np.all(dist < 7.5)
    n, total = _oracle(pred, true, 7.5)
    assert len(m) == n
    assert dist.sum() == pytest.approx(total)


def test_matching_handles_empty_and_coincident_points():
    assert match_points(np.zeros((0, 2)), np.ones((3, 2))).shape == (0, 2)
    m = match_points(np.array([[1.0, 1.0]]), np.array([[1.0, 1.0]]))
    assert m.tolist() == [[0, 0]]


def _table(rows):
    return pd.DataFrame(rows, columns=["class", "x_px", "y_px"])


def test_per_class_scores_hand_counted():
    true = _table([("SV", 10, 10), ("SV", 50, 50), ("2Te", 100, 100), ("MV", 200, 10)])
    pred = _table([("SV", 12, 11),       # TP (distance 2.2)
                   ("SV", 50, 60),       # FP: 10 px away from the true SV
                   ("TeSe", 100, 101),   # wrong class: FP for TeSe, FN for 2Te
                   ("MV", 205, 13)])     # TP (5.8 px)
    s = detection_scores(pred, true)
    assert s.loc["SV", ["tp", "fp", "fn"]].tolist() == [1, 1, 1]
    assert s.loc["SV", "f1"] == pytest.approx(0.5)
    assert s.loc["2Te", ["tp", "fp", "fn"]].tolist() == [0, 0, 1]
    assert s.loc["TeSe", ["tp", "fp", "fn"]].tolist() == [0, 1, 0]
    assert s.loc["MV", "f1"] == 1.0
    assert np.isnan(s.loc["DV", "f1"])

    cm = confusion_matrix(pred, true)
    assert cm.loc["SV", "SV"] == 1 and cm.loc["SV", "none"] == 1 and cm.loc["none", "SV"] == 1
    assert cm.loc["2Te", "TeSe"] == 1
    assert cm.loc["MV", "MV"] == 1
    assert cm.values.sum() == 5

    pooled = sum_scores([s, s])
    assert pooled.loc["SV", "tp"] == 2 and pooled.loc["SV", "f1"] == pytest.approx(0.5)


def test_border_exclusion_counts_only_inner_objects():
    true = _table([("SV", 2, 50), ("SV", 50, 50)])
    pred = _table([("SV", 98, 50), ("SV", 51, 50)])
    s = detection_scores(pred, true, shape=(100, 100), border=5)
    assert s.loc["SV", ["n_true", "n_pred", "tp", "fp", "fn"]].tolist() == [1, 1, 1, 0, 0]


def test_column_scores_count_missed_and_spurious():
    true = pd.DataFrame({"x_px": [10.0, 20, 30, 40], "y_px": [10.0, 10, 10, 10],
                         "site": ["M", "X", "M", "X"]})
    pred = pd.DataFrame({"x_px": [10.5, 20.0, 41.0, 80.0], "y_px": [10.0, 10.5, 10, 80],
                         "site": ["M", "M", "X", "X"]})
    c = column_scores(pred, true)
    assert (c["matched"], c["missed"], c["spurious"]) == (3, 1, 1)
    assert c["site_accuracy"] == pytest.approx(2 / 3)
    assert c["rms_position_error_px"] == pytest.approx(np.sqrt((0.25 + 0.25 + 1) / 3))
