"""Bad windows get their own state and never disturb the rest of the batch."""

from __future__ import annotations

import numpy as np
import pytest

from stemscale.fit import FitState, estimate_initial, fit_batch

from .conftest import gaussian_windows, random_truth

SHAPE = (7, 7)


def _bad_windows(rng):
    base = rng.poisson(gaussian_windows(random_truth(rng, 1, SHAPE), SHAPE, "gauss2d_elliptic")[0])
    base = base.astype(np.float64)
    nan = base.copy()
    nan[2, 3] = np.nan
    inf = base.copy()
    inf[0, 0] = np.inf
    two = gaussian_windows(np.array([[1000, 1.0, 3.0, 1.0, 1.0, 0.0],
                                     [1000, 5.0, 3.0, 1.0, 1.0, 20.0]]), SHAPE,
                           "gauss2d_elliptic").sum(axis=0)
    edge = gaussian_windows(np.array([[1000, 6.2, 3.2, 1.2, 1.2, 20.0]]), SHAPE,
                            "gauss2d_elliptic")[0]
    outside = gaussian_windows(np.array([[1000, 8.5, 3.2, 1.2, 1.2, 20.0]]), SHAPE,
                               "gauss2d_elliptic")[0]
    return {
        "nan": nan, "inf": inf, "zeros": np.zeros(SHAPE), "constant": np.full(SHAPE, 37.0),
        "two_peaks": two, "edge_peak": edge, "outside_peak": outside,
        "pure_noise": rng.poisson(30.0, SHAPE).astype(np.float64),
    }


def _argmax_xy(windows):
    """Start positions as a peak finder would give them: the brightest pixel."""
    flat = np.nan_to_num(windows.reshape(len(windows), -1), nan=-np.inf)
    iy, ix = np.unravel_index(np.argmax(flat, axis=1), windows.shape[1:])
    return np.column_stack([ix, iy]).astype(np.float64)


@pytest.mark.parametrize("estimator", ["lse", "mle"])
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_bad_windows_are_flagged_and_leave_good_fits_bitwise_unchanged(backend, estimator):
    rng = np.random.default_rng(30)
    truth = random_truth(rng, 40, SHAPE)
    good = rng.poisson(gaussian_windows(truth, SHAPE, "gauss2d_elliptic")).astype(np.float64)
    bad = _bad_windows(rng)
    names = list(bad)
    # interleave bad windows between good ones
    order = rng.permutation(len(good) + len(bad))
    data = np.concatenate([good, np.stack([bad[k] for k in names])])[order]
    start = estimate_initial(data, positions_xy=_argmax_xy(data))
    clean_start = estimate_initial(good, positions_xy=_argmax_xy(good))
    res = fit_batch(data, start, estimator=estimator, backend=backend)
    clean = fit_batch(good, clean_start, estimator=estimator, backend=backend)

    inv = np.argsort(order)
    p, s = res.parameters[inv], res.states[inv]
    # the good fits are exactly those of a batch without the bad windows
    assert np.array_equal(p[: len(good)], clean.parameters)
    assert np.array_equal(s[: len(good)], clean.states)
    assert np.array_equal(res.iterations[inv][: len(good)], clean.iterations)
    assert np.all(clean.states == FitState.CONVERGED)

    got = dict(zip(names, s[len(good):]))
    pb = p[len(good):]
    # every result is finite or NaN, never Inf
    assert not np.any(np.isinf(pb))
    assert all(v in set(FitState) for v in got.values())
    assert got["nan"] == FitState.INVALID_INPUT and got["inf"] == FitState.INVALID_INPUT
    assert np.all(np.isnan(pb[names.index("nan")]))
    assert got["zeros"] in (FitState.NO_PEAK, FitState.SINGULAR)
    assert got["constant"] in (FitState.NO_PEAK, FitState.SINGULAR)
    assert got["outside_peak"] == FitState.LEFT_WINDOW
    # a peak near (but inside) the edge is still found
    assert got["edge_peak"] == FitState.CONVERGED
    assert abs(pb[names.index("edge_peak"), 1] - 6.2) < 1e-3


def test_invalid_start_values_and_negative_counts():
    rng = np.random.default_rng(31)
    truth = random_truth(rng, 4, SHAPE)
    data = gaussian_windows(truth, SHAPE, "gauss2d_elliptic")
    start = truth.copy()
    start[0, 1] = np.nan                         # NaN start value
    data[1, 0, 0] = -5.0                          # negative count: invalid for the Poisson MLE only
    start[2, 5] = -1e4                            # start model negative: invalid for MLE
    mle = fit_batch(data, start, estimator="mle")
    assert list(mle.states[:3]) == [FitState.INVALID_INPUT] * 3
    assert mle.states[3] == FitState.CONVERGED
    lse = fit_batch(data, start, estimator="lse")
    assert lse.states[0] == FitState.INVALID_INPUT
    assert np.all(lse.states[1:] == FitState.CONVERGED)


def test_singular_when_centre_has_no_influence():
    data = np.zeros((2, 7, 7))
    start = np.array([[0.0, 3, 3, 1.2, 1.2, 0.0], [0.0, 3, 3, 1.2, 1.2, 1.0]])
    for backend in ("numba", "numpy"):
        res = fit_batch(data, start, backend=backend)
        assert np.all(res.states == FitState.SINGULAR)
        assert np.all(np.isfinite(res.parameters))


def test_max_iterations_state_keeps_best_parameters():
    rng = np.random.default_rng(32)
    truth = random_truth(rng, 50, SHAPE)
    data = rng.poisson(gaussian_windows(truth, SHAPE, "gauss2d_elliptic")).astype(np.float64)
    start = truth.copy()
    start[:, 1:3] += 0.8
    start[:, 3:5] *= 1.5
    one = fit_batch(data, start, max_iterations=1)
    assert np.all(one.states == FitState.MAX_ITERATIONS)
    assert np.all(one.iterations == 1)
    full = fit_batch(data, start)
    # the best point after one step is never worse than the start
    f0 = gaussian_windows(np.clip(start, -np.inf, np.inf), SHAPE, "gauss2d_elliptic")
    chi0 = ((data - f0) ** 2).sum(axis=(1, 2))
    assert np.all(one.chi_square <= chi0) and np.all(full.chi_square <= one.chi_square + 1e-9)
