"""Counter-based random numbers keyed by global indices.

Every random quantity of the simulator (defect at a lattice site, its
priority, the jitter of a scan line, the Poisson draw of a pixel) is a pure
function of ``(seed, stream, global indices)``.  A tile therefore draws the
same numbers whichever chunk it belongs to, and memory never depends on the
size of the mosaic.  The mixer is SplitMix64 (Steele, Lea & Flood 2014),
applied once per key; the NumPy and Numba versions give identical bits.
"""

from __future__ import annotations

from typing import TypeVar

import numba
import numpy as np

__all__ = [
    "STREAM",
    "hash_keys",
    "uniform",
    "normal",
    "seed_key",
]

# Named streams keep unrelated quantities statistically independent.
STREAM = {
    "defect": 1,
    "priority": 2,
    "jitter": 3,
    "poisson": 4,
    "read_noise": 5,
    "position_noise": 6,
    "background": 7,
    "offset": 8,
}

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = (np.uint64(s) for s in (30, 27, 31, 11))
_INV53 = 1.0 / 9007199254740992.0  # 2**-53


_U64 = TypeVar("_U64", np.ndarray, np.uint64)


def _mix(z: _U64) -> _U64:
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def seed_key(seed: int, stream: int) -> np.uint64:
    """The 64-bit key of one stream of one seed."""
    with np.errstate(over="ignore"):
        return _mix(np.uint64(int(seed) & 0xFFFFFFFFFFFFFFFF) + _GOLDEN * np.uint64(stream))


def hash_keys(seed: int, stream: int, *indices: np.ndarray | int) -> np.ndarray:
    """64-bit hash of ``(seed, stream, *indices)``, broadcast over the index arrays."""
    with np.errstate(over="ignore"):
        h = np.asarray(seed_key(seed, stream), dtype=np.uint64)
        for idx in indices:
            u = np.asarray(idx).astype(np.int64).view(np.uint64) if np.ndim(idx) else np.uint64(
                int(idx) & 0xFFFFFFFFFFFFFFFF
            )
            h = _mix((h ^ u) + _GOLDEN)
    return h


def uniform(seed: int, stream: int, *indices: np.ndarray | int) -> np.ndarray:
    """Uniform floats in [0, 1) (53 random bits), one per broadcast index."""
    return (hash_keys(seed, stream, *indices) >> _S11).astype(np.float64) * _INV53


def normal(seed: int, stream: int, *indices: np.ndarray | int) -> np.ndarray:
    """Standard normal floats (Box-Muller on two hashed uniforms)."""
    u1 = uniform(seed, stream, *indices, 0)
    u2 = uniform(seed, stream, *indices, 1)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


# ---------------------------------------------------------------- numba twins
@numba.njit(inline="always", cache=True)
def _mix_nb(z: np.uint64) -> np.uint64:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@numba.njit(inline="always", cache=True)
def _pixel_state(key: np.uint64, row: np.int64, col: np.int64) -> np.uint64:
    h = _mix_nb((key ^ np.uint64(row)) + np.uint64(0x9E3779B97F4A7C15))
    return _mix_nb((h ^ np.uint64(col)) + np.uint64(0x9E3779B97F4A7C15))


@numba.njit(inline="always", cache=True)
def _draw(state: np.uint64, k: np.uint64) -> float:
    """The k-th uniform in [0, 1) of a pixel's private stream."""
    z = _mix_nb(state + (k + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15))
    return float(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)
