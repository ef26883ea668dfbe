"""Atom-column candidates without a network, and snapping candidates to image maxima.

:func:`find_peaks` is the classical detector (local maxima of the smoothed
image; columns only, no defect classes); :func:`snap_to_maxima` moves any
candidate to the brightest nearby pixel, so that fits start from a position
that depends on the image alone.  Both decide from a bounded neighbourhood
(:func:`peaks_context`), which is what makes block-wise runs exact.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from ..lattice import column_spacing

__all__ = ["find_peaks", "peaks_context", "snap_to_maxima"]

#: Default column spacing (Å): WSe2's a / sqrt(3).
WSE2_COLUMN_SPACING_A = column_spacing("WSe2")


def snap_to_maxima(image: np.ndarray, x: np.ndarray, y: np.ndarray, radius: int,
                   sigma: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Move candidate positions to the brightest pixel of the smoothed image nearby.

    The result depends only on the image within ``radius + 4 sigma`` of each
    candidate, never on where the candidate came from, so detections that differ
    slightly between two runs snap to the same integer start.
    """
    smooth = ndimage.gaussian_filter(np.asarray(image, dtype=np.float64), sigma, mode="nearest")
    ny, nx = smooth.shape
    xi = np.clip(np.rint(x).astype(int), 0, nx - 1)
    yi = np.clip(np.rint(y).astype(int), 0, ny - 1)
    offsets = np.arange(-radius, radius + 1)
    dy, dx = np.meshgrid(offsets, offsets, indexing="ij")
    inside = dy**2 + dx**2 <= radius**2
    dy, dx = dy[inside], dx[inside]
    # Hill-climb: repeat the local arg-max until no candidate moves (a few rounds at most).
    for _ in range(8):
        yy = np.clip(yi[:, None] + dy[None, :], 0, ny - 1)
        xx = np.clip(xi[:, None] + dx[None, :], 0, nx - 1)
        best = np.argmax(smooth[yy, xx], axis=1)
        new_y, new_x = yy[np.arange(len(yi)), best], xx[np.arange(len(xi)), best]
        if np.array_equal(new_y, yi) and np.array_equal(new_x, xi):
            break
        yi, xi = new_y, new_x
    return xi.astype(float), yi.astype(float)


def _peak_geometry(pixel_size_angstrom: float,
                   column_spacing_angstrom: float) -> tuple[float, float, int]:
    spacing_px = column_spacing_angstrom / pixel_size_angstrom
    sigma = max(0.5, 0.12 * spacing_px)
    size = int(2 * spacing_px) | 1
    return spacing_px, sigma, size


def peaks_context(pixel_size_angstrom: float, column_spacing_angstrom: float = WSE2_COLUMN_SPACING_A) -> int:
    """Pixels of image around a point that :func:`find_peaks` looks at to decide it."""
    _, sigma, size = _peak_geometry(pixel_size_angstrom, column_spacing_angstrom)
    # smoothing, then two window filters (background minimum, local contrast maximum)
    return int(np.ceil(4 * sigma)) + 2 * (size // 2) + 1


def find_peaks(image: np.ndarray, pixel_size_angstrom: float,
               column_spacing_angstrom: float = WSE2_COLUMN_SPACING_A, min_contrast: float = 0.25) -> pd.DataFrame:
    """Atom-column candidates as local maxima of the smoothed image (no model needed).

    Every decision is local (within :func:`peaks_context` pixels), so a block with
    that much halo finds exactly what a whole-image run finds.

    Parameters
    ----------
    image
        2-D image.
    pixel_size_angstrom
        Pixel size in Å.
    column_spacing_angstrom
        Nearest distance between projected columns (:func:`stemscale.lattice.column_spacing`).
    min_contrast
        A peak must rise above its local background by this fraction of the
        strongest peak contrast nearby.
    """
    from skimage.feature import peak_local_max

    spacing_px, sigma, size = _peak_geometry(pixel_size_angstrom, column_spacing_angstrom)
    smooth = ndimage.gaussian_filter(np.asarray(image, dtype=np.float64), sigma, mode="nearest")
    contrast = smooth - ndimage.minimum_filter(smooth, size=size, mode="nearest")
    local_max = ndimage.maximum_filter(contrast, size=size, mode="nearest")
    peaks = peak_local_max(contrast, min_distance=max(1, int(0.45 * spacing_px)),
                           exclude_border=False)
    if len(peaks):
        keep = contrast[peaks[:, 0], peaks[:, 1]] >= min_contrast * local_max[peaks[:, 0], peaks[:, 1]]
        keep &= contrast[peaks[:, 0], peaks[:, 1]] > 0
        peaks = peaks[keep]
    y, x = peaks[:, 0].astype(float), peaks[:, 1].astype(float)
    return pd.DataFrame({"x_px": x, "y_px": y, "site": "?", "label": "",
                         "score": contrast[peaks[:, 0], peaks[:, 1]].astype(np.float32)})
