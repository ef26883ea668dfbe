"""Error bars: per-fit covariance and the Cramér-Rao lower bound for Poisson noise.

All functions take and return arrays of the input's namespace (NumPy, CuPy,
torch).  Positions come out in pixels; multiply by the pixel size for pm (see
:func:`stemscale.fit.refine_positions`, which does it).
"""

from __future__ import annotations

from typing import Any, Sequence

from array_api_compat import array_namespace

from ..errors import InputError
from ._lm_portable import accumulate, pivot_epsilon, solve_scaled
from .models import GaussianModel, evaluate, get_model

__all__ = ["fisher_information", "crlb", "covariance", "standard_errors"]


def _prep(params: Any, model, window_shape, fit_mask):
    m = get_model(model)
    xp = array_namespace(params)
    if not xp.isdtype(params.dtype, "real floating"):
        params = xp.astype(params, xp.float64)
    if len(params.shape) != 2 or params.shape[1] != m.n_parameters:
        raise InputError(
            f"params must be (n, {m.n_parameters}) for {m.name}, got {tuple(params.shape)}"
        )
    free = [True] * m.n_parameters if fit_mask is None else [bool(v) for v in fit_mask]
    if len(free) != m.n_parameters:
        raise InputError(f"fit_mask needs {m.n_parameters} entries, got {len(free)}")
    return xp, m, params, tuple(int(v) for v in window_shape), free


def _inverse(xp: Any, H: Any, free: list[bool]) -> Any:
    """Inverse of every SPD matrix of the batch over its free block; NaN where singular."""
    n, P = H.shape[0], H.shape[1]
    eps = pivot_epsilon(H.dtype == xp.float64)
    zeros = xp.zeros((n,), dtype=H.dtype)
    cols = []
    okall = None
    for k in range(P):
        e = xp.stack([xp.ones_like(zeros) if j == k else zeros for j in range(P)], axis=1)
        # solve_scaled returns S z with (S H S) z = S e, i.e. H^-1 e restricted to free
        col, ok = solve_scaled(xp, H, e, zeros, free, eps)
        cols.append(col)
        okall = ok if okall is None else okall & ok
    inv = xp.stack(cols, axis=2)  # fails for P == 0, so the loop has set okall below
    assert okall is not None
    nan = xp.full_like(inv, float("nan"))
    return xp.where(okall[:, None, None], inv, nan)


def fisher_information(params: Any, model: str | GaussianModel, window_shape: tuple[int, int],
                       ) -> Any:
    """Poisson Fisher information ``sum_k J_k J_k^T / f_k`` of the expected windows ``f(params)``.

    Returns ``(n, P, P)``; NaN rows where the model is not positive everywhere.
    """
    xp, m, params, shape, _ = _prep(params, model, window_shape, None)
    f, jac = evaluate(xp, m, params, shape)
    pos = xp.all(f > 0, axis=1)
    fs = xp.where(f > 0, f, xp.ones_like(f))
    info = xp.matmul(xp.permute_dims(jac, (0, 2, 1)), jac / fs[:, :, None])
    return xp.where(pos[:, None, None], info, xp.full_like(info, float("nan")))


def crlb(params: Any, model: str | GaussianModel, window_shape: tuple[int, int], *,
         fit_mask: Sequence[bool] | None = None) -> Any:
    """Cramér-Rao lower bound on the standard deviation of each parameter, Poisson noise.

    ``params`` are the true (or fitted) parameters in counts; the bound is the
    square root of the diagonal of the inverse Fisher information (over the
    free parameters; fixed ones get 0).  Returns ``(n, P)`` in parameter units
    (pixels for positions and widths).
    """
    xp, m, params, shape, free = _prep(params, model, window_shape, fit_mask)
    inv = _inverse(xp, fisher_information(params, m, shape), free)
    return standard_errors(inv)


def covariance(params: Any, data: Any, model: str | GaussianModel, window_shape: tuple[int, int],
               *, estimator: str = "lse", weights: Any | None = None, noise: str | None = None,
               fit_mask: Sequence[bool] | None = None) -> Any:
    """Covariance matrix of the fitted parameters of every fit.

    Parameters
    ----------
    params
        ``(n, P)`` fitted parameters.
    data
        ``(n, h * w)`` or ``(n, h, w)`` windows that were fitted.
    estimator
        ``"mle"``: inverse Fisher information at the fit (Poisson noise).
        ``"lse"``: depends on ``noise``.
    noise
        For ``lse``: ``"poisson"`` (data are counts, variance = model): the
        sandwich ``H^-1 (J^T W diag(f) W J) H^-1``; ``"gaussian"``: with
        ``weights`` taken as ``1 / variance`` the inverse ``H^-1`` of
        ``H = J^T W J``, without weights ``H^-1 * chi2 / (M - P)`` (as
        ``scipy.optimize.curve_fit``).  Default ``"gaussian"`` for ``lse``.
    fit_mask
        Parameters held fixed get zero rows and columns.

    Returns
    -------
    ``(n, P, P)`` array; NaN for fits whose curvature is singular.
    """
    xp, m, params, shape, free = _prep(params, model, window_shape, fit_mask)
    n = params.shape[0]
    data = xp.reshape(xp.asarray(data, dtype=params.dtype), (n, -1))
    if weights is not None:
        weights = xp.reshape(xp.asarray(weights, dtype=params.dtype), (n, -1))
    if estimator == "mle":
        if weights is not None:
            raise InputError("weights are only used by estimator='lse'")
        return _inverse(xp, fisher_information(params, m, shape), free)
    if estimator != "lse":
        raise InputError(f"estimator must be 'lse' or 'mle', got {estimator!r}")
    noise = "gaussian" if noise is None else noise
    f, jac = evaluate(xp, m, params, shape)
    chi2, _, H = accumulate(xp, data, weights, f, jac, mle=False)
    hinv = _inverse(xp, H, free)
    if noise == "gaussian":
        if weights is not None:
            return hinv
        dof = data.shape[1] - sum(free)
        if dof <= 0:
            raise InputError(
                "covariance with noise='gaussian' needs more pixels than free parameters"
            )
        return hinv * (chi2 / dof)[:, None, None]
    if noise != "poisson":
        raise InputError(f"noise must be 'poisson' or 'gaussian', got {noise!r}")
    wj = jac if weights is None else jac * weights[:, :, None]
    fpos = xp.where(f > 0, f, xp.zeros_like(f))
    meat = xp.matmul(xp.permute_dims(wj, (0, 2, 1)), wj * fpos[:, :, None])
    return xp.matmul(xp.matmul(hinv, meat), hinv)


def standard_errors(cov: Any) -> Any:
    """Square roots of the diagonals of a batch of covariance matrices, ``(n, P)``."""
    xp = array_namespace(cov)
    diag = xp.stack([cov[:, k, k] for k in range(cov.shape[1])], axis=1)
    return xp.sqrt(xp.where(diag >= 0, diag, xp.full_like(diag, float("nan"))))
