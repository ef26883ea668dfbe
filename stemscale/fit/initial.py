"""Start values for the fits from the windows themselves (moments, vectorised)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from .models import GaussianModel, get_model

__all__ = ["estimate_initial"]


def estimate_initial(windows: Any, model: str | GaussianModel = "gauss2d_elliptic", *,
                     positions_xy: Any | None = None, sigma: float | None = None,
                     window_shape: tuple[int, int] | None = None,
                     background_percentile: float = 10.0) -> np.ndarray:
    """Moment-based start values for every window.

    Parameters
    ----------
    windows
        ``(n, h, w)`` or ``(n, h * w)`` array (converted to NumPy).
    model
        Model whose parameter layout to return.
    positions_xy
        ``(n, 2)`` start positions in window coordinates; default: the window
        centre.  They are improved by a centre of mass over the 3 x 3 pixels
        around them.
    sigma
        Known width in pixels (e.g. the probe size); default: from the area
        above half maximum.
    window_shape
        ``(h, w)`` when ``windows`` is 2-D and not square.
    background_percentile
        Percentile of the window's pixels taken as the background.

    Returns
    -------
    ``(n, n_parameters)`` float64 array.  Windows with NaN get NaN start
    values (the fitter then flags them ``INVALID_INPUT``).
    """
    m = get_model(model)
    d = np.asarray(windows.get() if hasattr(windows, "get") else
                   windows.detach().cpu().numpy() if hasattr(windows, "detach") else windows,
                   dtype=np.float64)
    if d.ndim == 3:
        h, w = d.shape[1:]
        d = d.reshape(d.shape[0], -1)
    elif d.ndim == 2:
        if window_shape is None:
            side = int(round(np.sqrt(d.shape[1])))
            if side * side != d.shape[1]:
                raise InputError("windows are not square; pass window_shape=(h, w)")
            window_shape = (side, side)
        h, w = window_shape
    else:
        raise InputError(f"windows must be (n, h, w) or (n, h*w), got shape {d.shape}")
    n = d.shape[0]
    with np.errstate(all="ignore"):
        bg = np.percentile(d, background_percentile, axis=1)
        if positions_xy is None:
            px = np.full(n, (w - 1) / 2.0)
            py = np.full(n, (h - 1) / 2.0)
        else:
            pos = np.asarray(positions_xy, dtype=np.float64)
            if pos.shape != (n, 2):
                raise InputError(f"positions_xy must be ({n}, 2), got {pos.shape}")
            px, py = pos[:, 0], pos[:, 1]
        cube = d.reshape(n, h, w)
        # centre of mass of the excess over the background in the 3x3 around the start
        ix = np.clip(np.rint(px).astype(np.int64), 1, w - 2)
        iy = np.clip(np.rint(py).astype(np.int64), 1, h - 2)
        off = np.arange(-1, 2)
        rr = iy[:, None, None] + off[None, :, None]
        cc = ix[:, None, None] + off[None, None, :]
        patch = cube[np.arange(n)[:, None, None], rr, cc] - bg[:, None, None]
        patch = np.clip(patch, 0.0, None)
        mass = patch.sum(axis=(1, 2))
        has = mass > 0
        safe = np.where(has, mass, 1.0)
        cx = np.where(has, (patch * cc).sum(axis=(1, 2)) / safe, px)
        cy = np.where(has, (patch * rr).sum(axis=(1, 2)) / safe, py)
        peak = cube[np.arange(n), iy, ix] - bg
        amp = np.maximum(peak, np.maximum(np.abs(bg), 1.0) * 1e-3)
        if sigma is None:
            above = (d - bg[:, None]) > 0.5 * amp[:, None]
            area = np.count_nonzero(above, axis=1)
            sig = np.sqrt(np.maximum(area, 1) / (2.0 * np.pi * np.log(2.0)))
            sig = np.clip(sig, 0.5, max(h, w) / 3.0)
        else:
            if not (np.isfinite(sigma) and sigma > 0):
                raise InputError(f"sigma must be a positive number of pixels, got {sigma!r}")
            sig = np.full(n, float(sigma))
    cols = {"amplitude": amp, "x0": cx, "y0": cy, "sigma": sig, "sigma_x": sig,
            "sigma_y": sig, "background": bg, "theta": np.zeros(n)}
    out = np.stack([cols[name] for name in m.parameter_names], axis=1)
    out[~np.all(np.isfinite(d), axis=1)] = np.nan
    return out
