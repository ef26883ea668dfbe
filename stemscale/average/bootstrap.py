"""Vectorised bootstrap over crops: resampled class averages by matrix products.

A bootstrap resample draws N crops with replacement; its average is
``counts @ crops / N`` with ``counts`` the (B, N) matrix of how often each
crop was drawn.  So B resampled averages of the selected pixels are one
streamed matrix product over the crop stack, part by part, never holding
the stack in memory.  Fitting the resampled averages (see
:meth:`stemscale.strain.columns.ColumnFit.refit`) then gives the standard
error of every derived number.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from ..errors import InputError

__all__ = ["resample_counts", "bootstrap_means", "standard_error", "precision_slope"]


def resample_counts(n: int, n_resamples: int, *, seed: int | np.random.Generator = 0,
                    subset: np.ndarray | None = None) -> np.ndarray:
    """``(B, n)`` float64 counts of each of ``n`` crops in each of B resamples with replacement.

    With ``subset`` (row indices), resamples draw ``len(subset)`` crops from
    the subset only (the other columns stay zero): the bootstrap of a
    smaller class average.
    """
    if n_resamples < 1:
        raise InputError(f"n_resamples must be >= 1, got {n_resamples}")
    rng = np.random.default_rng(seed)
    rows = np.arange(n) if subset is None else np.asarray(subset, dtype=np.int64)
    if len(rows) == 0:
        raise InputError("cannot bootstrap zero crops")
    k = len(rows)
    counts = np.zeros((n_resamples, n))
    for b0 in range(0, n_resamples, 256):  # bounded memory for huge n
        b1 = min(n_resamples, b0 + 256)
        draws = rows[rng.integers(0, k, size=(b1 - b0, k))]
        flat = draws + n * np.arange(b1 - b0)[:, None]
        counts[b0:b1] = np.bincount(flat.ravel(), minlength=(b1 - b0) * n).reshape(b1 - b0, n)
    return counts


def bootstrap_means(stack: Any, counts: np.ndarray, *, pixels: np.ndarray | None = None) -> np.ndarray:
    """Resampled averages ``counts @ stack / counts.sum(1)`` of the selected pixels.

    Parameters
    ----------
    stack
        A :class:`~stemscale.io.CropStack` (streamed part by
        part) or an ``(N, ...)`` array of crops.
    counts
        ``(B, N)`` from :func:`resample_counts`.
    pixels
        Flat pixel indices to keep (e.g. the fit windows); default all.

    Returns
    -------
    ``(B, n_pixels)`` float64.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2:
        raise InputError(f"counts must be (B, N), got shape {counts.shape}")
    total = counts.sum(axis=1)
    if np.any(total <= 0):
        raise InputError("every resample must hold at least one crop")
    if hasattr(stack, "iter_parts"):
        if len(stack) != counts.shape[1]:
            raise InputError(f"counts are for {counts.shape[1]} crops but the stack holds {len(stack)}")
        parts: Iterable = stack.iter_parts(pixels)
    else:
        arr = np.asarray(stack, dtype=np.float64)
        if len(arr) != counts.shape[1]:
            raise InputError(f"counts are for {counts.shape[1]} crops but the stack holds {len(arr)}")
        flat = arr.reshape(len(arr), -1)
        parts = [(0, flat if pixels is None else flat[:, pixels])]
    out = None
    for start, data in parts:
        c = counts[:, start : start + len(data)]
        used = np.flatnonzero(c.any(axis=0))
        if not len(used):
            if out is None:
                out = np.zeros((counts.shape[0], data.shape[1]))
            continue
        term = c[:, used] @ data[used]
        out = term if out is None else out + term
    return out / total[:, None]


def standard_error(samples: np.ndarray, axis: int = 0) -> np.ndarray:
    """Bootstrap standard error: the standard deviation (ddof = 1) over resamples, NaN-aware."""
    with np.errstate(invalid="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanstd(np.asarray(samples, dtype=float), axis=axis, ddof=1)


def precision_slope(n: np.ndarray, se: np.ndarray) -> dict[str, float]:
    """Fit ``log se = log(sigma_1) - slope' * log N``: slope, its standard error and sigma_1.

    For a class average limited by independent noise the slope is -0.5 and
    ``sigma_1`` is the single-crop spread that ``se = sigma_1 / sqrt(N)`` implies.
    """
    n = np.asarray(n, dtype=float)
    se = np.asarray(se, dtype=float)
    ok = np.isfinite(se) & (se > 0) & (n > 0)
    if ok.sum() < 2:
        raise InputError("need at least two finite precisions to fit a slope")
    x, y = np.log(n[ok]), np.log(se[ok])
    A = np.column_stack([np.ones_like(x), x])
    coef, res, *_ = np.linalg.lstsq(A, y, rcond=None)
    dof = max(1, len(x) - 2)
    resid = y - A @ coef
    s2 = float(resid @ resid) / dof
    cov = s2 * np.linalg.inv(A.T @ A)
    # the fixed-slope (-1/2) estimate of sigma_1
    sigma1 = float(np.exp(np.mean(y + 0.5 * x)))
    return {"slope": float(coef[1]), "slope_se": float(np.sqrt(cov[1, 1])),
            "intercept": float(coef[0]), "sigma1_from_fit": sigma1}
