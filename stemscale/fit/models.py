"""Gaussian peak models with analytic Jacobians, written against the array API.

Parameter orders follow Gpufit so that users can move between the two:

=====================  ==============================================
model                  parameters
=====================  ==============================================
``gauss2d``            amplitude, x0, y0, sigma, background
``gauss2d_elliptic``   amplitude, x0, y0, sigma_x, sigma_y, background
``gauss2d_rotated``    amplitude, x0, y0, sigma_x, sigma_y, background,
                       theta
=====================  ==============================================

Coordinates are window pixels: the centre of window pixel ``[i, j]`` is at
``x = j``, ``y = i``; data are flattened row-major (pixel ``k = i * w + j``).
For the rotated model ``theta`` turns the ``sigma_x`` axis counter-clockwise
from +x (towards +y).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, overload

from ..errors import InputError

__all__ = ["GaussianModel", "MODELS", "get_model", "evaluate"]


@dataclass(frozen=True)
class GaussianModel:
    """Description of one model: its code for the compiled kernels and parameter layout."""

    name: str
    code: int
    parameter_names: tuple[str, ...]
    sigma_indices: tuple[int, ...]
    amplitude_index: int = 0
    x_index: int = 1
    y_index: int = 2

    @property
    def n_parameters(self) -> int:
        return len(self.parameter_names)

    @property
    def background_index(self) -> int:
        return self.parameter_names.index("background")


MODELS: dict[str, GaussianModel] = {
    m.name: m
    for m in (
        GaussianModel("gauss2d", 0, ("amplitude", "x0", "y0", "sigma", "background"), (3,)),
        GaussianModel(
            "gauss2d_elliptic", 1,
            ("amplitude", "x0", "y0", "sigma_x", "sigma_y", "background"), (3, 4),
        ),
        GaussianModel(
            "gauss2d_rotated", 2,
            ("amplitude", "x0", "y0", "sigma_x", "sigma_y", "background", "theta"), (3, 4),
        ),
    )
}


def get_model(model: str | GaussianModel) -> GaussianModel:
    """Look a model up by name; raise :class:`InputError` naming the choices."""
    if isinstance(model, GaussianModel):
        return model
    try:
        return MODELS[model]
    except (KeyError, TypeError):
        raise InputError(
            f"model must be one of {sorted(MODELS)}, got {model!r}"
        ) from None


@overload
def evaluate(xp: Any, model: str | GaussianModel, params: Any, window_shape: tuple[int, int],
             jacobian: Literal[True] = ...) -> tuple[Any, Any]: ...


@overload
def evaluate(xp: Any, model: str | GaussianModel, params: Any, window_shape: tuple[int, int],
             jacobian: bool) -> tuple[Any, Any | None]: ...


def evaluate(xp: Any, model: str | GaussianModel, params: Any, window_shape: tuple[int, int],
             jacobian: bool = True) -> tuple[Any, Any | None]:
    """Model values and Jacobian for a batch of parameter vectors.

    Parameters
    ----------
    xp
        Array namespace (``array_api_compat.array_namespace(params)``).
    model
        Model name or :class:`GaussianModel`.
    params
        ``(n_fits, n_parameters)`` array.
    window_shape
        ``(h, w)`` of the window.
    jacobian
        Also return the Jacobian.

    Returns
    -------
    f : array ``(n_fits, h * w)``
    jac : array ``(n_fits, h * w, n_parameters)`` or ``None``
    """
    m = get_model(model)
    h, w = window_shape
    n = params.shape[0]
    dtype = params.dtype
    dev = getattr(params, "device", None)
    kw = {"dtype": dtype} if dev is None else {"dtype": dtype, "device": dev}
    xs = xp.arange(w, **kw)
    ys = xp.arange(h, **kw)
    amp = params[:, 0:1]
    x0 = params[:, 1:2]
    y0 = params[:, 2:3]
    dx = xs[None, :] - x0                       # (n, w)
    dy = ys[None, :] - y0                       # (n, h)
    if m.code == 2:
        sx, sy, bg, th = params[:, 3:4], params[:, 4:5], params[:, 5:6], params[:, 6:7]
        dxg = xp.reshape(xp.broadcast_to(dx[:, None, :], (n, h, w)), (n, h * w))
        dyg = xp.reshape(xp.broadcast_to(dy[:, :, None], (n, h, w)), (n, h * w))
        c, s = xp.cos(th), xp.sin(th)
        u = dxg * c + dyg * s
        v = -dxg * s + dyg * c
        isx2, isy2 = 1.0 / (sx * sx), 1.0 / (sy * sy)
        g = xp.exp(-0.5 * (u * u * isx2 + v * v * isy2))
        f = amp * g + bg
        if not jacobian:
            return f, None
        ag = amp * g
        cols = [
            g,
            ag * (u * c * isx2 - v * s * isy2),
            ag * (u * s * isx2 + v * c * isy2),
            ag * u * u * isx2 / sx,
            ag * v * v * isy2 / sy,
            xp.ones_like(g),
            ag * u * v * (isy2 - isx2),
        ]
        return f, xp.stack(cols, axis=-1)

    if m.code == 0:
        sx = sy = params[:, 3:4]
        bg = params[:, 4:5]
    else:
        sx, sy, bg = params[:, 3:4], params[:, 4:5], params[:, 5:6]
    isx2, isy2 = 1.0 / (sx * sx), 1.0 / (sy * sy)
    # The Gaussian is separable: w + h exponentials per fit instead of w * h.
    ex = xp.exp(-0.5 * dx * dx * isx2)          # (n, w)
    ey = xp.exp(-0.5 * dy * dy * isy2)          # (n, h)
    g = xp.reshape(ey[:, :, None] * ex[:, None, :], (n, h * w))
    f = amp * g + bg
    if not jacobian:
        return f, None
    ag = amp * g
    dxg = xp.reshape(xp.broadcast_to(dx[:, None, :], (n, h, w)), (n, h * w))
    dyg = xp.reshape(xp.broadcast_to(dy[:, :, None], (n, h, w)), (n, h * w))
    jx = ag * dxg * isx2
    jy = ag * dyg * isy2
    if m.code == 0:
        cols = [g, jx, jy, (jx * dxg + jy * dyg) / sx, xp.ones_like(g)]
    else:
        cols = [g, jx, jy, jx * dxg / sx, jy * dyg / sy, xp.ones_like(g)]
    return f, xp.stack(cols, axis=-1)
