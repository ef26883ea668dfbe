"""Small array helpers shared by the fitting backends (no backend imports here)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["bounds_numpy", "to_numpy"]


def to_numpy(a: Any) -> np.ndarray:
    """Host NumPy copy (or view) of a NumPy, CuPy or torch array."""
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "get"):                      # CuPy
        return a.get()
    if hasattr(a, "detach"):                   # torch
        return a.detach().cpu().numpy()
    return np.asarray(a)


def bounds_numpy(bounds: Any, n: int, P: int, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds as ``(1 or n, P)`` host arrays (NaN and ``None`` mean unbounded)."""
    lo = np.full((1, P), -np.inf, dtype=dtype)
    hi = np.full((1, P), np.inf, dtype=dtype)
    if bounds is None:
        return lo, hi
    if len(bounds) != 2:
        raise InputError("bounds must be a pair (lower, upper)")
    out = []
    for side, default in zip(bounds, (lo, hi)):
        if side is None:
            out.append(default)
            continue
        a = np.asarray(to_numpy(side), dtype=dtype)
        if a.shape == (P,):
            a = a[None, :]
        if a.shape not in ((1, P), (n, P)):
            raise InputError(f"each side of bounds must be ({P},) or ({n}, {P}), got {a.shape}")
        out.append(np.where(np.isnan(a), default, a))
    if np.any(out[0] > out[1]):
        raise InputError("bounds: some lower bound exceeds its upper bound")
    return out[0], out[1]
