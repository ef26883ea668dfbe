"""End to end with the shipped weights: detection on simulated frames, resampling, the CLI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from stemscale.detect import available_models, column_scores, detect, detection_scores
from stemscale.errors import InputError

pytestmark = pytest.mark.skipif("wse2" not in available_models(), reason="no shipped weights")

DENSE = {"SV": 0.04, "DV": 0.01, "2Te": 0.04, "TeSe": 0.04, "MV": 0.01, "MSub": 0.02}


def _frame(pixel_size=0.2074, shape=(256, 256), seed=424242, dose=7300.0):
    from stemscale.simulate import Microscope, Sample, simulate_frame

    return simulate_frame(shape, sample=Sample(concentrations=DENSE, rotation_deg=17.0),
                          microscope=Microscope(pixel_size_A=pixel_size), dose_e_per_a2=dose,
                          seed=seed)


def _true_defects(truth):
    t = truth[truth["defect"] != ""]
    return t.rename(columns={"defect": "class"})[["class", "x_px", "y_px"]]


def test_shipped_model_finds_columns_and_defects_on_a_simulated_frame():
    fr = _frame()
    found = detect(fr.image, 0.2074, tta=False)
    cols = column_scores(found.columns, fr.truth, shape=fr.image.shape, border=8)
    # the network finds (almost) every atom column and puts it on the right sublattice
    assert cols["missed"] <= 0.03 * cols["n_true"]
    assert cols["spurious"] <= 0.03 * cols["n_true"]
    assert cols["site_accuracy"] > 0.97
    assert cols["rms_position_error_px"] < 1.5
    s = detection_scores(found.defects, _true_defects(fr.truth), shape=fr.image.shape, border=8)
    pooled_f1 = 2 * s["tp"].sum() / (2 * s["tp"].sum() + s["fp"].sum() + s["fn"].sum())
    assert s["n_true"].sum() >= 20
    assert pooled_f1 > 0.8
    # Å coordinates follow the pixel size
    np.testing.assert_allclose(found.defects["x_A"], found.defects["x_px"] * 0.2074)


def test_other_pixel_size_is_refused_or_resampled():
    fr = _frame(pixel_size=0.15, shape=(320, 320))
    with pytest.raises(InputError, match="resample"):
        detect(fr.image, 0.15, tta=False)
    found = detect(fr.image, 0.15, tta=False, resample=True)
    assert found.zoom == pytest.approx(0.15 / 0.2074)
    # positions come back in the input's pixels: match the truth within 1.5 Å
    cols = column_scores(found.columns, fr.truth, radius=1.5 / 0.15, shape=fr.image.shape,
                         border=12)
    assert cols["missed"] <= 0.05 * cols["n_true"]
    assert cols["rms_position_error_px"] * 0.15 < 0.4  # Å


def test_cli_detect_writes_tables(tmp_path):
    import tifffile

    from stemscale.cli import detect as cli

    fr = _frame(shape=(192, 192))
    tif = tmp_path / "frame.tif"
    tifffile.imwrite(tif, fr.image)
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    cli.register(sub)
    args = parser.parse_args(["detect", str(tif), "--pixel-size", "0.2074", "--no-tta",
                              "--out", str(tmp_path / "out"), "--overlay"])
    assert args.func(args) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["columns"] > 100
    assert (tmp_path / "out" / "overlay.png").stat().st_size > 1000
    import pandas as pd

    d = pd.read_csv(tmp_path / "out" / "defects.csv")
    assert list(d.columns) == ["class", "x_px", "y_px", "x_A", "y_A", "score", "area"]
