"""refine_positions: the table users get, and errors on bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stemscale.errors import InputError
from stemscale.fit import FitState, crlb, fit_batch, refine_positions

from .conftest import gaussian_windows


def _lattice(rng, spacing=12, shape=(72, 84), amp=800.0, sigma=1.4, bg=15.0):
    ys, xs = np.mgrid[8:shape[0] - 6:spacing, 8:shape[1] - 6:spacing]
    x = xs.ravel() + rng.uniform(-0.4, 0.4, xs.size)
    y = ys.ravel() + rng.uniform(-0.4, 0.4, ys.size)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
    img = np.full(shape, bg)
    for xi, yi in zip(x, y):
        img += amp * np.exp(-((xx - xi) ** 2 + (yy - yi) ** 2) / (2 * sigma**2))
    return img, np.column_stack([x, y])


def test_table_columns_units_and_accuracy():
    rng = np.random.default_rng(70)
    img, truth = _lattice(rng)
    start = pd.DataFrame({"x_px": np.round(truth[:, 0]), "y_px": np.round(truth[:, 1])},
                         index=pd.RangeIndex(100, 100 + len(truth)))
    t = refine_positions(img, start, window=7, pixel_size_angstrom=0.2074)
    assert list(t.index) == list(start.index)
    for col in ("x_px", "y_px", "amplitude", "sigma_x_px", "sigma_y_px", "background", "x_err_px",
                "y_err_px", "x_A", "y_A", "x_err_pm", "y_err_pm", "chi_square",
                "reduced_chi_square", "iterations", "state", "state_name", "edge"):
        assert col in t.columns, col
    assert (t.state == FitState.CONVERGED).all() and (t.state_name == "CONVERGED").all()
    np.testing.assert_allclose(t.x_px, truth[:, 0], atol=1e-4)
    np.testing.assert_allclose(t.y_px, truth[:, 1], atol=1e-4)
    np.testing.assert_allclose(t.x_A, t.x_px * 0.2074)
    np.testing.assert_allclose(t.x_err_pm, t.x_err_px * 20.74)
    np.testing.assert_allclose(t.sigma_x_px, 1.4, atol=1e-4)


def test_poisson_error_bars_are_the_crlb_in_pm():
    rng = np.random.default_rng(71)
    img, truth = _lattice(rng)
    counts = rng.poisson(img).astype(float)
    t = refine_positions(counts, truth, window=7, estimator="mle", pixel_size_angstrom=0.2074,
                         model="gauss2d")
    assert (t.state == FitState.CONVERGED).all()
    p = np.column_stack([t.amplitude, t.x_px, t.y_px, t.sigma_x_px, t.background])
    p[:, 1] -= np.floor(truth[:, 0] - 3 + 0.5)
    p[:, 2] -= np.floor(truth[:, 1] - 3 + 0.5)
    expected = crlb(p, "gauss2d", (7, 7))[:, 1] * 20.74
    np.testing.assert_allclose(t.x_err_pm, expected, rtol=1e-6)
    # a Poisson MLE fit of a good window has a reduced chi-square near 1
    assert 0.7 < t.reduced_chi_square.median() < 1.3


def test_block_offset_and_neighbour_rounds():
    rng = np.random.default_rng(72)
    img, truth = _lattice(rng, spacing=8, sigma=1.6)
    full = refine_positions(img, truth, window=9, neighbour_rounds=2)
    block = img[16:, 24:]
    inside = (truth[:, 0] > 30) & (truth[:, 1] > 22)
    part = refine_positions(block, truth[inside], window=9, neighbour_rounds=0, offset_xy=(24, 16))
    single = refine_positions(img, truth, window=9)
    np.testing.assert_allclose(part.x_px, single.x_px[inside], atol=1e-9)
    err_single = np.abs(single.x_px - truth[:, 0]).max()
    err_joint = np.abs(full.x_px - truth[:, 0]).max()
    assert err_joint < 0.2 * err_single


def test_bad_rows_keep_their_state_and_do_not_break_the_table():
    rng = np.random.default_rng(73)
    img, truth = _lattice(rng)
    img[30:40, 30:40] = np.nan
    pos = np.vstack([truth, [[33.0, 35.0]]])
    t = refine_positions(img, pos, window=7)
    assert t.state.iloc[-1] == FitState.INVALID_INPUT
    assert np.isnan(t.x_px.iloc[-1]) and np.isnan(t.x_err_px.iloc[-1])
    assert (t.state.iloc[:-1][~t.x_px.iloc[:-1].isna()] >= 0).all()


def test_input_errors():
    img = np.zeros((20, 20))
    with pytest.raises(InputError, match="x_px"):
        refine_positions(img, pd.DataFrame({"x": [1.0], "y": [2.0]}))
    with pytest.raises(InputError, match="pixel_size"):
        refine_positions(img, np.array([[10.0, 10.0]]), pixel_size_angstrom=-1)
    data = gaussian_windows(np.array([[100, 3, 3, 1, 1, 0.0]]), (7, 7), "gauss2d_elliptic")
    start = np.array([[100, 3, 3, 1, 1, 0.0]])
    with pytest.raises(InputError, match="estimator"):
        fit_batch(data, start, estimator="poisson")
    with pytest.raises(InputError, match="backend"):
        fit_batch(data, start, backend="gpu")
    with pytest.raises(InputError, match="weights"):
        fit_batch(data, start, estimator="mle", weights=np.ones((1, 49)))
    with pytest.raises(InputError, match="initial"):
        fit_batch(data, start[:, :5])
    with pytest.raises(InputError, match="window_shape"):
        fit_batch(np.zeros((1, 48)), start)
    with pytest.raises(InputError, match="fit_mask"):
        fit_batch(data, start, fit_mask=[True] * 5)
    with pytest.raises(InputError, match="bounds"):
        fit_batch(data, start, bounds=(np.ones(6), np.zeros(6)))
    with pytest.raises(InputError, match="max_iterations"):
        fit_batch(data, start, max_iterations=0)
    empty = fit_batch(np.zeros((0, 7, 7)), np.zeros((0, 6)))
    assert empty.parameters.shape == (0, 6)
