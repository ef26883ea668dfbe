"""Gaussian fits of every column of a class average, reusable for bootstrap resamples.

:func:`fit_columns` fits the columns listed in a site table (from
:meth:`~stemscale.lattice.HexLattice.sites`) with the batched
Levenberg-Marquardt of :mod:`stemscale.fit`, one Gaussian per window, with
the tails of the neighbouring columns added to the model as a fixed
offset.  Which neighbour model works best was measured on noiseless and
noisy simulated class averages (vacancy in WSe2, 20.74 pm/px):

* ``"none"``: neighbour tails are ignored.  Efficient, but the fit of a
  column is dragged by its displaced neighbours and, next to a vacancy,
  by the missing half column: errors of 0.2-1 pm.
* ``"gaussian"``: every neighbour is its own fitted Gaussian
  (:func:`stemscale.fit.fit_with_neighbours`).  Small bias, but each
  neighbour's noisy amplitude and widths leak into the fit: 30-100 % more
  scatter on a noisy average, and a bootstrap with fixed tails misses it.
* ``"smoothed"`` (default): neighbours keep their own fitted positions but
  take the median amplitude and widths of their sublattice, except the
  columns of the defect core (within ``core_radius_px`` of the centre),
  which keep their own amplitude.  Bias close to ``"gaussian"`` and
  scatter close to ``"none"``; refits rescale the core's tail with its
  refitted amplitude, so bootstrap errors include that noise.

A disc-shaped window (``window_radius_px``, as zero weights in the square)
and inverse-variance weights (``variance``, from the class accumulator)
use the informative pixels and leave out the corners, where neighbour
tails are largest.

:class:`ColumnFit` records the windows, weights and neighbour tails, so
:meth:`ColumnFit.refit` fits thousands of resampled averages with the same
estimator in one batch (only the window pixels of each resample are needed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError

__all__ = ["ColumnFit", "fit_columns", "NEIGHBOUR_MODELS"]

NEIGHBOUR_MODELS = ("smoothed", "gaussian", "none")


@dataclass
class ColumnFit:
    """Fitted columns of one average and the fixed parts of its estimator.

    Attributes
    ----------
    table
        One row per site: the site table's columns plus ``x_fit``, ``y_fit``
        (px, crop coordinates; NaN where the fit failed), ``x_err``, ``y_err``
        (px, from the fit's curvature), ``amplitude``, ``state``.
    origins
        ``(n, 2)`` column, row of each window's pixel ``[0, 0]``.
    offsets
        ``(n, h, w)`` fixed neighbour tails.
    params
        ``(n, P)`` fitted parameters in window coordinates (start values of refits).
    window, model, estimator, shape
        Fit settings and the image shape.
    weights
        ``(n, h * w)`` least-squares weights, or ``None``.
    core_index, core_offsets, core_amplitude
        The defect-core columns, their parts ``(n_core, n, h * w)`` of the
        offsets and the amplitudes they were rendered with: a refit scales
        each part by the core column's refitted amplitude, so the bootstrap
        carries the noise of the dim defect column into its neighbours.
    """

    table: pd.DataFrame
    origins: np.ndarray
    offsets: np.ndarray
    params: np.ndarray
    window: int
    model: str
    estimator: str
    shape: tuple[int, int]
    weights: np.ndarray | None = None
    core_index: np.ndarray | None = None
    core_offsets: np.ndarray | None = None
    core_amplitude: np.ndarray | None = None

    @property
    def xy(self) -> np.ndarray:
        return self.table[["x_fit", "y_fit"]].to_numpy()

    def pixel_index(self) -> np.ndarray:
        """``(n, h * w)`` flat pixel indices of every window in the image."""
        h = w = self.window
        rows = self.origins[:, 1:2] + np.arange(h)[None, :]
        cols = self.origins[:, 0:1] + np.arange(w)[None, :]
        return (rows[:, :, None] * self.shape[1] + cols[:, None, :]).reshape(len(self.origins), -1)

    def refit(self, window_pixels: np.ndarray, *, max_iterations: int = 25,
              rescale_core: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Fit resampled averages (or single crops) with the same estimator.

        Parameters
        ----------
        window_pixels
            ``(B, n, h * w)`` pixels of each window in each of B images
            (e.g. ``resampled_means[:, self.pixel_index()]``).
        rescale_core
            Rescale the defect core's tail by its refitted amplitude (right
            for resampled averages; for single noisy crops, where that
            amplitude is mostly noise, keep the average's tail).

        Returns
        -------
        xy : ``(B, n, 2)`` fitted positions (px, crop coordinates); NaN where a fit failed.
        ok : ``(B, n)`` bool
        """
        from ..fit import fit_batch

        d = np.asarray(window_pixels, dtype=np.float64)
        B, n, m = d.shape
        if n != len(self.origins) or m != self.window**2:
            raise InputError(f"window pixels of shape {d.shape} do not match {len(self.origins)} windows of {self.window}^2")
        init = np.broadcast_to(np.nan_to_num(self.params), (B,) + self.params.shape).reshape(B * n, -1)
        off = np.broadcast_to(self.offsets.reshape(n, -1), (B, n, m)).reshape(B * n, m)
        wts = None
        if self.weights is not None:
            wts = np.ascontiguousarray(np.broadcast_to(self.weights.reshape(n, -1), (B, n, m)).reshape(B * n, m))
        res = fit_batch(d.reshape(B * n, m), np.ascontiguousarray(init), model=self.model,
                        estimator=self.estimator, offset=np.ascontiguousarray(off), weights=wts,
                        window_shape=(self.window, self.window), max_iterations=max_iterations).to_numpy()
        if rescale_core and self.core_index is not None and len(self.core_index):
            # the defect column's own amplitude in each image sets its tail in its neighbours' windows
            from ..fit.models import get_model

            if self.core_offsets is None or self.core_amplitude is None:
                raise InputError("ColumnFit has core_index but lacks core_offsets or core_amplitude; "
                                 "set all three (as fit_columns does) or none")
            amp = res.parameters.reshape(B, n, -1)[:, self.core_index, get_model(self.model).amplitude_index]
            scale = amp / self.core_amplitude[None, :]
            scale = np.where(np.isfinite(scale), scale, 1.0)                           # (B, n_core)
            delta = np.einsum("bk,knm->bnm", scale - 1.0, self.core_offsets)            # (B, n, m)
            off_b = off.reshape(B, n, m) + delta
            res = fit_batch(d.reshape(B * n, m), np.ascontiguousarray(res.parameters), model=self.model,
                            estimator=self.estimator, offset=np.ascontiguousarray(off_b.reshape(B * n, m)),
                            weights=wts, window_shape=(self.window, self.window),
                            max_iterations=max_iterations).to_numpy()
        p = res.parameters.reshape(B, n, -1)
        ok = (res.states.reshape(B, n) <= 1) & np.isfinite(p[..., 1]) & np.isfinite(p[..., 2])
        xy = np.stack([p[..., 1] + self.origins[None, :, 0], p[..., 2] + self.origins[None, :, 1]], axis=-1)
        xy[~ok] = np.nan
        return xy, ok


def window_weights(pos: np.ndarray, window: int, shape: tuple[int, int], radius: float | None,
                   variance: np.ndarray | None) -> np.ndarray | None:
    """``(n, window**2)`` least-squares weights (disc mask, inverse variance), or ``None``."""
    if radius is None and variance is None:
        return None
    from ..fit import window_origins

    origins, _ = window_origins(pos, window, shape)
    w = np.ones((len(pos), window * window))
    ys = origins[:, 1:2, None] + np.arange(window)[None, :, None]
    xs = origins[:, 0:1, None] + np.arange(window)[None, None, :]
    if radius is not None:
        d = np.hypot(xs - pos[:, 0, None, None], ys - pos[:, 1, None, None])
        w *= (d <= float(radius)).reshape(len(pos), -1)
    if variance is not None:
        var = np.asarray(variance, dtype=np.float64)
        if var.shape != tuple(shape):
            raise InputError(f"variance of shape {var.shape} does not match the image {shape}")
        v = var[np.clip(ys, 0, shape[0] - 1), np.clip(xs, 0, shape[1] - 1)].reshape(len(pos), -1)
        good = v[np.isfinite(v) & (v > 0)]
        floor = 1e-3 * (np.median(good) if good.size else 1.0)
        w /= np.maximum(np.nan_to_num(v, nan=floor), floor)
        w /= np.mean(w[w > 0]) if np.any(w > 0) else 1.0  # unit mean: chi-square stays comparable
    return w


def _render_windows(shape, rend, model, pos, origins, window, include) -> np.ndarray:
    """For every window, the sum of the rendered peaks ``include`` minus the window's own peak."""
    import array_api_compat.numpy as xp

    from ..fit import extract_windows, render_peaks
    from ..fit.models import evaluate

    m = model
    n = len(pos)
    ok = include & np.isfinite(rend).all(axis=1)
    canvas = render_peaks(shape, np.where(ok[:, None], rend, 0.0), m, 3 * window, include=ok)
    around, _, _ = extract_windows(canvas, pos, window)
    own = rend.copy()
    own[:, m.x_index] -= origins[:, 0]
    own[:, m.y_index] -= origins[:, 1]
    own[:, m.background_index] = 0.0
    own[~ok] = 0.0
    own[np.ix_(~ok, list(m.sigma_indices))] = 1.0
    f, _ = evaluate(xp, m, own, (window, window), jacobian=False)
    f = np.where(ok[:, None], f, 0.0)
    return around.reshape(n, -1) - f


def _smoothed_offsets(shape, pos, params, origins, states, model, window, sites, core):
    """Neighbour tails: own positions, sublattice-median amplitude and widths.

    Columns of the defect core keep their own amplitude (a vacancy's column
    is dimmer) but take their sublattice's median widths: the probe is the
    same for every column, and the widths of a dim column fitted on its
    own are the noisiest numbers of the fit.

    Returns the total offsets ``(n, m)``, the part of them due to each core
    column ``(n_core, n, m)`` and the core columns' rendered amplitudes.
    """
    m = model
    good = (states <= 1) & np.isfinite(params).all(axis=1)
    glob = params.copy()
    glob[:, m.x_index] += origins[:, 0]
    glob[:, m.y_index] += origins[:, 1]
    rend = glob.copy()
    for sub in np.unique(sites):
        member = sites == sub
        sel = member & ~core & good
        if not sel.any():
            sel = member & good
        if not sel.any():
            continue
        med = np.median(glob[sel], axis=0)
        fix = member & (~core | ~good)
        rend[np.ix_(fix, [m.amplitude_index])] = med[m.amplitude_index]
        rend[np.ix_(member, list(m.sigma_indices))] = med[list(m.sigma_indices)]
    # failed fits: render at their start position
    rend[~good, m.x_index] = pos[~good, 0]
    rend[~good, m.y_index] = pos[~good, 1]
    total = _render_windows(shape, rend, m, pos, origins, window, np.ones(len(pos), bool))
    core_idx = np.flatnonzero(core)
    parts = np.stack([_render_windows(shape, rend, m, pos, origins, window, np.arange(len(pos)) == k)
                      for k in core_idx]) if len(core_idx) else np.zeros((0,) + total.shape)
    return total, parts, rend[core_idx, m.amplitude_index]


def fit_columns(
    image: np.ndarray,
    sites: pd.DataFrame,
    *,
    window: int = 9,
    window_radius_px: float | None = None,
    variance: np.ndarray | None = None,
    neighbour_model: str = "smoothed",
    neighbour_rounds: int = 6,
    core_radius_px: float = 2.5,
    model: str = "gauss2d_elliptic",
    estimator: str = "lse",
) -> ColumnFit:
    """Fit one Gaussian per column of ``sites`` in a (high signal-to-noise) average.

    Parameters
    ----------
    image
        ``(h, w)`` class or pristine average.
    sites
        Site table with ``x_px``, ``y_px`` start positions (crop pixels),
        ``site`` (sublattice) and ``r_px`` (distance from the centre site)
        for the smoothed neighbour model.
    window
        Fit window edge (px); the paper used 7.
    window_radius_px
        Use only pixels within this distance of each start position.
    variance
        ``(h, w)`` pixel variance of the averaged crops: weights ``1 / variance``.
    neighbour_model
        ``"smoothed"``, ``"gaussian"`` or ``"none"`` (see the module notes).
    neighbour_rounds
        Refits with updated neighbour tails.
    core_radius_px
        Columns this close to the centre keep their own amplitude and widths
        in the smoothed model (the defect's column).
    model, estimator
        As :func:`stemscale.fit.fit_batch`.

    Returns
    -------
    ColumnFit
    """
    from ..fit import covariance, fit_batch, fit_windows, fit_with_neighbours, standard_errors
    from ..fit.models import get_model

    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2 or not np.isfinite(img).all():
        raise InputError("fit_columns needs a finite 2-D image")
    missing = {"x_px", "y_px"} - set(sites.columns)
    if missing:
        raise InputError(f"sites table lacks {sorted(missing)}")
    if neighbour_model not in NEIGHBOUR_MODELS:
        raise InputError(f"neighbour_model must be one of {NEIGHBOUR_MODELS}, got {neighbour_model!r}")
    if not (isinstance(window, (int, np.integer)) and window >= 3):
        raise InputError(f"window must be an integer >= 3 px, got {window!r}")
    pos = sites[["x_px", "y_px"]].to_numpy(dtype=np.float64)
    m = get_model(model)
    n = len(pos)
    weights = window_weights(pos, int(window), img.shape, window_radius_px, variance)
    kw: dict[str, Any] = {} if weights is None else {"weights": weights}
    rounds = int(neighbour_rounds) if neighbour_model != "none" else 0
    if neighbour_model == "gaussian":
        wf = fit_with_neighbours(img, pos, window=window, model=m, estimator=estimator, rounds=rounds, **kw)
        params = np.asarray(wf.result.parameters, dtype=np.float64)
        states = np.asarray(wf.result.states)
        offsets = wf.offsets.reshape(n, -1) if wf.offsets is not None else np.zeros((n, window * window))
    else:
        wf = fit_windows(img, pos, window=window, model=m, estimator=estimator, **kw)
        params = np.asarray(wf.result.parameters, dtype=np.float64)
        states = np.asarray(wf.result.states)
        first = np.nan_to_num(params.copy())
        offsets = np.zeros((n, window * window))
        if rounds:
            sub = sites["site"].astype(str).to_numpy() if "site" in sites.columns else np.zeros(n, dtype=object)
            r = sites["r_px"].to_numpy(dtype=float) if "r_px" in sites.columns else np.full(n, np.inf)
            core = r <= core_radius_px
            for _ in range(rounds):
                offsets, core_parts, core_amp = _smoothed_offsets(img.shape, pos, params, wf.origins_xy, states, m,
                                                                  int(window), sub, core)
                core_idx = np.flatnonzero(core)
                res = fit_batch(wf.windows, np.ascontiguousarray(first), model=m, estimator=estimator,
                                offset=np.ascontiguousarray(offsets), **kw).to_numpy()
                params = np.asarray(res.parameters, dtype=np.float64)
                states = np.asarray(res.states)
    data = wf.windows.reshape(n, -1) - offsets
    with np.errstate(all="ignore"):
        # curvature errors of the unweighted model (the bootstrap gives the real ones)
        err = standard_errors(covariance(np.nan_to_num(params), data, m, (window, window), estimator="lse"))
    table = sites.reset_index(drop=True).copy()
    table["x_fit"] = params[:, m.x_index] + wf.origins_xy[:, 0]
    table["y_fit"] = params[:, m.y_index] + wf.origins_xy[:, 1]
    table["x_err"] = err[:, m.x_index]
    table["y_err"] = err[:, m.y_index]
    table["amplitude"] = params[:, m.amplitude_index]
    table["state"] = states.astype(np.int8)
    table.loc[states > 1, ["x_fit", "y_fit"]] = np.nan
    out = ColumnFit(table, np.asarray(wf.origins_xy, dtype=np.int64), offsets.reshape(n, window, window),
                    params, int(window), m.name, estimator, img.shape, weights)
    if neighbour_model == "smoothed" and rounds and len(core_idx):
        out.core_index, out.core_offsets, out.core_amplitude = core_idx, core_parts, core_amp
    return out
