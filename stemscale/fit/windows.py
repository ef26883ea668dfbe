"""Cut square or rectangular windows around atom columns, all at once."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["extract_windows", "window_origins"]


def _shape(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        try:
            h, w = (int(v) for v in size)
        except (TypeError, ValueError):
            raise InputError(f"size must be an int or (h, w), got {size!r}") from None
    if h < 2 or w < 2:
        raise InputError(f"window size must be at least 2 x 2 pixels, got {(h, w)}")
    return h, w


def window_origins(positions_xy: Any, size: int | tuple[int, int],
                   image_shape: tuple[int, int], *, offset_xy: tuple[float, float] = (0.0, 0.0),
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Integer window origins (image column, row of window pixel ``[0, 0]``) and edge flags.

    The window is placed so that the position lies as close as possible to its
    centre; windows that would cross the image edge are shifted inside and
    flagged.  ``offset_xy`` is subtracted from the positions first (the global
    coordinate of the block's pixel ``[0, 0]``).
    """
    h, w = _shape(size)
    pos = np.asarray(positions_xy, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 2:
        raise InputError(
            f"positions_xy must be an (n, 2) array of x, y pixel positions, got shape {pos.shape}"
        )
    if not np.all(np.isfinite(pos)):
        bad = int(np.flatnonzero(~np.all(np.isfinite(pos), axis=1))[0])
        raise InputError(f"positions_xy holds NaN/Inf (first at row {bad})")
    ny, nx = (int(v) for v in image_shape)
    if ny < h or nx < w:
        raise InputError(f"image of shape {(ny, nx)} is smaller than the {h}x{w} window")
    x = pos[:, 0] - float(offset_xy[0])
    y = pos[:, 1] - float(offset_xy[1])
    ox = np.floor(x - (w - 1) / 2.0 + 0.5).astype(np.int64)
    oy = np.floor(y - (h - 1) / 2.0 + 0.5).astype(np.int64)
    edge = (ox < 0) | (oy < 0) | (ox > nx - w) | (oy > ny - h)
    ox = np.clip(ox, 0, nx - w)
    oy = np.clip(oy, 0, ny - h)
    return np.stack([ox, oy], axis=1), edge


def extract_windows(image: Any, positions_xy: Any, size: int | tuple[int, int], *,
                    offset_xy: tuple[float, float] = (0.0, 0.0),
                    ) -> tuple[Any, np.ndarray, np.ndarray]:
    """Windows of ``image`` around every position, by one gather.

    Parameters
    ----------
    image
        2-D array (NumPy, CuPy or torch; a Dask block inside ``map_blocks``, or
        an :class:`xarray.DataArray`).
    positions_xy
        ``(n, 2)`` x, y positions in pixels (sub-pixel allowed).
    size
        Window edge ``s`` or ``(h, w)``.
    offset_xy
        Pixel coordinates of ``image[0, 0]`` in the frame the positions are
        given in (e.g. a block's global offset); origins are returned in that
        frame too.

    Returns
    -------
    windows : ``(n, h, w)`` array of the image's type
    origins_xy : ``(n, 2)`` int64 column, row of each window's pixel ``[0, 0]``
        (add them to window coordinates to get image coordinates).
    edge : ``(n,)`` bool, True where the window had to be shifted to stay inside
        the image (the position is then off-centre, or outside the window).
    """
    if hasattr(image, "dims") and hasattr(image, "data"):     # xarray.DataArray
        image = image.data
    if hasattr(image, "compute") and hasattr(image, "chunks"):  # a lazy Dask array
        image = image.compute()
    if len(image.shape) != 2:
        raise InputError(f"image must be 2-D (y, x), got shape {tuple(image.shape)}")
    h, w = _shape(size)
    origins, edge = window_origins(positions_xy, (h, w), tuple(image.shape), offset_xy=offset_xy)
    rows = origins[:, 1:2] + np.arange(h)[None, :]          # (n, h)
    cols = origins[:, 0:1] + np.arange(w)[None, :]          # (n, w)
    flat = (rows[:, :, None] * image.shape[1] + cols[:, None, :]).reshape(-1)
    mod = type(image).__module__.split(".")[0]
    if mod == "torch":
        import torch

        idx = torch.as_tensor(flat, device=image.device)
        windows = image.reshape(-1)[idx].reshape(len(origins), h, w)
    elif mod == "cupy":
        import cupy

        windows = image.reshape(-1)[cupy.asarray(flat)].reshape(len(origins), h, w)
    else:
        windows = np.asarray(image).reshape(-1)[flat].reshape(len(origins), h, w)
    ox, oy = offset_xy
    if ox != 0 or oy != 0:
        origins = origins + np.array([int(round(ox)), int(round(oy))], dtype=np.int64)
    return windows, origins, edge
