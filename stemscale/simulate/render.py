"""Incoherent ADF image formation on a pixel tile, at exact sub-pixel positions.

The object (a weighted sum of delta functions at the columns' exact
positions) is Fourier-transformed with a type-1 non-uniform FFT (finufft),
multiplied by the probe's transfer function and transformed back.  Only the
modes inside the probe's band (spatial frequencies up to twice the aperture
radius) are computed: the probe intensity holds nothing beyond them, so the
rendered image is the exactly band-limited incoherent image sampled at
pixel centres, with no pixel snapping and no interpolation bias.

A tile is padded by the PSF's support radius (plus the largest scan-line
jitter) and includes every column within that distance, so a pixel's value
depends on its global position only, not on where the tile starts.  Per-line
jitter is applied as an exact sub-pixel shift of each row in Fourier space.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import finufft
import numpy as np
import scipy.fft as sfft

from .probe import ProbeKernel

__all__ = ["render_tile", "tile_margin"]

# Non-uniform FFT accuracy: well below float32 rounding of the image.
NUFFT_EPS = 1e-9


def tile_margin(kernels: Sequence[ProbeKernel], max_jitter_px: float) -> tuple[int, int]:
    """Margins (rows, cols) in pixels of the columns that can reach a tile."""
    r = max(k.radius_px for k in kernels) + 1
    return r, r + int(math.ceil(max_jitter_px))


@lru_cache(maxsize=32)
def _kernel_spectrum(kernel: ProbeKernel, ny: int, nx: int, my: int, mxh: int) -> np.ndarray:
    """The kernel's DFT on an (ny, nx) periodic grid, restricted to the computed modes."""
    r = kernel.radius_px
    full = np.zeros((ny, nx))
    iy = np.arange(-r, r + 1) % ny
    ix = np.arange(-r, r + 1) % nx
    full[np.ix_(iy, ix)] = kernel.values
    spec = sfft.rfft2(full)[:, :mxh]
    hy = my // 2
    return np.concatenate([spec[: hy + 1], spec[ny - hy :]], axis=0)


def _modes(kernels: Sequence[ProbeKernel], ny: int, nx: int) -> tuple[int, int]:
    by = max(k.band[0] for k in kernels)
    bx = max(k.band[1] for k in kernels)
    hy = min(int(math.ceil(by * ny)) + 1, (ny - 1) // 2)
    hx = min(int(math.ceil(bx * nx)) + 1, (nx - 1) // 2)
    return 2 * hy + 1, hx + 1


def render_tile(
    y: np.ndarray,
    x: np.ndarray,
    weights: Sequence[np.ndarray],
    kernels: Sequence[ProbeKernel],
    y0: int,
    x0: int,
    height: int,
    width: int,
    jitter: np.ndarray | None = None,
) -> np.ndarray:
    """Render channels ``sum_a w_a K(p - p_a)`` on pixels [y0, y0+height) x [x0, x0+width).

    Parameters
    ----------
    y, x
        Undistorted-by-jitter pixel positions of the points (any subset that
        includes every point within the kernel support of the tile; others
        are dropped).
    weights
        One weight array per output channel.
    kernels
        One kernel per channel (they share the pixel grid geometry).
    y0, x0, height, width
        The tile, in global pixel indices.
    jitter
        Per-row x shift (pixels) of the ``height`` rows: row i shows the
        image at x + jitter[i].

    Returns
    -------
    numpy.ndarray
        (channels, height, width) float64.
    """
    nch = len(weights)
    jitter = np.zeros(height) if jitter is None else np.asarray(jitter, dtype=np.float64)
    max_j = float(np.abs(jitter).max()) if len(jitter) else 0.0
    py, px = tile_margin(kernels, max_j)
    ny = sfft.next_fast_len(height + 2 * py, real=True)
    nx = sfft.next_fast_len(width + 2 * px, real=True)
    oy, ox = y0 - py, x0 - px
    r = max(k.radius_px for k in kernels)
    sel = (y > y0 - r - 1) & (y < y0 + height + r) & (x > x0 - r - 1 - max_j) & (x < x0 + width + r + max_j)
    ty = (y[sel] - oy) * (2 * np.pi / ny)
    tx = (x[sel] - ox) * (2 * np.pi / nx)
    my, mxh = _modes(kernels, ny, nx)
    out = np.zeros((nch, height, width))
    if not len(ty):
        return out
    c = np.stack([np.asarray(w, dtype=np.float64)[sel] for w in weights]).astype(np.complex128)
    # Type-1 NUFFT: sum_a c_a exp(-i (ky ty_a + kx tx_a)); modes in FFT order.
    modes = finufft.nufft2d1(
        ty, tx, c if nch > 1 else c[0], (my, 2 * mxh - 1), eps=NUFFT_EPS, isign=-1, modeord=1, nthreads=1,
        upsampfac=1.25, fftw=64,  # small upsampling is fastest here; FFTW_ESTIMATE plans are reproducible
    ).reshape(nch, my, 2 * mxh - 1)[:, :, :mxh]
    hy = my // 2
    # exact sub-pixel shift of each row: row i shows the image at x + jitter[i]
    shift = np.exp(2j * np.pi / nx * np.outer(jitter, np.arange(mxh))) if max_j > 0 else None
    for ch, kernel in enumerate(kernels):
        spec = modes[ch] * _kernel_spectrum(kernel, ny, nx, my, mxh)
        grid = np.zeros((ny, mxh), dtype=np.complex128)
        grid[: hy + 1] = spec[: hy + 1]
        grid[ny - hy :] = spec[hy + 1 :]
        rows = sfft.ifft(grid, axis=0)[py : py + height]
        if shift is not None:
            rows *= shift
        out[ch] = sfft.irfft(rows, n=nx, axis=1)[:, px : px + width]
    return out
