"""Probability maps to tables: centroids, classes by summed probability, minimum area."""

from __future__ import annotations

import numpy as np
import pytest

from stemscale.detect import OUTPUT_CLASSES, find_columns, find_defects

C = list(OUTPUT_CLASSES)


def _maps(blobs, shape=(64, 96)):
    """Probability maps: background 1 except discs where class probabilities are set."""
    p = np.zeros((len(C), *shape), np.float32)
    p[0] = 1.0
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    for x, y, r, probs in blobs:
        disc = (xx - x) ** 2 + (yy - y) ** 2 <= r**2
        p[:, disc] = 0.0
        for name, v in probs.items():
            p[C.index(name), disc] = v
    return p


def test_defect_centroids_classes_and_area_cut():
    p = _maps([
        (20, 20, 3, {"SV": 0.7, "X": 0.3}),              # 29 px SV
        (60, 20, 3, {"2Te": 0.45, "TeSe": 0.35, "X": 0.2}),  # 2Te wins
        (30, 45, 3, {"MV": 0.9, "M": 0.1}),
        (80, 45, 1, {"DV": 1.0}),                         # 5 px: below the 10 px cut
        (50, 45, 3, {"X": 0.9, "SV": 0.1}),               # pristine column: no defect
    ])
    d = find_defects(p, C, min_area=10)
    assert d["class"].tolist() == ["SV", "2Te", "MV"]
    np.testing.assert_allclose(d[["x_px", "y_px"]].to_numpy(), [[20, 20], [60, 20], [30, 45]],
                               atol=1e-9)
    assert d["area"].tolist() == [29, 29, 29]
    assert d["score"].tolist() == pytest.approx([0.7, 0.45, 0.9])
    assert len(find_defects(p, C, min_area=5)) == 4


def test_split_defect_region_is_one_defect_with_the_majority_class():
    p = _maps([(40, 30, 4, {"2Te": 0.6, "X": 0.4})])
    yy, xx = np.mgrid[0:64, 0:96]
    half = ((xx - 40) ** 2 + (yy - 30) ** 2 <= 16) & (xx > 40)
    p[C.index("2Te"), half], p[C.index("TeSe"), half] = 0.3, 0.5  # argmax TeSe on one side
    d = find_defects(p, C)
    assert len(d) == 1 and d["class"].iloc[0] == "2Te"


def test_columns_include_defective_sites_once():
    p = _maps([(20, 20, 3, {"M": 0.9, "X": 0.1}), (40, 20, 3, {"X": 0.8, "M": 0.2}),
               (60, 20, 3, {"SV": 0.6, "X": 0.4}), (80, 20, 3, {"MSub": 0.7, "M": 0.3})])
    cols = find_columns(p, C)
    assert cols["site"].tolist() == ["M", "X", "X", "M"]
    assert cols["label"].tolist() == ["M", "X", "SV", "MSub"]
    np.testing.assert_allclose(cols["x_px"], [20, 40, 60, 80], atol=1e-9)


def test_empty_maps_give_empty_tables_with_columns():
    p = _maps([])
    assert list(find_defects(p, C).columns) == ["class", "x_px", "y_px", "score", "area"]
    assert len(find_columns(p, C)) == 0


def test_default_area_cut_is_half_a_label_blob():
    from stemscale.detect.postprocess import MIN_DEFECT_AREA

    assert MIN_DEFECT_AREA == 19  # half the ~38 px of a training label
    p = _maps([(20, 20, 3, {"SV": 0.7, "X": 0.3}),    # 29 px: kept
               (60, 20, 2, {"TeSe": 0.7, "X": 0.3})])  # 13 px: a noise blob, dropped
    assert find_defects(p, C)["class"].tolist() == ["SV"]
