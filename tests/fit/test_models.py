"""Model values and analytic Jacobians against the formulas and finite differences."""

from __future__ import annotations

import array_api_compat.numpy as xp
import numpy as np
import pytest

from stemscale.errors import InputError
from stemscale.fit import MODELS, evaluate, get_model

from .conftest import gaussian_windows, random_truth

SHAPE = (7, 9)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_values_match_formula(name):
    rng = np.random.default_rng(1)
    p = random_truth(rng, 20, SHAPE, name)
    f, jac = evaluate(xp, name, p, SHAPE, jacobian=False)
    assert jac is None
    np.testing.assert_allclose(f.reshape(20, *SHAPE), gaussian_windows(p, SHAPE, name), rtol=1e-12)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_jacobian_matches_central_differences(name):
    rng = np.random.default_rng(2)
    p = random_truth(rng, 10, SHAPE, name)
    _, jac = evaluate(xp, name, p, SHAPE)
    P = p.shape[1]
    for k in range(P):
        step = 1e-6 * max(1.0, float(np.abs(p[:, k]).max()))
        hi, lo = p.copy(), p.copy()
        hi[:, k] += step
        lo[:, k] -= step
        num = (gaussian_windows(hi, SHAPE, name) - gaussian_windows(lo, SHAPE, name)) / (2 * step)
        scale = np.abs(num).max() + 1e-12
        np.testing.assert_allclose(jac[:, :, k].reshape(10, *SHAPE) / scale, num / scale, atol=1e-7,
                                   err_msg=f"{name} d/d{MODELS[name].parameter_names[k]}")


def test_rotated_with_zero_angle_is_elliptic():
    rng = np.random.default_rng(3)
    pe = random_truth(rng, 5, SHAPE, "gauss2d_elliptic")
    pr = np.column_stack([pe, np.zeros(5)])
    fe, je = evaluate(xp, "gauss2d_elliptic", pe, SHAPE)
    fr, jr = evaluate(xp, "gauss2d_rotated", pr, SHAPE)
    np.testing.assert_allclose(fr, fe, rtol=1e-12)
    np.testing.assert_allclose(jr[:, :, :6], je, rtol=1e-10, atol=1e-12)


def test_unknown_model_names_choices():
    with pytest.raises(InputError, match="gauss2d_elliptic"):
        get_model("lorentzian")
