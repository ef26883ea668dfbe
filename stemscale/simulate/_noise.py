"""Per-pixel counting and read noise, drawn from each pixel's global index.

The Poisson draw of pixel (row, col) uses only that pixel's private stream
(:mod:`._hash`), so a mosaic's noise does not depend on how it is chunked.
Small means use inversion of the CDF (one uniform); means >= 10 use the
PTRS transformed rejection of Hörmann (1993), the algorithm NumPy uses.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ._hash import STREAM, _draw, _pixel_state, seed_key

__all__ = ["poisson_counts", "gaussian_noise"]


# 1/k for the inversion recurrence p_k = p_{k-1} * lam / k (a multiply is cheaper than a divide)
_INV = 1.0 / np.maximum(np.arange(256), 1).astype(np.float64)


@numba.njit(cache=True, nogil=True)
def _poisson_one(lam: float, state: np.uint64, inv: np.ndarray) -> float:
    if not lam > 0.0:
        return 0.0
    if lam < 10.0:
        u = _draw(state, np.uint64(0))
        p = math.exp(-lam)
        cdf = p
        k = 0
        while u > cdf and k < 200:
            k += 1
            p *= lam * inv[k]
            cdf += p
            if p < 1e-300:
                break
        return float(k)
    slam = math.sqrt(lam)
    loglam = math.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    invalpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2.0)
    n = np.uint64(0)
    while True:
        u = _draw(state, n) - 0.5
        v = _draw(state, n + np.uint64(1))
        n += np.uint64(2)
        us = 0.5 - abs(u)
        k = math.floor((2.0 * a / us + b) * u + lam + 0.43)
        if us >= 0.07 and v <= vr:
            return float(k)
        if k < 0.0 or (us < 0.013 and v > us):
            continue
        if (math.log(v) + math.log(invalpha) - math.log(a / (us * us) + b)) <= (
            -lam + k * loglam - math.lgamma(k + 1.0)
        ):
            return float(k)


@numba.njit(cache=True, nogil=True)
def _poisson_field(lam, row0, col0, key, out, inv):
    h, w = lam.shape
    for i in range(h):
        for j in range(w):
            state = _pixel_state(key, np.int64(row0 + i), np.int64(col0 + j))
            out[i, j] = _poisson_one(lam[i, j], state, inv)


@numba.njit(cache=True, nogil=True)
def _normal_field(row0, col0, key, out):
    h, w = out.shape
    for i in range(h):
        for j in range(w):
            state = _pixel_state(key, np.int64(row0 + i), np.int64(col0 + j))
            u1 = _draw(state, np.uint64(0))
            u2 = _draw(state, np.uint64(1))
            out[i, j] = math.sqrt(-2.0 * math.log1p(-u1)) * math.cos(2.0 * math.pi * u2)


def poisson_counts(expected: np.ndarray, seed: int, row0: int = 0, col0: int = 0) -> np.ndarray:
    """Poisson counts for expected values whose pixel (0, 0) is global pixel (row0, col0).

    Parameters
    ----------
    expected
        2-D array of non-negative expected counts.
    seed
        Simulation seed.
    row0, col0
        Global index of ``expected[0, 0]`` (so tiles of a mosaic draw consistent noise).

    Returns
    -------
    numpy.ndarray
        float32 counts of the same shape.
    """
    lam = np.ascontiguousarray(expected, dtype=np.float64)
    out = np.empty(lam.shape, dtype=np.float32)
    _poisson_field(lam, int(row0), int(col0), seed_key(seed, STREAM["poisson"]), out, _INV)
    return out


def gaussian_noise(shape: tuple[int, int], seed: int, row0: int = 0, col0: int = 0) -> np.ndarray:
    """Standard normal noise per global pixel (detector read noise)."""
    out = np.empty(shape, dtype=np.float32)
    _normal_field(int(row0), int(col0), seed_key(seed, STREAM["read_noise"]), out)
    return out
