"""``refine_positions``: a table of fitted atom columns from an image and start positions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from ._arrays import to_numpy as _to_numpy
from .models import GaussianModel, get_model
from .neighbours import fit_windows, fit_with_neighbours
from .states import FitState
from .uncertainty import covariance, standard_errors

__all__ = ["refine_positions"]

_STATE_CATEGORIES = pd.CategoricalDtype([s.name for s in FitState])


def _positions(positions: Any) -> tuple[np.ndarray, pd.Index | None]:
    if isinstance(positions, pd.DataFrame):
        missing = {"x_px", "y_px"} - set(positions.columns)
        if missing:
            raise InputError(
                f"positions table lacks column(s) {sorted(missing)}; expected x_px, y_px"
            )
        return positions[["x_px", "y_px"]].to_numpy(dtype=np.float64), positions.index
    arr = np.asarray(positions, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise InputError(
            f"positions must be an (n, 2) array of x, y pixels or a table, got shape {arr.shape}"
        )
    return arr, None


def refine_positions(image: Any, positions: Any, *, window: int = 7,
                     model: str | GaussianModel = "gauss2d_elliptic", estimator: str = "lse",
                     pixel_size_angstrom: float | None = None, sigma: float | None = None,
                     neighbour_rounds: int = 0, noise: str | None = None,
                     offset_xy: tuple[float, float] = (0.0, 0.0), backend: str = "auto",
                     max_iterations: int = 25, tolerance: float = 1e-4) -> pd.DataFrame:
    """Refine atom-column positions by Gaussian fits; one row per position.

    Parameters
    ----------
    image
        2-D image, ``[y, x]`` (a NumPy array, a computed Dask block or an
        :class:`xarray.DataArray`).  Counts for ``estimator="mle"``.
    positions
        ``(n, 2)`` array of x, y pixels, or a table with ``x_px``, ``y_px``.
    window
        Square fit window edge in pixels (7 as in the reference paper).
    model, estimator, backend, max_iterations, tolerance
        As :func:`stemscale.fit.fit_batch`.
    pixel_size_angstrom
        Adds ``x_A``, ``y_A`` and uncertainties in pm.
    sigma
        Known column width in pixels for the start values.
    neighbour_rounds
        0: one Gaussian per window.  > 0: neighbour-aware refits (see
        :func:`stemscale.fit.fit_with_neighbours`).
    noise
        Noise model of the uncertainties (:func:`stemscale.fit.covariance`);
        default Poisson for ``mle``, Gaussian with the scatter estimated from
        the residuals for ``lse``.
    offset_xy
        Global pixel coordinates of ``image[0, 0]`` (for a block of a mosaic);
        positions and outputs are global.

    Returns
    -------
    pandas.DataFrame
        ``x_px, y_px, amplitude, sigma_x_px, sigma_y_px, [theta_rad],
        background, x_err_px, y_err_px, [x_A, y_A, x_err_pm, y_err_pm],
        chi_square, reduced_chi_square, iterations, state, state_name, edge``.  ``state`` holds
        :class:`~stemscale.fit.FitState` codes; rows whose fit failed keep
        NaN or their last values and say so in ``state``.
    """
    m = get_model(model)
    pos, index = _positions(positions)
    if pixel_size_angstrom is not None and not (
        np.isfinite(pixel_size_angstrom) and pixel_size_angstrom > 0
    ):
        raise InputError(
            f"pixel_size_angstrom must be a positive number, got {pixel_size_angstrom!r}"
        )
    kw: dict[str, Any] = dict(window=window, model=m, estimator=estimator, sigma=sigma,
                              offset_xy=offset_xy, backend=backend,
                              max_iterations=max_iterations, tolerance=tolerance)
    if neighbour_rounds:
        wf = fit_with_neighbours(image, pos, rounds=int(neighbour_rounds), **kw)
    else:
        wf = fit_windows(image, pos, **kw)
    res = wf.result
    p = wf.global_parameters()
    n = len(p)
    data = wf.windows.reshape(n, -1)
    if wf.offsets is not None and estimator == "lse":
        data = data - wf.offsets.reshape(n, -1)
    with np.errstate(all="ignore"):
        if estimator == "mle" and wf.offsets is not None:
            # the Fisher information must include the neighbours' counts in f
            from .uncertainty import _inverse
            import array_api_compat.numpy as xp
            from .models import evaluate

            local = _to_numpy(res.parameters)
            f, jac = evaluate(xp, m, np.nan_to_num(local), res.window_shape)
            f = f + wf.offsets.reshape(n, -1)
            fs = np.where(f > 0, f, np.nan)
            info = np.einsum("nmp,nmq->npq", jac, jac / fs[:, :, None])
            err = standard_errors(_inverse(xp, info, [True] * m.n_parameters))
        else:
            cov = covariance(np.nan_to_num(_to_numpy(res.parameters)), data, m, res.window_shape,
                             estimator=estimator, noise=noise)
            err = standard_errors(cov)
    states = _to_numpy(res.states).astype(np.int8)
    bad = ~np.isfinite(p).all(axis=1)
    err[bad] = np.nan
    cols: dict[str, Any] = {
        "x_px": p[:, m.x_index],
        "y_px": p[:, m.y_index],
        "amplitude": p[:, m.amplitude_index],
    }
    if m.name == "gauss2d":
        cols["sigma_x_px"] = p[:, 3]
        cols["sigma_y_px"] = p[:, 3]
    else:
        cols["sigma_x_px"] = p[:, 3]
        cols["sigma_y_px"] = p[:, 4]
    if m.name == "gauss2d_rotated":
        cols["theta_rad"] = p[:, 6]
    cols["background"] = p[:, m.background_index]
    cols["x_err_px"] = err[:, m.x_index]
    cols["y_err_px"] = err[:, m.y_index]
    if pixel_size_angstrom is not None:
        ps = float(pixel_size_angstrom)
        cols["x_A"] = cols["x_px"] * ps
        cols["y_A"] = cols["y_px"] * ps
        cols["x_err_pm"] = cols["x_err_px"] * ps * 100.0
        cols["y_err_pm"] = cols["y_err_px"] * ps * 100.0
    cols["chi_square"] = _to_numpy(res.chi_square)
    # ~1 for a good Poisson-MLE fit; large for windows a single peak does not describe
    cols["reduced_chi_square"] = cols["chi_square"] / (data.shape[1] - m.n_parameters)
    cols["iterations"] = _to_numpy(res.iterations).astype(np.int16)
    cols["state"] = states
    cols["state_name"] = pd.Categorical.from_codes(states, dtype=_STATE_CATEGORIES)
    cols["edge"] = wf.edge
    return pd.DataFrame(cols, index=index)
