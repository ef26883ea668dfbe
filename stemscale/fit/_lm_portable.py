"""Batched Levenberg-Marquardt written once against the array API.

Runs unchanged on NumPy, CuPy and torch (CPU or CUDA).  It is the reference
implementation: the compiled CPU kernel (:mod:`._lm_numba`) and the fused GPU
kernel (:mod:`._lm_cuda`) follow exactly the same steps, listed here.

Algorithm, per fit
------------------
1. Project the start values onto the box ``[lower, upper]``.  Windows or start
   values with NaN/Inf, negative weights, or (Poisson estimator) negative counts
   or a non-positive start model are marked ``INVALID_INPUT``.
2. Evaluate the model ``f`` (plus the fixed per-pixel ``offset``, e.g. fitted
   neighbours, when given), Jacobian ``J`` and objective ``chi2``:

   * least squares: ``chi2 = sum w (d - f)^2``, gradient ``g = J^T w (d - f)``,
     curvature ``H = J^T w J``;
   * Poisson maximum likelihood: ``chi2 = 2 sum (f - d - d ln(f / d))`` (the
     deviance), ``g = J^T (d / f - 1)``, ``H = J^T diag(1 / f) J`` (the Fisher
     information, always positive definite where ``f > 0``).

3. Iterate, ``lambda`` starting at ``1e-3``: solve the Jacobi-scaled damped
   system ``(S H S + lambda I) z = S g`` with ``S = diag(H)^-1/2`` by Cholesky
   (a pivot below ``eps * (1 + lambda)``, or a zero curvature, is ``SINGULAR``),
   step ``delta = S z``, project ``p + delta`` onto the box and evaluate it.
   Parameters sitting on a bound with the gradient pointing out of the box
   are held for that step (left out of the system), so that the fit stops at
   the constrained optimum rather than where the projected step vanishes.
   A trial with a finite ``chi2`` not above the current one is accepted and
   ``lambda /= 10``; otherwise ``lambda *= 10``.  The fit has ``CONVERGED`` when
   an accepted step lowered ``chi2`` by at most ``tolerance * chi2``, or when
   every free parameter's trial step is at most ``tolerance * (|p| + tolerance)``.
4. After ``max_iterations`` trial steps a running fit is ``MAX_ITERATIONS``.
   Non-finite parameters become NaN with ``DIVERGED``; an amplitude not above
   ``1e-6`` of the window's largest absolute value (or any amplitude in an
   all-zero window) is ``NO_PEAK``; a centre outside the window (by more than
   half a pixel) is ``LEFT_WINDOW``.  Widths are returned
   as absolute values.

Fits that have converged are removed from the working set, so a batch costs
what its slowest fits cost only for those fits.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .models import GaussianModel, evaluate
from .states import RUNNING, FitState, is_usable

__all__ = ["lm_portable", "LAMBDA_START", "LAMBDA_FACTOR", "pivot_epsilon"]

LAMBDA_START = 1e-3
LAMBDA_FACTOR = 10.0


def pivot_epsilon(dtype_is_double: bool) -> float:
    """Smallest acceptable Cholesky pivot of the scaled damped matrix, over ``1 + lambda``."""
    return 1e-12 if dtype_is_double else 1e-5


def _kw(xp: Any, like: Any, dtype: Any = None) -> dict:
    dev = getattr(like, "device", None)
    out = {"dtype": like.dtype if dtype is None else dtype}
    if dev is not None:
        out["device"] = dev
    return out


def accumulate(xp: Any, d: Any, w: Any | None, f: Any, jac: Any, mle: bool):
    """Objective, gradient ``g`` and curvature ``H`` for a batch (see module docstring)."""
    if mle:
        pos = xp.all(f > 0, axis=1)
        one = xp.ones_like(f)
        fs = xp.where(f > 0, f, one)
        dpos = d > 0
        ds = xp.where(dpos, d, one)
        term = xp.where(dpos, d * xp.log(fs / ds), xp.zeros_like(f))
        chi2 = 2.0 * (xp.sum(f - d, axis=1) - xp.sum(term, axis=1))
        chi2 = xp.where(pos, chi2, xp.full_like(chi2, float("inf")))
        if jac is None:
            return chi2, None, None
        resid = d / fs - 1.0
        g = xp.sum(jac * resid[:, :, None], axis=1)
        hw = jac / fs[:, :, None]
    else:
        r = d - f
        wr = r if w is None else w * r
        chi2 = xp.sum(wr * r, axis=1)
        if jac is None:
            return chi2, None, None
        g = xp.sum(jac * wr[:, :, None], axis=1)
        hw = jac if w is None else jac * w[:, :, None]
    H = xp.matmul(xp.permute_dims(jac, (0, 2, 1)), hw)
    return chi2, g, H


def solve_scaled(xp: Any, H: Any, g: Any, lam: Any, free: Any, eps: float):
    """Solve ``(S H S + lam I) z = S g``, ``delta = S z`` for every fit by a scaled Cholesky.

    ``free`` is a list of ``P`` booleans or an ``(n, P)`` boolean array;
    parameters not free get a zero step.  Returns ``delta (n, P)`` and
    ``ok (n,)``; ``ok`` is False where the matrix is singular (``delta`` is
    then zero).
    """
    n, P = g.shape
    zeros = xp.zeros((n,), **_kw(xp, g))
    ones = xp.ones((n,), **_kw(xp, g))
    ok = xp.ones((n,), **_kw(xp, g, xp.bool))
    if isinstance(free, (list, tuple)):
        fcol = [xp.full((n,), bool(f), **_kw(xp, g, xp.bool)) for f in free]
    else:
        fcol = [free[:, k] for k in range(P)]
    s = []
    for k in range(P):
        hkk = H[:, k, k]
        good = xp.isfinite(hkk) & (hkk > 0)
        ok = ok & (good | ~fcol[k])
        s.append(xp.where(good & fcol[k], 1.0 / xp.sqrt(xp.where(good, hkk, ones)), zeros))
    ok = ok & xp.isfinite(lam)
    L: list[list[Any]] = [[None] * P for _ in range(P)]
    thresh = eps * (1.0 + lam)
    for j in range(P):
        sjj = xp.where(fcol[j], 1.0 + lam, ones)
        for k in range(j):
            sjj = sjj - L[j][k] * L[j][k]
        good = sjj > thresh
        ok = ok & good
        ljj = xp.sqrt(xp.where(good, sjj, ones))
        L[j][j] = ljj
        for i in range(j + 1, P):
            aij = H[:, i, j] * s[i] * s[j]          # zero unless both are free
            for k in range(j):
                aij = aij - L[i][k] * L[j][k]
            L[i][j] = aij / ljj
    rhs = [g[:, k] * s[k] for k in range(P)]
    y: list[Any] = [None] * P
    for i in range(P):
        acc = rhs[i]
        for k in range(i):
            acc = acc - L[i][k] * y[k]
        y[i] = acc / L[i][i]
    z: list[Any] = [None] * P
    for i in reversed(range(P)):
        acc = y[i]
        for k in range(i + 1, P):
            acc = acc - L[k][i] * z[k]
        z[i] = acc / L[i][i]
    delta = xp.stack([z[k] * s[k] for k in range(P)], axis=1)
    okf = xp.astype(ok, delta.dtype)[:, None]
    delta = xp.where(xp.isfinite(delta), delta, xp.zeros_like(delta)) * okf
    return delta, ok


def lm_portable(xp: Any, data: Any, initial: Any, *, model: GaussianModel,
                window_shape: tuple[int, int], mle: bool, weights: Any | None,
                offsets: Any | None, lower: Any, upper: Any, free: list[bool], max_iterations: int,
                tolerance: float, chunk_size: int = 32768):
    """Fit every row of ``data``; returns ``(parameters, states, chi_square, iterations)``.

    ``lower`` / ``upper`` are ``(1, P)`` or ``(n, P)`` arrays (``-inf`` / ``inf``
    for free), ``weights`` and ``offsets`` ``(n, M)`` or ``None``.
    """
    n = data.shape[0]
    outs = []
    with np.errstate(all="ignore"):
        for start in range(0, max(n, 1), chunk_size):
            stop = min(start + chunk_size, n)

            def rows(a):
                if a is None or a.shape[0] == 1:
                    return a
                return a[start:stop, ...]

            outs.append(_lm_chunk(
                xp, data[start:stop, ...], initial[start:stop, ...], model, window_shape, mle,
                rows(weights), rows(offsets), rows(lower), rows(upper), free, max_iterations,
                tolerance,
            ))
    if len(outs) == 1:
        return outs[0]
    return tuple(xp.concat([o[i] for o in outs], axis=0) for i in range(4))


def _take(xp: Any, a: Any | None, idx: Any):
    if a is None or a.shape[0] == 1:
        return a
    return xp.take(a, idx, axis=0)


def _model(xp, model, p, window_shape, off):
    f, jac = evaluate(xp, model, p, window_shape)
    return (f, jac) if off is None else (f + off, jac)


def _lm_chunk(xp, d, p0, model, window_shape, mle, w, off, lo, hi, free, max_it, tol):
    n, P = p0.shape
    dtype = d.dtype
    double = dtype == xp.float64
    eps = pivot_epsilon(bool(double))
    freevec = xp.asarray(free, **_kw(xp, d, xp.bool))[None, :]
    p = xp.minimum(xp.maximum(p0, lo), hi)
    invalid = ~xp.all(xp.isfinite(d), axis=1) | ~xp.all(xp.isfinite(p), axis=1)
    if w is not None:
        invalid = invalid | ~xp.all(xp.isfinite(w) & (w >= 0), axis=1)
    if off is not None:
        invalid = invalid | ~xp.all(xp.isfinite(off), axis=1)
        off = xp.where(invalid[:, None], xp.zeros_like(off), off)
    if mle:
        invalid = invalid | xp.any(d < 0, axis=1)
    zd = xp.zeros_like(d)
    d = xp.where(invalid[:, None], zd, d)
    p = xp.where(invalid[:, None], xp.zeros_like(p) + 1.0, p)
    f, jac = _model(xp, model, p, window_shape, off)
    chi2, g, H = accumulate(xp, d, w, f, jac, mle)
    invalid = invalid | ~xp.isfinite(chi2)

    state = xp.full((n,), RUNNING, **_kw(xp, d, xp.int32))
    state = xp.where(invalid, xp.full_like(state, int(FitState.INVALID_INPUT)), state)
    params = xp.where(invalid[:, None], xp.full_like(p, float("nan")), p)
    chi_out = xp.where(invalid, xp.full_like(chi2, float("nan")), chi2)
    iters = xp.zeros((n,), **_kw(xp, d, xp.int32))

    idx = xp.nonzero(~invalid)[0]
    ap, aH, ag, achi = (xp.take(a, idx, axis=0) for a in (p, H, g, chi2))
    ad = xp.take(d, idx, axis=0)
    aw, alo, ahi = _take(xp, w, idx), _take(xp, lo, idx), _take(xp, hi, idx)
    aoff = None if off is None else xp.take(off, idx, axis=0)
    alam = xp.full((idx.shape[0],), LAMBDA_START, **_kw(xp, d))

    for _ in range(max_it):
        if idx.shape[0] == 0:
            break
        iters[idx] = iters[idx] + 1
        # parameters on a bound whose gradient pushes outwards sit this step out
        held = ((ap <= alo) & (ag < 0)) | ((ap >= ahi) & (ag > 0))
        delta, ok = solve_scaled(xp, aH, ag, alam, freevec & ~held, eps)
        pt = xp.minimum(xp.maximum(ap + delta, alo), ahi)
        step_small = (xp.abs(pt - ap) <= tol * (xp.abs(ap) + tol)) | ~freevec
        small = xp.all(step_small, axis=1)
        ft, jt = _model(xp, model, pt, window_shape, aoff)
        chit, gt, Ht = accumulate(xp, ad, aw, ft, jt, mle)
        accept = ok & xp.isfinite(chit) & (chit <= achi)
        ftol = accept & ((achi - chit) <= tol * chit)
        ap = xp.where(accept[:, None], pt, ap)
        ag = xp.where(accept[:, None], gt, ag)
        aH = xp.where(accept[:, None, None], Ht, aH)
        achi = xp.where(accept, chit, achi)
        alam = xp.where(accept, alam / LAMBDA_FACTOR, alam * LAMBDA_FACTOR)
        conv = ok & (ftol | small)
        new_state = xp.where(
            ~ok, xp.full_like(iters[idx], int(FitState.SINGULAR)),
            xp.where(conv, xp.full_like(iters[idx], int(FitState.CONVERGED)),
                     xp.full_like(iters[idx], RUNNING)),
        )
        params[idx] = ap
        chi_out[idx] = achi
        state[idx] = new_state
        keep = xp.nonzero(new_state == RUNNING)[0]
        if keep.shape[0] == idx.shape[0]:
            continue
        idx = xp.take(idx, keep, axis=0)
        ap, aH, ag, achi, alam, ad = (
            xp.take(a, keep, axis=0) for a in (ap, aH, ag, achi, alam, ad)
        )
        aw, alo, ahi = _take(xp, aw, keep), _take(xp, alo, keep), _take(xp, ahi, keep)
        aoff = None if aoff is None else xp.take(aoff, keep, axis=0)

    state = xp.where(state == RUNNING, xp.full_like(state, int(FitState.MAX_ITERATIONS)), state)
    params, state = finalize(xp, params, state, model, window_shape, xp.max(xp.abs(d), axis=1))
    return params, state, chi_out, iters


def finalize(xp: Any, params: Any, state: Any, model: GaussianModel,
             window_shape: tuple[int, int], data_max: Any):
    """After-fit rules: NaN and ``DIVERGED``, ``NO_PEAK``, ``LEFT_WINDOW``, ``|sigma|``."""
    h, w = window_shape
    valid = state != int(FitState.INVALID_INPUT)
    finite = xp.all(xp.isfinite(params), axis=1)
    diverged = valid & ~finite
    params = xp.where(diverged[:, None], xp.full_like(params, float("nan")), params)
    state = xp.where(diverged, xp.full_like(state, int(FitState.DIVERGED)), state)
    x, y = params[:, model.x_index], params[:, model.y_index]
    outside = (x < -0.5) | (x > w - 0.5) | (y < -0.5) | (y > h - 0.5)
    movable = is_usable(state)
    amp = params[:, model.amplitude_index]
    no_peak = ~(amp > 1e-6 * data_max) | (data_max == 0)
    left = xp.where(movable & outside, xp.full_like(state, int(FitState.LEFT_WINDOW)), state)
    state = xp.where(movable & no_peak, xp.full_like(state, int(FitState.NO_PEAK)), left)
    cols = [params[:, k] for k in range(params.shape[1])]
    for k in model.sigma_indices:
        cols[k] = xp.abs(cols[k])
    return xp.stack(cols, axis=1), state
