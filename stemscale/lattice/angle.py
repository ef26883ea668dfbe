"""Orientation of a hexagonal lattice from the sixfold symmetry of its power spectrum.

The first-order reflections of a 2H-MX2 lattice with constant ``a`` lie on a
ring ``|k| = 2 / (sqrt(3) a)`` at 30 degrees (modulo 60) from the real-space
lattice vector ``a1``; the sixfold circular mean of the power in an annulus
around that ring gives the lattice angle modulo 60 degrees.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

from ..errors import InputError

__all__ = ["angle_from_spectrum", "lattice_angle"]


def _edge_window(shape: tuple[int, int], edge_px: float) -> np.ndarray:
    """Raised-cosine apodisation over ``edge_px`` at the borders of a ``shape`` image.

    The same weights as :func:`stemscale.average.registration.registration_window`
    without a central mask (the lattice package sits below ``stemscale.average``).
    """
    h, w = shape
    yy = np.arange(h)[:, None]
    xx = np.arange(w)[None, :]
    edge = np.minimum(np.minimum(yy, h - 1 - yy), np.minimum(xx, w - 1 - xx)).astype(float)
    if edge_px <= 0:
        return (edge >= 0).astype(float)
    t = np.clip(edge / edge_px, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * t)


def angle_from_spectrum(power: np.ndarray, period_px: float, width: float = 0.15) -> np.ndarray:
    """Lattice angle (degrees, modulo 60, in [-30, 30)) of each of a stack of power spectra.

    Parameters
    ----------
    power
        ``(n, h, w)`` power spectra in :func:`numpy.fft.fft2` order (zero
        frequency at ``[0, 0]``).
    period_px
        Lattice constant ``a`` in pixels.
    width
        Relative half-width of the annulus around ``|k| = 2 / (sqrt(3) a)``.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` angles of ``a1``, counter-clockwise from +x in (x, y) pixel
        coordinates.
    """
    n, h, w = power.shape
    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.fftfreq(w)[None, :]
    k = np.hypot(kx, ky)
    k0 = 2.0 / (np.sqrt(3.0) * float(period_px))
    ring = np.abs(k - k0) < width * k0
    # reciprocal vectors sit at 30 degrees (mod 60) from the real-space a1 direction;
    # ky is image rows (y down is +y in pixel coordinates, same convention as x, y)
    theta = np.arctan2(ky, kx)
    z = (power * ring * np.exp(6j * theta)).sum(axis=(1, 2))
    return (np.degrees(np.angle(z)) / 6.0 - 30.0 + 30.0) % 60.0 - 30.0


def lattice_angle(images: np.ndarray, period_px: float, *, width: float = 0.15) -> np.ndarray:
    """Orientation (degrees, modulo 60, in [-30, 30)) of a hexagonal lattice in each image.

    The angle is that of the lattice's nearest-neighbour direction (``a1``)
    measured counter-clockwise from +x in (x, y) pixel coordinates; it comes
    from the sixfold circular mean of the power spectrum in an annulus
    around the first-order reflections (|k| = 2 / (sqrt(3) a)).

    Parameters
    ----------
    images
        ``(h, w)`` or ``(n, h, w)``.
    period_px
        Lattice constant ``a`` in pixels.
    width
        Relative half-width of the annulus.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` angles, or one (a NumPy scalar) for a single image.
    """
    img = np.asarray(images, dtype=np.float64)
    single = img.ndim == 2
    if single:
        img = img[None]
    if img.ndim != 3:
        raise InputError(f"images must be (h, w) or (n, h, w), got shape {img.shape}")
    n, h, w = img.shape
    win = _edge_window((h, w), edge_px=min(h, w) / 4)
    data = (img - img.mean(axis=(1, 2), keepdims=True)) * win
    power = np.abs(sfft.fft2(data, axes=(-2, -1))) ** 2
    angle = angle_from_spectrum(power, period_px, width)
    return angle[0] if single else angle
