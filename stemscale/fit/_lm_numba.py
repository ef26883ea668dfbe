"""Compiled CPU kernel: one small Levenberg-Marquardt per fit, fits spread over threads.

Follows step for step the algorithm of :mod:`._lm_portable` (its docstring is
the specification); the tests check that both give the same answers.  Each fit
works in float64 on a few dozen scalars, with the analytic Jacobian built one
pixel at a time and the curvature accumulated in place, so nothing of size
``n_pixels x n_parameters`` is ever stored.  Separable models use ``h + w``
exponentials per evaluation instead of ``h * w``.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
from numba import njit, prange

from ._lm_portable import LAMBDA_FACTOR, LAMBDA_START, pivot_epsilon
from .models import GaussianModel
from .states import RUNNING, FitState

__all__ = ["lm_numba"]

_CONVERGED = int(FitState.CONVERGED)
_MAX_ITERATIONS = int(FitState.MAX_ITERATIONS)
_SINGULAR = int(FitState.SINGULAR)
_DIVERGED = int(FitState.DIVERGED)
_LEFT_WINDOW = int(FitState.LEFT_WINDOW)
_INVALID = int(FitState.INVALID_INPUT)
_NO_PEAK = int(FitState.NO_PEAK)
_INF = np.inf

_jit: dict[str, Any] = dict(cache=True, fastmath=False, nogil=True, error_model="numpy")


# The three accumulators below are unrolled by hand into scalar accumulators
# (g0.., hAC..) so that the compiler keeps the gradient and curvature in
# registers for the whole pixel loop; a generic loop over arrays is ~3x slower.


@njit(**_jit)
def _acc_iso(mle, p, d, wt, has_w, off, has_off, h, w, ex, ey, g, H):
    """Objective at ``p`` of the iso model; fills ``g`` and the lower triangle of ``H``."""
    amp, x0, y0, sx, bg = p[0], p[1], p[2], p[3], p[4]
    sy = sx
    isx = 1.0 / sx
    isy = 1.0 / sy
    isx2 = isx * isx
    isy2 = isy * isy
    for j in range(w):
        dx = j - x0
        ex[j] = math.exp(-0.5 * dx * dx * isx2)
    for i in range(h):
        dy = i - y0
        ey[i] = math.exp(-0.5 * dy * dy * isy2)
    chi2 = 0.0
    wk = 1.0
    g0 = h00 = 0.0
    g1 = h10 = h11 = 0.0
    g2 = h20 = h21 = h22 = 0.0
    g3 = h30 = h31 = h32 = h33 = 0.0
    g4 = h40 = h41 = h42 = h43 = h44 = 0.0
    for i in range(h):
        dy = i - y0
        eyi = ey[i]
        for j in range(w):
            k = i * w + j
            dx = j - x0
            gk = eyi * ex[j]
            ag = amp * gk
            f = ag + bg
            if has_off:
                f += off[k]
            if has_w:
                wk = wt[k]
            if mle:
                if not (f > 0.0):
                    return _INF
                dk = d[k]
                if dk > 0.0:
                    chi2 += 2.0 * ((f - dk) - dk * math.log(f / dk))
                else:
                    chi2 += 2.0 * (f - dk)
                hw = 1.0 / f
                rw = dk * hw - 1.0
            else:
                r = d[k] - f
                rw = wk * r
                chi2 += rw * r
                hw = wk
            jx = ag * dx * isx2
            jy = ag * dy * isy2
            j0 = gk
            j1 = jx
            j2 = jy
            j3 = (jx * dx + jy * dy) * isx
            j4 = 1.0
            g0 += rw * j0
            t0 = hw * j0
            h00 += t0 * j0
            g1 += rw * j1
            t1 = hw * j1
            h10 += t1 * j0
            h11 += t1 * j1
            g2 += rw * j2
            t2 = hw * j2
            h20 += t2 * j0
            h21 += t2 * j1
            h22 += t2 * j2
            g3 += rw * j3
            t3 = hw * j3
            h30 += t3 * j0
            h31 += t3 * j1
            h32 += t3 * j2
            h33 += t3 * j3
            g4 += rw * j4
            t4 = hw * j4
            h40 += t4 * j0
            h41 += t4 * j1
            h42 += t4 * j2
            h43 += t4 * j3
            h44 += t4 * j4
    g[0] = g0
    H[0, 0] = h00
    g[1] = g1
    H[1, 0] = h10
    H[1, 1] = h11
    g[2] = g2
    H[2, 0] = h20
    H[2, 1] = h21
    H[2, 2] = h22
    g[3] = g3
    H[3, 0] = h30
    H[3, 1] = h31
    H[3, 2] = h32
    H[3, 3] = h33
    g[4] = g4
    H[4, 0] = h40
    H[4, 1] = h41
    H[4, 2] = h42
    H[4, 3] = h43
    H[4, 4] = h44
    return chi2


@njit(**_jit)
def _acc_ell(mle, p, d, wt, has_w, off, has_off, h, w, ex, ey, g, H):
    """Objective at ``p`` of the ell model; fills ``g`` and the lower triangle of ``H``."""
    amp, x0, y0, sx, sy, bg = p[0], p[1], p[2], p[3], p[4], p[5]
    isx = 1.0 / sx
    isy = 1.0 / sy
    isx2 = isx * isx
    isy2 = isy * isy
    for j in range(w):
        dx = j - x0
        ex[j] = math.exp(-0.5 * dx * dx * isx2)
    for i in range(h):
        dy = i - y0
        ey[i] = math.exp(-0.5 * dy * dy * isy2)
    chi2 = 0.0
    wk = 1.0
    g0 = h00 = 0.0
    g1 = h10 = h11 = 0.0
    g2 = h20 = h21 = h22 = 0.0
    g3 = h30 = h31 = h32 = h33 = 0.0
    g4 = h40 = h41 = h42 = h43 = h44 = 0.0
    g5 = h50 = h51 = h52 = h53 = h54 = h55 = 0.0
    for i in range(h):
        dy = i - y0
        eyi = ey[i]
        for j in range(w):
            k = i * w + j
            dx = j - x0
            gk = eyi * ex[j]
            ag = amp * gk
            f = ag + bg
            if has_off:
                f += off[k]
            if has_w:
                wk = wt[k]
            if mle:
                if not (f > 0.0):
                    return _INF
                dk = d[k]
                if dk > 0.0:
                    chi2 += 2.0 * ((f - dk) - dk * math.log(f / dk))
                else:
                    chi2 += 2.0 * (f - dk)
                hw = 1.0 / f
                rw = dk * hw - 1.0
            else:
                r = d[k] - f
                rw = wk * r
                chi2 += rw * r
                hw = wk
            jx = ag * dx * isx2
            jy = ag * dy * isy2
            j0 = gk
            j1 = jx
            j2 = jy
            j3 = jx * dx * isx
            j4 = jy * dy * isy
            j5 = 1.0
            g0 += rw * j0
            t0 = hw * j0
            h00 += t0 * j0
            g1 += rw * j1
            t1 = hw * j1
            h10 += t1 * j0
            h11 += t1 * j1
            g2 += rw * j2
            t2 = hw * j2
            h20 += t2 * j0
            h21 += t2 * j1
            h22 += t2 * j2
            g3 += rw * j3
            t3 = hw * j3
            h30 += t3 * j0
            h31 += t3 * j1
            h32 += t3 * j2
            h33 += t3 * j3
            g4 += rw * j4
            t4 = hw * j4
            h40 += t4 * j0
            h41 += t4 * j1
            h42 += t4 * j2
            h43 += t4 * j3
            h44 += t4 * j4
            g5 += rw * j5
            t5 = hw * j5
            h50 += t5 * j0
            h51 += t5 * j1
            h52 += t5 * j2
            h53 += t5 * j3
            h54 += t5 * j4
            h55 += t5 * j5
    g[0] = g0
    H[0, 0] = h00
    g[1] = g1
    H[1, 0] = h10
    H[1, 1] = h11
    g[2] = g2
    H[2, 0] = h20
    H[2, 1] = h21
    H[2, 2] = h22
    g[3] = g3
    H[3, 0] = h30
    H[3, 1] = h31
    H[3, 2] = h32
    H[3, 3] = h33
    g[4] = g4
    H[4, 0] = h40
    H[4, 1] = h41
    H[4, 2] = h42
    H[4, 3] = h43
    H[4, 4] = h44
    g[5] = g5
    H[5, 0] = h50
    H[5, 1] = h51
    H[5, 2] = h52
    H[5, 3] = h53
    H[5, 4] = h54
    H[5, 5] = h55
    return chi2


@njit(**_jit)
def _acc_rot(mle, p, d, wt, has_w, off, has_off, h, w, ex, ey, g, H):
    """Objective at ``p`` of the rot model; fills ``g`` and the lower triangle of ``H``."""
    amp, x0, y0, sx, sy, bg = p[0], p[1], p[2], p[3], p[4], p[5]
    cth = math.cos(p[6])
    sth = math.sin(p[6])
    isx = 1.0 / sx
    isy = 1.0 / sy
    isx2 = isx * isx
    isy2 = isy * isy
    chi2 = 0.0
    wk = 1.0
    g0 = h00 = 0.0
    g1 = h10 = h11 = 0.0
    g2 = h20 = h21 = h22 = 0.0
    g3 = h30 = h31 = h32 = h33 = 0.0
    g4 = h40 = h41 = h42 = h43 = h44 = 0.0
    g5 = h50 = h51 = h52 = h53 = h54 = h55 = 0.0
    g6 = h60 = h61 = h62 = h63 = h64 = h65 = h66 = 0.0
    for i in range(h):
        dy = i - y0
        for j in range(w):
            k = i * w + j
            dx = j - x0
            u = dx * cth + dy * sth
            v = -dx * sth + dy * cth
            gk = math.exp(-0.5 * (u * u * isx2 + v * v * isy2))
            ag = amp * gk
            f = ag + bg
            if has_off:
                f += off[k]
            if has_w:
                wk = wt[k]
            if mle:
                if not (f > 0.0):
                    return _INF
                dk = d[k]
                if dk > 0.0:
                    chi2 += 2.0 * ((f - dk) - dk * math.log(f / dk))
                else:
                    chi2 += 2.0 * (f - dk)
                hw = 1.0 / f
                rw = dk * hw - 1.0
            else:
                r = d[k] - f
                rw = wk * r
                chi2 += rw * r
                hw = wk
            j0 = gk
            j1 = ag * (u * cth * isx2 - v * sth * isy2)
            j2 = ag * (u * sth * isx2 + v * cth * isy2)
            j3 = ag * u * u * isx2 * isx
            j4 = ag * v * v * isy2 * isy
            j5 = 1.0
            j6 = ag * u * v * (isy2 - isx2)
            g0 += rw * j0
            t0 = hw * j0
            h00 += t0 * j0
            g1 += rw * j1
            t1 = hw * j1
            h10 += t1 * j0
            h11 += t1 * j1
            g2 += rw * j2
            t2 = hw * j2
            h20 += t2 * j0
            h21 += t2 * j1
            h22 += t2 * j2
            g3 += rw * j3
            t3 = hw * j3
            h30 += t3 * j0
            h31 += t3 * j1
            h32 += t3 * j2
            h33 += t3 * j3
            g4 += rw * j4
            t4 = hw * j4
            h40 += t4 * j0
            h41 += t4 * j1
            h42 += t4 * j2
            h43 += t4 * j3
            h44 += t4 * j4
            g5 += rw * j5
            t5 = hw * j5
            h50 += t5 * j0
            h51 += t5 * j1
            h52 += t5 * j2
            h53 += t5 * j3
            h54 += t5 * j4
            h55 += t5 * j5
            g6 += rw * j6
            t6 = hw * j6
            h60 += t6 * j0
            h61 += t6 * j1
            h62 += t6 * j2
            h63 += t6 * j3
            h64 += t6 * j4
            h65 += t6 * j5
            h66 += t6 * j6
    g[0] = g0
    H[0, 0] = h00
    g[1] = g1
    H[1, 0] = h10
    H[1, 1] = h11
    g[2] = g2
    H[2, 0] = h20
    H[2, 1] = h21
    H[2, 2] = h22
    g[3] = g3
    H[3, 0] = h30
    H[3, 1] = h31
    H[3, 2] = h32
    H[3, 3] = h33
    g[4] = g4
    H[4, 0] = h40
    H[4, 1] = h41
    H[4, 2] = h42
    H[4, 3] = h43
    H[4, 4] = h44
    g[5] = g5
    H[5, 0] = h50
    H[5, 1] = h51
    H[5, 2] = h52
    H[5, 3] = h53
    H[5, 4] = h54
    H[5, 5] = h55
    g[6] = g6
    H[6, 0] = h60
    H[6, 1] = h61
    H[6, 2] = h62
    H[6, 3] = h63
    H[6, 4] = h64
    H[6, 5] = h65
    H[6, 6] = h66
    return chi2



@njit(**_jit)
def _accumulate(code, mle, p, d, wt, has_w, off, has_off, h, w, ex, ey, g, H):
    """Objective at ``p``; fills gradient ``g`` and the lower triangle of ``H``."""
    if code == 1:
        return _acc_ell(mle, p, d, wt, has_w, off, has_off, h, w, ex, ey, g, H)
    if code == 0:
        return _acc_iso(mle, p, d, wt, has_w, off, has_off, h, w, ex, ey, g, H)
    return _acc_rot(mle, p, d, wt, has_w, off, has_off, h, w, ex, ey, g, H)


@njit(**_jit)
def _solve(H, g, lam, free, eps, s, L, delta):
    """Scaled damped Cholesky solve; returns False when singular (``delta`` = 0)."""
    P = g.shape[0]
    ok = True
    for k in range(P):
        s[k] = 0.0
        if free[k]:
            hkk = H[k, k]
            if math.isfinite(hkk) and hkk > 0.0:
                s[k] = 1.0 / math.sqrt(hkk)
            else:
                ok = False
    if not math.isfinite(lam):
        ok = False
    thresh = eps * (1.0 + lam)
    for j in range(P):
        sjj = (1.0 + lam) if free[j] else 1.0
        for k in range(j):
            sjj -= L[j, k] * L[j, k]
        if not (sjj > thresh):
            ok = False
            sjj = 1.0
        ljj = math.sqrt(sjj)
        L[j, j] = ljj
        for i in range(j + 1, P):
            aij = H[i, j] * s[i] * s[j] if (free[i] and free[j]) else 0.0
            for k in range(j):
                aij -= L[i, k] * L[j, k]
            L[i, j] = aij / ljj
    # forward then backward substitution (delta holds y, then z)
    for i in range(P):
        acc = g[i] * s[i]
        for k in range(i):
            acc -= L[i, k] * delta[k]
        delta[i] = acc / L[i, i]
    for i in range(P - 1, -1, -1):
        acc = delta[i]
        for k in range(i + 1, P):
            acc -= L[k, i] * delta[k]
        delta[i] = acc / L[i, i]
    for k in range(P):
        v = delta[k] * s[k]
        delta[k] = v if (ok and math.isfinite(v)) else 0.0
    return ok


@njit(**_jit)
def _fit_one(code, mle, d, wt, has_w, off, has_off, h, w, p, lo, hi, free, max_it, tol, eps,
             pt, g, H, gt, Ht, L, s, delta, ex, ey, fit_k):
    """Fit one window in place (``p`` holds the start, then the result)."""
    P = p.shape[0]
    M = d.shape[0]
    valid = True
    dmax = 0.0
    for k in range(P):
        v = min(max(p[k], lo[k]), hi[k])
        p[k] = v
        if not math.isfinite(v):
            valid = False
    for k in range(M):
        dk = d[k]
        if not math.isfinite(dk) or (mle and dk < 0.0):
            valid = False
        else:
            dmax = max(dmax, abs(dk))
        if has_w:
            wk = wt[k]
            if not (math.isfinite(wk) and wk >= 0.0):
                valid = False
        if has_off and not math.isfinite(off[k]):
            valid = False
    chi2 = np.nan
    if valid:
        chi2 = _accumulate(code, mle, p, d, wt, has_w, off, has_off, h, w, ex, ey, g, H)
        valid = math.isfinite(chi2)
    if not valid:
        for k in range(P):
            p[k] = np.nan
        return _INVALID, np.nan, 0
    lam = LAMBDA_START
    state = RUNNING
    it = 0
    while it < max_it:
        it += 1
        # parameters on a bound whose gradient pushes outwards sit this step out
        for k in range(P):
            held = (p[k] <= lo[k] and g[k] < 0.0) or (p[k] >= hi[k] and g[k] > 0.0)
            fit_k[k] = free[k] and not held
        ok = _solve(H, g, lam, fit_k, eps, s, L, delta)
        small = True
        for k in range(P):
            v = min(max(p[k] + delta[k], lo[k]), hi[k])
            pt[k] = v
            if free[k] and not (abs(v - p[k]) <= tol * (abs(p[k]) + tol)):
                small = False
        chit = _accumulate(code, mle, pt, d, wt, has_w, off, has_off, h, w, ex, ey, gt, Ht)
        accept = ok and math.isfinite(chit) and chit <= chi2
        ftol = False
        if accept:
            ftol = (chi2 - chit) <= tol * chit
            for a in range(P):
                p[a] = pt[a]
                g[a] = gt[a]
                for c in range(a + 1):
                    H[a, c] = Ht[a, c]
            chi2 = chit
            lam = lam / LAMBDA_FACTOR
        else:
            lam = lam * LAMBDA_FACTOR
        if not ok:
            state = _SINGULAR
            break
        if ftol or small:
            state = _CONVERGED
            break
    if state == RUNNING:
        state = _MAX_ITERATIONS
    finite = True
    for k in range(P):
        if not math.isfinite(p[k]):
            finite = False
    if not finite:
        for k in range(P):
            p[k] = np.nan
        return _DIVERGED, chi2, it
    if state == _CONVERGED or state == _MAX_ITERATIONS:
        x = p[1]
        y = p[2]
        if not (p[0] > 1e-6 * dmax) or dmax == 0.0:
            state = _NO_PEAK
        elif x < -0.5 or x > w - 0.5 or y < -0.5 or y > h - 0.5:
            state = _LEFT_WINDOW
    p[3] = abs(p[3])
    if code != 0:
        p[4] = abs(p[4])
    return state, chi2, it


@njit(parallel=True, **_jit)
def _kernel(code, mle, data, weights, has_w, offsets, has_off, h, w, init, lo, hi, free, max_it,
            tol, eps,
            nchunk, out_p, out_state, out_chi2, out_it):
    n = data.shape[0]
    P = init.shape[1]
    for c in prange(nchunk):
        start = (c * n) // nchunk
        stop = ((c + 1) * n) // nchunk
        pt = np.empty(P)
        g = np.empty(P)
        gt = np.empty(P)
        s = np.empty(P)
        delta = np.empty(P)
        H = np.zeros((P, P))
        Ht = np.zeros((P, P))
        L = np.zeros((P, P))
        ex = np.empty(w)
        ey = np.empty(h)
        fit_k = np.empty(P, dtype=np.bool_)
        for i in range(start, stop):
            p = out_p[i]
            for k in range(P):
                p[k] = init[i, k]
            r = i if lo.shape[0] > 1 else 0
            q = i if hi.shape[0] > 1 else 0
            wrow = weights[i] if has_w else weights[0]
            orow = offsets[i] if has_off else offsets[0]
            st, chi, it = _fit_one(code, mle, data[i], wrow, has_w, orow, has_off, h, w, p, lo[r],
                                   hi[q], free,
                                   max_it, tol, eps, pt, g, H, gt, Ht, L, s, delta, ex, ey, fit_k)
            out_state[i] = st
            out_chi2[i] = chi
            out_it[i] = it


def _n_chunks(n: int) -> int:
    # Enough chunks for load balance across threads; scratch is allocated once per chunk.
    return max(1, min(n, 64 * numba.get_num_threads()))


def lm_numba(data: np.ndarray, initial: np.ndarray, *, model: GaussianModel,
             window_shape: tuple[int, int], mle: bool, weights: np.ndarray | None,
             offsets: np.ndarray | None, lower: np.ndarray, upper: np.ndarray, free: list[bool],
             max_iterations: int,
             tolerance: float):
    """Fit every row of ``data`` with the compiled kernel (NumPy in, NumPy out)."""
    n, P = initial.shape
    h, w = window_shape
    out_p = np.empty((n, P), dtype=np.float64)
    out_state = np.empty(n, dtype=np.int32)
    out_chi2 = np.empty(n, dtype=np.float64)
    out_it = np.empty(n, dtype=np.int32)
    if n == 0:
        return out_p, out_state, out_chi2, out_it
    has_w = weights is not None
    wts = weights if has_w else np.ones((1, 1), dtype=np.float64)
    has_off = offsets is not None
    offs = offsets if has_off else np.zeros((1, 1), dtype=np.float64)
    _kernel(model.code, bool(mle), data, wts, has_w, offs, has_off, h, w, initial,
            np.ascontiguousarray(lower, dtype=np.float64),
            np.ascontiguousarray(upper, dtype=np.float64),
            np.asarray(free, dtype=np.bool_), int(max_iterations), float(tolerance),
            pivot_epsilon(True), _n_chunks(n), out_p, out_state, out_chi2, out_it)
    return out_p, out_state, out_chi2, out_it
