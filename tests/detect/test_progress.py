"""Progress callbacks of inference, detect and evaluate (the CLI draws its bars from them)."""

from __future__ import annotations

import numpy as np
import pytest

from stemscale.detect import available_models, detect
from stemscale.detect.inference import predict_proba, window_starts


def _calls(record: list):
    return lambda *a: record.append(a)


def test_predict_proba_reports_every_window_once(pointwise_model):
    image = np.random.default_rng(0).normal(size=(300, 520)).astype(np.float32)
    calls: list[tuple[int, int]] = []
    plain = predict_proba(image, pointwise_model, window=64, overlap=16, batch_size=3)
    with_bar = predict_proba(image, pointwise_model, window=64, overlap=16, batch_size=3,
                             progress=_calls(calls))
    np.testing.assert_array_equal(plain, with_bar)
    total = len(window_starts(300, 64, 16)) * len(window_starts(520, 64, 16))
    assert calls[0] == (0, total)
    assert calls[-1] == (total, total)
    done = [d for d, _ in calls]
    assert done == sorted(done) and len(done) == len(set(done))
    assert all(t == total for _, t in calls)
    assert all(b - a <= 3 for a, b in zip(done, done[1:]))


def test_detect_reports_windows_after_resampling(pointwise_model):
    image = np.random.default_rng(1).normal(size=(200, 200)).astype(np.float32)
    calls: list[tuple[int, int]] = []
    found = detect(image, 0.15, model=pointwise_model, tta=False, resample=True, window=64,
                   overlap=16, progress=_calls(calls))
    assert found.zoom != 1.0
    # windows of the resampled image (model pixels), not of the input
    n = len(window_starts(round(200 * found.zoom), 64, 16)) ** 2
    assert calls[0] == (0, n) and calls[-1] == (n, n)


@pytest.mark.skipif("wse2" not in available_models(), reason="no shipped weights")
def test_evaluate_and_dose_curve_count_frames():
    from stemscale.detect.evaluate import dose_curve, evaluate_frames, simulate_eval_frame

    frames_done: list[tuple[int]] = []
    windows: list[tuple[int, int]] = []
    frames = (simulate_eval_frame(i, shape=(128, 128)) for i in range(2))
    res = evaluate_frames(None, frames, tta=False, progress=_calls(frames_done),
                          window_progress=_calls(windows))
    assert res["frames"] == 2
    assert frames_done == [(1,), (2,)]
    assert windows.count((0, 1)) == 2 and windows.count((1, 1)) == 2   # one window per frame
    curve_done: list[tuple[int]] = []
    dose_curve(None, [2000.0, 7300.0], n_frames=2, shape=(128, 128),
               progress=_calls(curve_done))
    assert curve_done == [(1,), (2,), (3,), (4,)]
