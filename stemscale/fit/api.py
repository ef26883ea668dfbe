"""``fit_batch``: many small independent Gaussian fits at once, Gpufit-style."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from ._arrays import bounds_numpy as _bounds_numpy
from ._arrays import to_numpy as _to_numpy
from .models import GaussianModel, get_model
from .states import FitState

__all__ = ["FitResult", "fit_batch", "available_backends"]

_BACKENDS = ("auto", "numpy", "numba", "torch", "cupy", "portable")
_ESTIMATORS = ("lse", "mle")


@dataclass
class FitResult:
    """Outputs of :func:`fit_batch` (arrays live on the input's device).

    Attributes
    ----------
    parameters
        ``(n_fits, n_parameters)`` fitted values in :attr:`parameter_names`
        order (positions in window pixels; NaN for ``INVALID_INPUT`` and
        ``DIVERGED`` fits).
    states
        ``(n_fits,)`` int32 codes of :class:`~stemscale.fit.FitState`.
    chi_square
        ``(n_fits,)`` final objective: weighted sum of squared residuals
        (``lse``) or Poisson deviance (``mle``).
    iterations
        ``(n_fits,)`` number of trial steps taken.
    """

    parameters: Any
    states: Any
    chi_square: Any
    iterations: Any
    model: str
    estimator: str
    backend: str
    window_shape: tuple[int, int]
    parameter_names: tuple[str, ...]
    execution_time: float = 0.0
    fit_mask: tuple[bool, ...] = field(default=())

    @property
    def n_fits(self) -> int:
        return int(self.parameters.shape[0])

    def state_counts(self) -> dict[str, int]:
        """How many fits ended in each state."""
        s = _to_numpy(self.states)
        return {st.name: int(np.count_nonzero(s == int(st))) for st in FitState}

    def to_numpy(self) -> "FitResult":
        """A copy with every array as a NumPy array."""
        return FitResult(
            _to_numpy(self.parameters), _to_numpy(self.states), _to_numpy(self.chi_square),
            _to_numpy(self.iterations), self.model, self.estimator, self.backend,
            self.window_shape, self.parameter_names, self.execution_time, self.fit_mask,
        )


def _array_kind(a: Any) -> str:
    mod = type(a).__module__.split(".")[0]
    if mod == "torch":
        return "torch"
    if mod == "cupy":
        return "cupy"
    return "numpy"


def available_backends() -> list[str]:
    """Backends usable on this machine (``cupy`` only with a working GPU)."""
    found = ["numpy"]
    try:
        from . import _lm_numba  # noqa: F401

        found.append("numba")
    except ImportError:
        pass
    try:
        import torch  # noqa: F401

        found.append("torch")
    except ImportError:
        pass
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            found.append("cupy")
    except Exception:
        pass
    return found


def fit_batch(
    data: Any,
    initial: Any,
    *,
    model: str | GaussianModel = "gauss2d_elliptic",
    estimator: str = "lse",
    weights: Any | None = None,
    offset: Any | None = None,
    bounds: tuple[Any, Any] | None = None,
    fit_mask: Sequence[bool] | None = None,
    max_iterations: int = 25,
    tolerance: float = 1e-4,
    backend: str = "auto",
    window_shape: tuple[int, int] | None = None,
) -> FitResult:
    """Fit a Gaussian peak to every window of a batch by Levenberg-Marquardt.

    Parameters
    ----------
    data
        ``(n_fits, n_pixels)`` or ``(n_fits, h, w)`` windows (NumPy, torch or
        CuPy array).  Rows are independent fits.
    initial
        ``(n_fits, n_parameters)`` start values, in the model's parameter order
        (see :mod:`stemscale.fit.models`); e.g. from
        :func:`stemscale.fit.estimate_initial`.
    model
        ``"gauss2d"``, ``"gauss2d_elliptic"`` or ``"gauss2d_rotated"``.
    estimator
        ``"lse"`` (weighted least squares) or ``"mle"`` (Poisson maximum
        likelihood; data must be counts >= 0).
    weights
        ``(n_fits, n_pixels)`` least-squares weights, e.g. ``1 / variance``
        (``lse`` only).
    offset
        ``(n_fits, n_pixels)`` fixed values added to the model, e.g. the fitted
        tails of neighbouring columns (see :func:`stemscale.fit.fit_with_neighbours`).
    bounds
        ``(lower, upper)``, each ``(n_parameters,)`` or ``(n_fits,
        n_parameters)``; ``-inf`` / ``inf`` (or ``None``) leave a side free.
        Steps are projected onto the box.
    fit_mask
        ``n_parameters`` booleans: False keeps that parameter at its start value.
    max_iterations, tolerance
        Stopping rules (see :mod:`stemscale.fit._lm_portable`).
    backend
        ``"auto"`` picks the compiled CPU kernel for NumPy input, the fused GPU
        kernel for CuPy input, and the portable implementation for torch.
        ``"numba"``, ``"numpy"`` / ``"portable"`` (array-API implementation on
        the input's own namespace), ``"torch"`` (converts NumPy input to torch
        CPU tensors) and ``"cupy"`` force one.
    window_shape
        ``(h, w)``; needed when ``data`` is 2-D and the windows are not square.

    Returns
    -------
    FitResult

    Raises
    ------
    InputError
        Wrong shapes, unknown model / estimator / backend, or weights with ``mle``.
    """
    m = get_model(model)
    P = m.n_parameters
    if estimator not in _ESTIMATORS:
        raise InputError(f"estimator must be one of {_ESTIMATORS}, got {estimator!r}")
    if backend not in _BACKENDS:
        raise InputError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    if estimator == "mle" and weights is not None:
        raise InputError("weights are only used by estimator='lse'; the Poisson MLE takes none")
    if not (isinstance(max_iterations, (int, np.integer)) and max_iterations >= 1):
        raise InputError(f"max_iterations must be a positive integer, got {max_iterations!r}")
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance > 0):
        raise InputError(f"tolerance must be a positive number, got {tolerance!r}")

    kind = _array_kind(data)
    ndim = len(data.shape)
    if ndim == 3:
        if window_shape is None:
            window_shape = (int(data.shape[1]), int(data.shape[2]))
        if tuple(window_shape) != tuple(data.shape[1:]):
            raise InputError(
                f"window_shape {window_shape} does not match data of shape {tuple(data.shape)}"
            )
        data = data.reshape((data.shape[0], window_shape[0] * window_shape[1]))
    elif ndim == 2:
        if window_shape is None:
            side = math.isqrt(int(data.shape[1]))
            if side * side != data.shape[1]:
                raise InputError(
                    f"data has {data.shape[1]} pixels per fit, not a square; "
                    "pass window_shape=(h, w)"
                )
            window_shape = (side, side)
    else:
        raise InputError(
            f"data must be (n_fits, n_pixels) or (n_fits, h, w), got shape {tuple(data.shape)}"
        )
    h, w = (int(v) for v in window_shape)
    if h * w != data.shape[1]:
        raise InputError(
            f"window_shape {(h, w)} has {h * w} pixels but data rows have {data.shape[1]}"
        )
    if h * w < P:
        raise InputError(f"a {h}x{w} window has fewer pixels than the {P} parameters of {m.name}")
    n = int(data.shape[0])
    if tuple(initial.shape) != (n, P):
        raise InputError(
            f"initial must have shape ({n}, {P}) for model {m.name}, got {tuple(initial.shape)}"
        )
    if fit_mask is None:
        free = [True] * P
    else:
        free = [bool(v) for v in fit_mask]
        if len(free) != P:
            raise InputError(f"fit_mask needs {P} entries for model {m.name}, got {len(free)}")
    for name, arr in (("weights", weights), ("offset", offset)):
        if arr is not None and tuple(arr.shape) not in ((n, h * w), (n, h, w)):
            raise InputError(
                f"{name} must have the shape of data ({n}, {h * w}), got {tuple(arr.shape)}"
            )

    if backend == "auto":
        backend = {"numpy": "numba", "torch": "torch", "cupy": "cupy"}[kind]
        if backend == "numba":
            try:
                from . import _lm_numba  # noqa: F401
            except ImportError:
                backend = "numpy"
    t0 = time.perf_counter()
    if backend == "numba":
        params, states, chi2, iters = _run_numba(data, initial, m, (h, w), estimator, weights,
                                                 offset, bounds, free, max_iterations, tolerance)
    elif backend == "cupy":
        from ._lm_cuda import lm_cuda

        params, states, chi2, iters = lm_cuda(
            data, initial, model=m, window_shape=(h, w), mle=estimator == "mle", weights=weights,
            offsets=offset, bounds=bounds, free=free, max_iterations=int(max_iterations),
            tolerance=float(tolerance),
        )
    else:
        if backend == "torch" and kind == "numpy":
            import torch

            data = torch.from_numpy(np.ascontiguousarray(data))
            initial = torch.from_numpy(np.ascontiguousarray(initial))
            weights = None if weights is None else torch.from_numpy(np.ascontiguousarray(weights))
            offset = None if offset is None else torch.from_numpy(np.ascontiguousarray(offset))
        params, states, chi2, iters = _run_portable(data, initial, m, (h, w), estimator, weights,
                                                    offset, bounds, free, max_iterations, tolerance)
    elapsed = time.perf_counter() - t0
    return FitResult(params, states, chi2, iters, m.name, estimator, backend, (h, w),
                     m.parameter_names, elapsed, tuple(free))


def _run_numba(data, initial, m, shape, estimator, weights, offset, bounds, free, max_it, tol):
    from ._lm_numba import lm_numba

    data = np.asarray(data)
    if data.dtype not in (np.float32, np.float64):
        data = data.astype(np.float64)
    init = np.ascontiguousarray(initial, dtype=np.float64)
    lo, hi = _bounds_numpy(bounds, data.shape[0], m.n_parameters, np.float64)
    if weights is not None:
        weights = np.ascontiguousarray(np.asarray(weights, dtype=np.float64).reshape(data.shape))
    if offset is not None:
        offset = np.ascontiguousarray(np.asarray(offset, dtype=np.float64).reshape(data.shape))
    return lm_numba(np.ascontiguousarray(data), init, model=m, window_shape=shape,
                    mle=estimator == "mle", weights=weights, offsets=offset, lower=lo, upper=hi,
                    free=free,
                    max_iterations=int(max_it), tolerance=float(tol))


def _run_portable(data, initial, m, shape, estimator, weights, offset, bounds, free, max_it, tol):
    import array_api_compat

    from ._lm_portable import lm_portable

    xp = array_api_compat.array_namespace(data)
    dtype = data.dtype
    if not xp.isdtype(dtype, "real floating"):
        dtype = xp.float64
        data = xp.astype(data, dtype)
    dev = array_api_compat.device(data)
    init = xp.asarray(initial, dtype=dtype, device=dev)
    if weights is not None:
        weights = xp.reshape(xp.asarray(weights, dtype=dtype, device=dev), tuple(data.shape))
    if offset is not None:
        offset = xp.reshape(xp.asarray(offset, dtype=dtype, device=dev), tuple(data.shape))
    lo_np, hi_np = _bounds_numpy(bounds, data.shape[0], m.n_parameters, np.float64)
    lo = xp.asarray(lo_np, dtype=dtype, device=dev)
    hi = xp.asarray(hi_np, dtype=dtype, device=dev)
    return lm_portable(xp, data, init, model=m, window_shape=shape, mle=estimator == "mle",
                       weights=weights, offsets=offset, lower=lo, upper=hi, free=free,
                       max_iterations=int(max_it), tolerance=float(tol))
