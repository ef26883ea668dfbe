"""Screening counts on hand-placed configurations (paper rules at 20.74 pm/px)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stemscale.average import ScreeningRules, detections_from_truth, screen_defects, select_pristine
from stemscale.errors import InputError

PS = 0.2074
SHAPE = (2000, 2000)


def table(rows):
    return pd.DataFrame(rows, columns=["class", "x_px", "y_px"])


def reasons(res, cls):
    c = res.counts[cls]
    return {k: v for k, v in c.items() if v}


def test_hand_placed_configurations():
    rows = [
        ("SV", 500, 500),                        # alone: kept
        ("SV", 700, 700), ("2Te", 720, 710),      # other class 20 px away: both rejected
        ("SV", 1000, 300), ("SV", 1030, 300),     # same class 30 px apart: both rejected
        ("SV", 1200, 600), ("SV", 1233, 600),     # 33 px apart: outside the 64 px window, both kept
        ("SV", 1500, 900), ("SV", 1532, 932),     # 32 px diagonal (Chebyshev 32: on the window edge, inside)
        ("SV", 60, 1000),                         # crop (128 px + 8 px margin) leaves the mosaic
        ("SV", 1800, 1935),                       # too close to the bottom edge
        ("2Te", 300, 1500),                       # isolated 2Te: kept
    ]
    res = screen_defects(table(rows), pixel_size_A=PS, mosaic_shape=SHAPE)
    assert res.counts["SV"] == {"detected": 10, "kept": 3, "other_class_nearby": 1, "same_class_nearby": 4,
                                "crop_outside": 2, "low_score": 0}
    assert res.counts["2Te"]["kept"] == 1 and res.counts["2Te"]["other_class_nearby"] == 1
    kept = set(map(tuple, res.kept[["x_px", "y_px"]].to_numpy().astype(int)))
    assert kept == {(500, 500), (1200, 600), (1233, 600), (300, 1500)}
    assert res.rules["crop_px"] == 128


def test_euclidean_metric_and_score():
    rows = [("SV", 500, 500), ("SV", 525, 525),   # Chebyshev 25 (inside), Euclid 35.4 (outside)
            ("SV", 900, 900)]
    df = table(rows).assign(score=[0.9, 0.9, 0.2])
    cheb = screen_defects(df, pixel_size_A=PS, mosaic_shape=SHAPE, rules=ScreeningRules(min_score=0.5))
    assert cheb.counts["SV"]["same_class_nearby"] == 2 and cheb.counts["SV"]["low_score"] == 1
    euc = screen_defects(df, pixel_size_A=PS, mosaic_shape=SHAPE, rules=ScreeningRules(metric="euclidean", min_score=0.5))
    assert euc.counts["SV"]["kept"] == 2 and euc.counts["SV"]["low_score"] == 1


def test_distances_are_physical():
    # at half the pixel size the same rules span twice the pixels
    rows = [("SV", 500, 500), ("SV", 550, 500)]  # 50 px apart
    paper = screen_defects(table(rows), pixel_size_A=PS, mosaic_shape=SHAPE)
    fine = screen_defects(table(rows), pixel_size_A=PS / 2, mosaic_shape=SHAPE)
    assert paper.counts["SV"]["kept"] == 2
    assert fine.counts["SV"]["same_class_nearby"] == 2
    assert fine.rules["crop_px"] == 256


def test_perturbing_classes():
    rows = [("SV", 700, 700), ("TeSe", 710, 700)]
    res = screen_defects(table(rows), pixel_size_A=PS, mosaic_shape=SHAPE, classes=["SV"], perturbing_classes=["2Te"])
    assert res.counts["SV"]["kept"] == 1


def test_select_pristine_distance_thinning_and_counts():
    xs, ys = np.meshgrid(np.arange(100, 1900, 10.0), np.arange(100, 1900, 10.0))
    sites = pd.DataFrame({"x_px": xs.ravel(), "y_px": ys.ravel()})
    defects = table([("SV", 1000, 1000)])
    res = select_pristine(sites, defects, pixel_size_A=PS, mosaic_shape=SHAPE, seed=1)
    kept = res.kept[["x_px", "y_px"]].to_numpy()
    d = np.abs(kept - 1000).max(axis=1)
    assert (d >= 64).all()
    # kept sites are at least half a crop (64 px) apart (Chebyshev)
    from scipy.spatial import cKDTree

    pairs = cKDTree(kept).query_pairs(64 - 1e-9, p=np.inf)
    assert not pairs
    c = res.counts["pristine"]
    assert c["detected"] == len(sites)
    assert c["kept"] + c["near_defect"] + c["crop_outside"] + c["thinned"] + c["over_max_sites"] == c["detected"]
    assert (res.kept["class"] == "pristine").all()
    few = select_pristine(sites, defects, pixel_size_A=PS, mosaic_shape=SHAPE, max_sites=5)
    assert len(few.kept) == 5


def test_detections_from_truth_rounds_to_pixels():
    truth = pd.DataFrame({"defect": ["", "SV", "2Te"], "x_px": [1.2, 10.4, 20.6], "y_px": [3.0, 5.5, 7.49]})
    det = detections_from_truth(truth)
    assert list(det["class"]) == ["SV", "2Te"]
    assert det[["x_px", "y_px"]].to_numpy().tolist() == [[10.0, 6.0], [21.0, 7.0]]
    jit = detections_from_truth(truth, jitter_px=0.5, seed=3)
    assert np.all(jit["x_px"] == np.round(jit["x_px"]))


@pytest.mark.parametrize("bad, match", [
    (dict(pixel_size_A=0.0), "pixel_size_A"),
    (dict(pixel_size_A=float("nan")), "pixel_size_A"),
    (dict(mosaic_shape=(10,)), "mosaic_shape"),
])
def test_bad_parameters(bad, match):
    kw = dict(pixel_size_A=PS, mosaic_shape=SHAPE)
    kw.update(bad)
    with pytest.raises(InputError, match=match):
        screen_defects(table([("SV", 500, 500)]), **kw)


def test_bad_tables():
    with pytest.raises(InputError, match="lacks column"):
        screen_defects(pd.DataFrame({"x_px": [1.0], "y_px": [2.0]}), pixel_size_A=PS, mosaic_shape=SHAPE)
    with pytest.raises(InputError, match="NaN"):
        screen_defects(table([("SV", np.nan, 5)]), pixel_size_A=PS, mosaic_shape=SHAPE)
    with pytest.raises(InputError, match="metric"):
        ScreeningRules(metric="manhattan")
