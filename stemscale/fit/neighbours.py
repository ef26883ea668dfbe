"""Neighbour-aware fitting: each column is fitted with its neighbours' tails held fixed.

Columns closer than a few widths overlap, and a single Gaussian fitted in a
window that also holds a neighbour's tail is pulled towards it.  Here every
column is first fitted on its own; then, for a few rounds, the fitted
Gaussians of all *other* columns are rendered into the window as a fixed
per-pixel ``offset`` of the model and the column is refitted (a Jacobi-style
iterative neighbour subtraction).  Adding the neighbours to the model instead
of subtracting them from the data keeps the Poisson estimator valid, and the
whole thing stays a batch of small independent fits, so it runs on every
backend at full speed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ._arrays import to_numpy as _to_numpy
from .api import FitResult, fit_batch
from .initial import estimate_initial
from .models import GaussianModel, evaluate, get_model
from .states import FitState
from .windows import _shape, extract_windows

__all__ = ["WindowFit", "fit_windows", "fit_with_neighbours", "render_peaks", "window_bounds"]


@dataclass
class WindowFit:
    """Fits of windows cut from one image.

    Attributes
    ----------
    result
        The :class:`FitResult`, positions in window pixels.
    windows
        ``(n, h, w)`` windows that were fitted.
    offsets
        ``(n, h, w)`` fixed neighbour contributions added to the model, or ``None``.
    origins_xy
        ``(n, 2)`` image column, row of each window's pixel ``[0, 0]``.
    edge
        ``(n,)`` True where the window was shifted at the image edge.
    """

    result: FitResult
    windows: np.ndarray
    offsets: np.ndarray | None
    origins_xy: np.ndarray
    edge: np.ndarray

    def global_parameters(self) -> np.ndarray:
        """Parameters with ``x0, y0`` in image pixels (NumPy)."""
        m = get_model(self.result.model)
        p = np.array(_to_numpy(self.result.parameters), dtype=np.float64, copy=True)
        p[:, m.x_index] += self.origins_xy[:, 0]
        p[:, m.y_index] += self.origins_xy[:, 1]
        return p


def render_peaks(shape: tuple[int, int], params_global: np.ndarray, model: str | GaussianModel,
                 patch: int | tuple[int, int], include: np.ndarray | None = None) -> np.ndarray:
    """Sum of the peaks (without background) on an image of ``shape``.

    Each peak is evaluated on a ``patch``-sized box around its centre and
    clipped at the image edges; peaks with ``include`` False are left out.
    """
    m = get_model(model)
    ph, pw = _shape(patch)
    p = np.asarray(params_global, dtype=np.float64)
    if include is not None:
        p = p[np.asarray(include, dtype=bool)]
    ny, nx = shape
    out = np.zeros(ny * nx)
    if len(p) == 0:
        return out.reshape(ny, nx)
    ox = np.floor(p[:, m.x_index] - (pw - 1) / 2.0 + 0.5).astype(np.int64)
    oy = np.floor(p[:, m.y_index] - (ph - 1) / 2.0 + 0.5).astype(np.int64)
    local = p.copy()
    local[:, m.x_index] -= ox
    local[:, m.y_index] -= oy
    local[:, m.background_index] = 0.0
    import array_api_compat.numpy as xp

    vals, _ = evaluate(xp, m, local, (ph, pw), jacobian=False)
    rows = oy[:, None, None] + np.arange(ph)[None, :, None]
    cols = ox[:, None, None] + np.arange(pw)[None, None, :]
    inside = (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx)
    flat = (rows * nx + cols)[inside]
    out += np.bincount(flat, weights=vals.reshape(-1, ph, pw)[inside], minlength=ny * nx)
    return out.reshape(ny, nx)


def window_bounds(model: str | GaussianModel,
                  window_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Sane boxes for column fits: amplitude >= 0 and widths in [0.25 px, window edge].

    A Gaussian wider than its window is not constrained by the data, and at
    low counts such fits otherwise drift to tens of pixels.  Positions stay
    free so that a column that leaves its window is reported as such.
    """
    m = get_model(model)
    lo = np.full(m.n_parameters, -np.inf)
    hi = np.full(m.n_parameters, np.inf)
    lo[m.amplitude_index] = 0.0
    for k in m.sigma_indices:
        lo[k] = 0.25
        hi[k] = float(max(window_shape))
    return lo, hi


def fit_windows(image: Any, positions_xy: Any, *, window: int | tuple[int, int] = 7,
                model: str | GaussianModel = "gauss2d_elliptic", estimator: str = "lse",
                sigma: float | None = None, offset_xy: tuple[float, float] = (0.0, 0.0),
                **fit_kwargs: Any) -> WindowFit:
    """Cut a window around every position and fit one Gaussian in each (no neighbours).

    Unless ``bounds`` is given, :func:`window_bounds` applies.
    """
    m = get_model(model)
    img = np.asarray(_to_numpy(image.data if hasattr(image, "dims") else image), dtype=np.float64)
    windows, origins, edge = extract_windows(img, positions_xy, window, offset_xy=offset_xy)
    pos = np.asarray(positions_xy, dtype=np.float64)
    init = estimate_initial(windows, m, positions_xy=pos - origins, sigma=sigma)
    if estimator == "mle":
        init[:, m.background_index] = np.maximum(init[:, m.background_index], 1e-6)
    fit_kwargs.setdefault("bounds", window_bounds(m, windows.shape[1:]))
    res = fit_batch(windows, init, model=m, estimator=estimator, **fit_kwargs)
    return WindowFit(res.to_numpy(), windows, None, origins, edge)


def fit_with_neighbours(image: Any, positions_xy: Any, *, window: int | tuple[int, int] = 7,
                        model: str | GaussianModel = "gauss2d_elliptic", estimator: str = "lse",
                        sigma: float | None = None, rounds: int = 3, relaxation: float = 1.0,
                        width_range: float = 1.25,
                        render_patch: int | tuple[int, int] | None = None,
                        offset_xy: tuple[float, float] = (0.0, 0.0),
                        **fit_kwargs: Any) -> WindowFit:
    """Fit every column with the fitted tails of all other columns held fixed.

    Parameters
    ----------
    image
        2-D image (counts for ``estimator="mle"``).
    positions_xy
        ``(n, 2)`` start positions of *all* columns near the ones of interest
        (unlisted columns cannot be accounted for).
    window
        Fit window edge in pixels.
    rounds
        Refits with neighbour tails (0 gives the plain single-Gaussian fit);
        2-3 are enough for tails that overlap a window's edge.
    relaxation
        Weight of the newest neighbour model after the first round.  1 (plain
        Jacobi iteration) converges in 2-3 rounds for columns more than ~4
        widths apart; values below 1 damp the back-and-forth overshoot of
        pairs closer than ~3 widths.
    width_range
        In the rounds, each width stays within this factor of its value from
        the first fit (which keeps low-count fits from drifting to wide peaks
        over a negative background).
    render_patch
        Box over which each neighbour is rendered; default ``3 * window``
        (must cover the distance from a neighbour to the far side of a window).
    offset_xy, sigma, fit_kwargs
        As :func:`fit_windows` / :func:`fit_batch`.
    """
    if not (isinstance(rounds, (int, np.integer)) and rounds >= 0):
        raise InputError(f"rounds must be a non-negative integer, got {rounds!r}")
    m = get_model(model)
    wf = fit_windows(image, positions_xy, window=window, model=m, estimator=estimator,
                     sigma=sigma, offset_xy=offset_xy, **fit_kwargs)
    if rounds == 0:
        return wf
    img = np.asarray(_to_numpy(image.data if hasattr(image, "dims") else image), dtype=np.float64)
    h, w = _shape(window)
    patch = render_patch if render_patch is not None else (3 * h, 3 * w)
    n = len(wf.origins_xy)
    first = _to_numpy(wf.result.parameters)
    res = wf.result
    offsets = None
    loc = np.asarray(wf.origins_xy, dtype=np.float64) - np.asarray(offset_xy, dtype=np.float64)
    import array_api_compat.numpy as xp

    fit_kwargs.setdefault("bounds", window_bounds(m, (h, w)))
    # In a dense lattice, wider peaks over a lower background explain the image
    # almost as well, and with free widths the rounds drift along that valley
    # (badly so at low counts).  The widths stay within a factor `width_range`
    # of the first, single-Gaussian fit (itself pulled to within 1.5x of the
    # median), which leaves room for the neighbour correction.
    lo_b, hi_b = (np.array(b, dtype=np.float64) for b in fit_kwargs["bounds"])
    lo_b = np.broadcast_to(lo_b, (n, m.n_parameters)).copy()
    hi_b = np.broadcast_to(hi_b, (n, m.n_parameters)).copy()
    ok0 = _to_numpy(res.states) == int(FitState.CONVERGED)
    sig = list(m.sigma_indices)
    w0 = np.array(_to_numpy(res.parameters)[:, sig], dtype=np.float64)
    med0 = np.median(w0[ok0]) if ok0.any() else 1.0
    w0 = np.clip(np.where(np.isfinite(w0), w0, med0), med0 / 1.5, med0 * 1.5)
    lo_b[:, sig] = np.maximum(lo_b[:, sig], w0 / width_range)
    hi_b[:, sig] = np.minimum(hi_b[:, sig], w0 * width_range)
    fit_kwargs["bounds"] = (lo_b, hi_b)
    for _ in range(rounds):
        states = _to_numpy(res.states)
        good = states == int(FitState.CONVERGED)
        params = np.array(_to_numpy(res.parameters), dtype=np.float64, copy=True)
        good &= params[:, m.amplitude_index] > 0
        if good.any():
            # a noisy neighbour fit with a runaway width would paint a wrong tail
            # over its neighbours: render widths within a factor 1.5 of the median
            med = np.median(params[good][:, list(m.sigma_indices)])
            for k in m.sigma_indices:
                params[:, k] = np.clip(params[:, k], med / 1.5, med * 1.5)
        glob = params.copy()
        glob[:, m.x_index] += loc[:, 0]
        glob[:, m.y_index] += loc[:, 1]
        canvas = render_peaks(img.shape, np.where(good[:, None], glob, 0.0), m, patch, include=good)
        around, _, _ = extract_windows(canvas, np.asarray(positions_xy, dtype=np.float64), (h, w),
                                       offset_xy=offset_xy)
        # the column's own rendered peak is in `around` too: take it out again
        own_p = params.copy()
        own_p[:, m.background_index] = 0.0
        own_p[~good] = 0.0
        own_p[np.ix_(~good, list(m.sigma_indices))] = 1.0   # finite placeholder, masked below
        own, _ = evaluate(xp, m, own_p, (h, w), jacobian=False)
        own = np.where(good[:, None], own, 0.0)
        new = around.reshape(n, h * w) - own
        # Damped (Jacobi) update: strongly overlapping pairs otherwise overshoot
        # back and forth; the first round takes the full neighbour model.
        offsets = new if offsets is None else relaxation * new + (1.0 - relaxation) * offsets
        start = np.where(good[:, None], np.array(_to_numpy(res.parameters)), first)
        start = np.where(np.isfinite(start), start, first)
        if estimator == "mle":
            # the neighbours are now in the model: a start background that
            # compensated for them could make it negative
            start[:, m.background_index] = np.maximum(start[:, m.background_index], 1e-6)
        res = fit_batch(wf.windows, start, model=m, estimator=estimator, offset=offsets,
                        **fit_kwargs).to_numpy()
    assert offsets is not None  # rounds >= 1, so the loop has set them
    return WindowFit(res, wf.windows, offsets.reshape(n, h, w), wf.origins_xy, wf.edge)
