"""The fitter against scipy.optimize.least_squares, fit by fit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import least_squares

from stemscale.fit import FitState, fit_batch

from .conftest import gaussian_windows, perturbed_start, random_truth

MODELS = ("gauss2d", "gauss2d_elliptic", "gauss2d_rotated")


def _scipy_fit(data, start, shape, model, *, mle=False, weights=None, bounds=None, free=None):
    out = np.empty_like(start)
    P = start.shape[1]
    free = np.ones(P, bool) if free is None else np.asarray(free)
    for i in range(len(data)):
        d = data[i].ravel()
        sw = None if weights is None else np.sqrt(weights[i].ravel())

        def resid(q, i=i, d=d, sw=sw):
            p = start[i].copy()
            p[free] = q
            f = gaussian_windows(p[None], shape, model).ravel()
            if mle:
                with np.errstate(all="ignore"):
                    dev = 2 * (f - d - np.where(d > 0, d * np.log(f / np.where(d > 0, d, 1)), 0))
                return np.sign(d - f) * np.sqrt(np.maximum(dev, 0))
            r = d - f
            return r if sw is None else r * sw

        kw = dict(xtol=1e-14, ftol=1e-14, gtol=1e-14, x_scale="jac")
        if bounds is not None:
            lo, hi = bounds
            r = least_squares(resid, np.clip(start[i][free], lo[free], hi[free]),
                              bounds=(lo[free], hi[free]), method="trf", **kw)
        else:
            r = least_squares(resid, start[i][free], method="trf", **kw)
        out[i] = start[i]
        out[i, free] = r.x
    return out


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("model", MODELS)
def test_noiseless_recovers_truth_and_matches_scipy(model, backend):
    rng = np.random.default_rng(10)
    shape = (7, 7) if model != "gauss2d_rotated" else (11, 11)
    truth = random_truth(rng, 60, shape, model)
    data = gaussian_windows(truth, shape, model)
    start = perturbed_start(rng, truth)
    res = fit_batch(data, start, model=model, backend=backend)
    assert np.all(res.states == FitState.CONVERGED)
    ref = _scipy_fit(data, start, shape, model)
    for k in (1, 2):                                  # x0, y0 in pixels
        assert np.abs(res.parameters[:, k] - truth[:, k]).max() < 1e-4
        assert np.abs(res.parameters[:, k] - ref[:, k]).max() < 1e-4
    np.testing.assert_allclose(res.parameters, truth, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("estimator", ["lse", "mle"])
@pytest.mark.parametrize("model", ["gauss2d", "gauss2d_elliptic"])
def test_noisy_matches_scipy_fit_by_fit_and_in_statistics(model, estimator):
    rng = np.random.default_rng(11)
    truth = random_truth(rng, 200, (7, 7), model)
    data = rng.poisson(gaussian_windows(truth, (7, 7), model)).astype(np.float64)
    start = perturbed_start(rng, truth)
    res = fit_batch(data, start, model=model, estimator=estimator)
    ok = res.states == FitState.CONVERGED
    assert ok.mean() > 0.98
    ref = _scipy_fit(data, start, (7, 7), model, mle=estimator == "mle")
    dx = res.parameters[ok, 1] - ref[ok, 1]
    dy = res.parameters[ok, 2] - ref[ok, 2]
    assert np.abs(dx).max() < 2e-3 and np.abs(dy).max() < 2e-3
    ex_ours = res.parameters[ok, 1] - truth[ok, 1]
    ex_ref = ref[ok, 1] - truth[ok, 1]
    assert abs(ex_ours.std() / ex_ref.std() - 1) < 0.01
    assert abs(ex_ours.mean() - ex_ref.mean()) < 0.01 * ex_ref.std()


def test_weighted_least_squares_matches_scipy():
    rng = np.random.default_rng(12)
    truth = random_truth(rng, 80, (7, 7), "gauss2d_elliptic")
    mean = gaussian_windows(truth, (7, 7), "gauss2d_elliptic")
    data = rng.poisson(mean).astype(np.float64)
    weights = 1.0 / np.maximum(data, 1.0)
    start = perturbed_start(rng, truth)
    res = fit_batch(data, start, weights=weights.reshape(80, -1))
    ref = _scipy_fit(data, start, (7, 7), "gauss2d_elliptic", weights=weights)
    ok = res.states == FitState.CONVERGED
    assert ok.all()
    assert np.abs(res.parameters[:, 1:3] - ref[:, 1:3]).max() < 2e-3


def test_fit_mask_holds_parameters_and_matches_scipy():
    rng = np.random.default_rng(13)
    truth = random_truth(rng, 60, (7, 7), "gauss2d_elliptic")
    data = rng.poisson(gaussian_windows(truth, (7, 7), "gauss2d_elliptic")).astype(np.float64)
    start = perturbed_start(rng, truth)
    start[:, 3:5] = truth[:, 3:5]
    free = [True, True, True, False, False, True]
    for backend in ("numba", "numpy"):
        res = fit_batch(data, start, fit_mask=free, backend=backend)
        assert np.array_equal(res.parameters[:, 3:5], start[:, 3:5])
        ref = _scipy_fit(data, start, (7, 7), "gauss2d_elliptic", free=free)
        assert np.abs(res.parameters[:, 1:3] - ref[:, 1:3]).max() < 2e-3


def test_box_constraints_are_respected_and_active_bound_matches_scipy():
    rng = np.random.default_rng(14)
    truth = random_truth(rng, 40, (7, 7), "gauss2d_elliptic")
    truth[:, 3] = 1.5
    data = gaussian_windows(truth, (7, 7), "gauss2d_elliptic")
    start = perturbed_start(rng, truth)
    start[:, 3] = 1.0
    lo = np.array([0, 0, 0, 0.5, 0.5, -np.inf])
    hi = np.array([np.inf, 6, 6, 1.2, 3.0, np.inf])
    for backend in ("numba", "numpy"):
        res = fit_batch(data, start, bounds=(lo, hi), backend=backend)
        p = res.parameters
        assert np.all(p >= lo) and np.all(p <= hi)
        assert np.allclose(p[:, 3], 1.2)             # the width is held at its upper bound
        ref = _scipy_fit(data, start, (7, 7), "gauss2d_elliptic", bounds=(lo, hi))
        assert np.abs(p[:, 1:3] - ref[:, 1:3]).max() < 1e-3
