"""Error bars: Monte-Carlo spreads, the Poisson CRLB, and scipy's covariance."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import curve_fit

from stemscale.fit import FitState, covariance, crlb, fisher_information, fit_batch, standard_errors

from .conftest import gaussian_windows

SHAPE = (7, 7)
# Asymptotic regime: ~25,000 counts in the peak over a background of 10 per pixel.
TRUE = np.array([[2000.0, 3.2, 2.9, 1.35, 1.25, 10.0]])
N_MC = 10_000


@pytest.fixture(scope="module")
def realisations():
    rng = np.random.default_rng(40)
    mean = gaussian_windows(TRUE, SHAPE, "gauss2d_elliptic")[0]
    data = rng.poisson(mean, size=(N_MC, *SHAPE)).astype(np.float64)
    start = np.repeat(TRUE, N_MC, axis=0) * np.array([0.9, 1, 1, 1.1, 0.9, 1.2])
    start[:, 1:3] += rng.uniform(-0.3, 0.3, (N_MC, 2))
    return data, start


def test_isotropic_crlb_matches_the_closed_form():
    # No background, window much larger than the peak: var(x) = (s^2 + 1/12) / N
    # (pixelation adds a uniform 1-px box), N the total counts.
    s, amp = 3.0, 500.0
    p = np.array([[amp, 15.3, 15.0, s, 1e-9]])
    bound = crlb(p, "gauss2d", (31, 31))[0]
    n_counts = 2 * np.pi * s**2 * amp
    expected = np.sqrt((s**2 + 1 / 12) / n_counts)
    assert bound[1] == pytest.approx(expected, rel=0.01)
    assert bound[2] == pytest.approx(expected, rel=0.01)


def test_lse_spread_matches_predicted_standard_error(realisations):
    data, start = realisations
    res = fit_batch(data, start, estimator="lse")
    ok = res.states == FitState.CONVERGED
    assert ok.mean() > 0.999
    x = res.parameters[ok, 1]
    mean = gaussian_windows(TRUE, SHAPE, "gauss2d_elliptic").reshape(1, -1)
    predicted = standard_errors(covariance(TRUE, mean, "gauss2d_elliptic", SHAPE, estimator="lse",
                                           noise="poisson"))[0]
    assert x.std() == pytest.approx(predicted[1], rel=0.10)
    assert res.parameters[ok, 2].std() == pytest.approx(predicted[2], rel=0.10)
    assert abs(x.mean() - TRUE[0, 1]) < 0.1 * predicted[1]


def test_mle_reaches_the_crlb(realisations):
    data, start = realisations
    res = fit_batch(data, start, estimator="mle")
    ok = res.states == FitState.CONVERGED
    assert ok.mean() > 0.999
    bound = crlb(TRUE, "gauss2d_elliptic", SHAPE)[0]
    for k in (1, 2):
        assert res.parameters[ok, k].std() == pytest.approx(bound[k], rel=0.10)
    assert abs(res.parameters[ok, 1].mean() - TRUE[0, 1]) < 0.1 * bound[1]
    # per-fit Poisson error bars at the fitted values agree with the bound on average
    cov = covariance(res.parameters[ok][:500], data[ok][:500].reshape(500, -1), "gauss2d_elliptic",
                     SHAPE, estimator="mle")
    assert np.median(standard_errors(cov)[:, 1]) == pytest.approx(bound[1], rel=0.05)


def test_gaussian_covariance_equals_curve_fit_pcov():
    rng = np.random.default_rng(41)
    mean = gaussian_windows(TRUE, SHAPE, "gauss2d_elliptic")[0]
    data = rng.poisson(mean, size=(20, *SHAPE)).astype(np.float64)
    start = np.repeat(TRUE, 20, axis=0)
    res = fit_batch(data, start, tolerance=1e-10, max_iterations=100)
    cov = covariance(res.parameters, data, "gauss2d_elliptic", SHAPE, estimator="lse")
    yy, xx = np.mgrid[0:7, 0:7].astype(float)

    def model(xy, a, x0, y0, sx, sy, b):
        x, y = xy
        return a * np.exp(-((x - x0) ** 2) / (2 * sx**2) - (y - y0) ** 2 / (2 * sy**2)) + b

    for i in range(20):
        popt, pcov = curve_fit(model, (xx.ravel(), yy.ravel()), data[i].ravel(), p0=TRUE[0],
                               xtol=1e-14, ftol=1e-14, gtol=1e-14)
        np.testing.assert_allclose(res.parameters[i], popt, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(cov[i], pcov, rtol=1e-3, atol=1e-9)


def test_fixed_parameters_and_singular_fits_in_covariance():
    p = np.vstack([TRUE, TRUE * np.array([0, 1, 1, 1, 1, 1])])      # second: zero amplitude
    info = fisher_information(p, "gauss2d_elliptic", SHAPE)
    assert info.shape == (2, 6, 6)
    std = crlb(p, "gauss2d_elliptic", SHAPE)
    assert np.all(np.isfinite(std[0])) and np.all(np.isnan(std[1]))
    held = crlb(TRUE, "gauss2d_elliptic", SHAPE, fit_mask=[1, 1, 1, 0, 0, 1])[0]
    assert held[3] == 0 and held[4] == 0
    # knowing the widths can only tighten the bound on the position
    assert held[1] <= crlb(TRUE, "gauss2d_elliptic", SHAPE)[0, 1]
