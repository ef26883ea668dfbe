"""Smooth non-uniform background: a few plane waves in global pixel coordinates."""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["plane_wave_sum"]


@numba.njit(cache=True, nogil=True)
def _separable(cy, sy, cx, sx, out):
    h, w = out.shape
    m = cy.shape[1]
    for i in range(h):
        for j in range(w):
            acc = 0.0
            for k in range(m):
                acc += cy[i, k] * cx[j, k] - sy[i, k] * sx[j, k]
            out[i, j] += acc


def plane_wave_sum(
    ys: np.ndarray, xs: np.ndarray, k: np.ndarray, phase: np.ndarray, amp: np.ndarray, out: np.ndarray
) -> None:
    """Add ``sum_m amp_m cos(kx_m x + ky_m y + phase_m)`` on the grid ``ys x xs`` to ``out``.

    Separable: cos(a + b) = cos a cos b - sin a sin b, so the cost is one
    multiply-add pair per mode and pixel, with no BLAS thread pool involved.
    """
    ay = np.outer(ys, k[:, 1])
    ax = np.outer(xs, k[:, 0]) + phase
    _separable(np.cos(ay) * amp, np.sin(ay) * amp, np.cos(ax), np.sin(ax), out)
