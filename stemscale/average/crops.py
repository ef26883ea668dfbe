"""Cut square crops around integer centres, with a margin for sub-pixel shifting."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["extract_crops", "central", "rot180"]


def extract_crops(
    image: Any,
    cx: np.ndarray,
    cy: np.ndarray,
    crop: int,
    *,
    margin: int = 0,
    origin: tuple[int, int] = (0, 0),
    dtype: Any = np.float32,
) -> np.ndarray:
    """Crops of edge ``crop + 2 * margin`` with the centre on pixel ``crop // 2 + margin``.

    Parameters
    ----------
    image
        2-D array ``[y, x]`` (a NumPy array, or anything ``np.asarray`` takes).
    cx, cy
        Integer global pixel columns / rows of the crop centres.
    crop
        Edge of the final crop in pixels (even).
    margin
        Extra pixels on each side (consumed by sub-pixel shifting).
    origin
        Global ``(y, x)`` of ``image[0, 0]`` (a haloed block of a mosaic).
    dtype
        Output dtype.

    Returns
    -------
    ``(n, crop + 2 margin, crop + 2 margin)`` array.

    Raises
    ------
    InputError
        A crop would leave the image.
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise InputError(f"image must be 2-D (y, x), got shape {img.shape}")
    cx = np.asarray(cx, dtype=np.int64) - int(origin[1])
    cy = np.asarray(cy, dtype=np.int64) - int(origin[0])
    if cx.shape != cy.shape or cx.ndim != 1:
        raise InputError("cx and cy must be 1-D arrays of the same length")
    size = int(crop) + 2 * int(margin)
    lo = int(crop) // 2 + int(margin)
    x0, y0 = cx - lo, cy - lo
    h, w = img.shape
    bad = (x0 < 0) | (y0 < 0) | (x0 + size > w) | (y0 + size > h)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"crop {k} centred at global (x, y) = ({cx[k] + origin[1]}, {cy[k] + origin[0]}) "
            f"with edge {size} px leaves the image window of shape {img.shape} at origin {tuple(origin)}"
        )
    r = np.arange(size)
    rows = y0[:, None] + r[None, :]
    cols = x0[:, None] + r[None, :]
    return img[rows[:, :, None], cols[:, None, :]].astype(dtype, copy=False)


def central(stack: np.ndarray, crop: int) -> np.ndarray:
    """The central ``crop x crop`` part of crops that carry a margin."""
    m = (stack.shape[-1] - int(crop)) // 2
    if m < 0:
        raise InputError(f"crops of edge {stack.shape[-1]} are smaller than {crop}")
    return stack[..., m : m + crop, m : m + crop]


def rot180(stack: np.ndarray) -> np.ndarray:
    """Rotate crops by 180 degrees about their centre pixel ``size // 2`` (exact, no interpolation).

    For an even edge the centre pixel is not the array's midpoint, so the
    flipped array is rolled by one pixel; the first row and column (which
    would come from outside the crop) repeat the edge, so keep a margin of
    at least one pixel and use :func:`central` afterwards.
    """
    flipped = stack[..., ::-1, ::-1]
    n = stack.shape[-1]
    if n % 2:
        return flipped.copy()
    out = np.empty_like(stack)
    out[..., 1:, 1:] = flipped[..., :-1, :-1]
    out[..., 0, 1:] = flipped[..., 0, :-1]
    out[..., 1:, 0] = flipped[..., :-1, 0]
    out[..., 0, 0] = flipped[..., 0, 0]
    return out
