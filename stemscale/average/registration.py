"""Sub-pixel registration of crops to a class reference, and sub-pixel shifting.

Registration is upsampled cross-correlation
(:func:`skimage.registration.phase_cross_correlation` with
``normalization=None``, which is more robust than phase correlation at a
few counts per pixel), iterated: each pass shifts the crop by the current
estimate and measures the residual, so the apodisation window and the
optional central mask, which are fixed in the crop frame, bias nothing at
convergence.

A central mask (``mask_radius_px``) hides the defect's own neighbourhood,
so the registration locks onto the far lattice and cannot absorb the
defect's displacement field; the coarse position (integer centroid) is
always within a fraction of a lattice period, so the lattice alone fixes
the shift.

Shifts follow scikit-image's convention: ``shift = (dy, dx)`` is what must
be applied to the crop (``scipy.ndimage.shift(crop, shift)``) to overlay
it on the reference; the content of the crop therefore sits at
``reference position - shift``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from ..errors import InputError
from .crops import central

__all__ = ["register", "apply_shifts", "registration_window", "refine_reference"]


def registration_window(shape: tuple[int, int], *, mask_radius_px: float = 0.0,
                        taper_px: float = 8.0, edge_px: float = 12.0) -> np.ndarray:
    """Weights used for both images during registration.

    A raised-cosine apodisation over ``edge_px`` at the borders (tames the
    periodic wrap of the FFT) times, when ``mask_radius_px > 0``, a central
    hole of that radius with a raised-cosine edge of ``taper_px``.
    """
    h, w = shape
    cy, cx = h // 2, w // 2

    def ramp(d: np.ndarray, width: float) -> np.ndarray:
        if width <= 0:
            return (d >= 0).astype(float)
        t = np.clip(d / width, 0.0, 1.0)
        return 0.5 - 0.5 * np.cos(np.pi * t)

    yy = np.arange(h)[:, None]
    xx = np.arange(w)[None, :]
    edge = np.minimum(np.minimum(yy, h - 1 - yy), np.minimum(xx, w - 1 - xx)).astype(float)
    win = ramp(edge, edge_px)
    if mask_radius_px > 0:
        r = np.hypot(yy - cy, xx - cx)
        win = win * ramp(r - mask_radius_px, taper_px)
    return win


def _fourier_shift(stack: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    h, w = stack.shape[-2:]
    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.rfftfreq(w)[None, :]
    f = sfft.rfft2(stack, axes=(-2, -1))
    # separable phase ramp: exponentials on the two axes only, then one product
    ey = np.exp(-2j * np.pi * shifts[:, 0, None] * ky[None, :, 0])      # (n, h)
    ex = np.exp(-2j * np.pi * shifts[:, 1, None] * kx[None, 0, :])      # (n, w // 2 + 1)
    f *= ey[:, :, None]
    f *= ex[:, None, :]
    return sfft.irfft2(f, s=(h, w), axes=(-2, -1))


def apply_shifts(stack: np.ndarray, shifts: Any, *, crop: int | None = None,
                 method: str = "fourier", order: int = 3) -> np.ndarray:
    """Shift every crop by ``(dy, dx)`` with sub-pixel accuracy.

    Parameters
    ----------
    stack
        ``(n, h, w)`` crops carrying a margin wider than the largest shift.
    shifts
        ``(n, 2)`` shifts ``(dy, dx)`` in pixels.
    crop
        Return only the central ``crop x crop`` part (where the margin
        absorbs the wrap-around and the edge effects).
    method
        ``"fourier"``: exact band-limited shift (phase ramp); ``"spline"``:
        :func:`scipy.ndimage.shift` of the given ``order``, mirror edges.

    Returns
    -------
    ``(n, crop, crop)`` (or ``(n, h, w)``) float64 array.
    """
    stack = np.asarray(stack, dtype=np.float64)
    s = np.asarray(shifts, dtype=np.float64).reshape(-1, 2)
    if stack.ndim != 3 or len(s) != len(stack):
        raise InputError(f"need (n, h, w) crops and (n, 2) shifts, got {stack.shape} and {s.shape}")
    if not np.isfinite(s).all():
        raise InputError("shifts hold NaN or Inf")
    if crop is not None:
        margin = (stack.shape[-1] - crop) // 2
        if np.abs(s).max(initial=0.0) > margin:
            raise InputError(f"a shift of {np.abs(s).max():.2f} px exceeds the crops' margin of {margin} px")
    if method == "fourier":
        out = _fourier_shift(stack, s)
    elif method == "spline":
        out = np.stack([ndimage.shift(c, sh, order=order, mode="mirror") for c, sh in zip(stack, s)])
    else:
        raise InputError(f"method must be 'fourier' or 'spline', got {method!r}")
    return central(out, crop) if crop is not None else out


def _coarse_peak(corr: np.ndarray, max_shift: int) -> np.ndarray:
    """Integer argmax of circular correlations within ``|shift| <= max_shift``."""
    n, h, w = corr.shape
    sy = np.fft.fftfreq(h, 1.0 / h)
    sx = np.fft.fftfreq(w, 1.0 / w)
    allowed = (np.abs(sy)[:, None] <= max_shift) & (np.abs(sx)[None, :] <= max_shift)
    c = np.where(allowed[None], corr, -np.inf).reshape(n, -1)
    k = np.argmax(c, axis=1)
    return np.stack([sy[k // w], sx[k % w]], axis=1)


def _upsampled(xps: np.ndarray, centre: np.ndarray, step: float, half: int) -> np.ndarray:
    """Correlation at shifts ``centre + step * (-half .. half)`` from its spectrum (matrix DFT)."""
    n, h, w = xps.shape
    ky = np.fft.fftfreq(h)
    kx = np.fft.fftfreq(w)
    off = step * np.arange(-half, half + 1)
    sy = centre[:, 0, None] + off[None, :]                      # (n, J)
    sx = centre[:, 1, None] + off[None, :]
    ey = np.exp(2j * np.pi * sy[:, :, None] * ky[None, None, :])   # (n, J, h)
    ex = np.exp(2j * np.pi * sx[:, :, None] * kx[None, None, :])   # (n, J, w)
    from threadpoolctl import threadpool_limits

    # One small BLAS product pair per crop (numpy's stacked complex matmul is much slower);
    # threaded BLAS only adds contention on products this small.
    with threadpool_limits(limits=1, user_api="blas"):
        return np.stack([((ey[i] @ xps[i]) @ ex[i].T).real for i in range(n)])


def _parabola(v: np.ndarray) -> np.ndarray:
    """Vertex offset of a parabola through three samples (-1, 0, 1), clipped to [-0.5, 0.5]."""
    den = v[:, 0] - 2 * v[:, 1] + v[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(den < 0, 0.5 * (v[:, 0] - v[:, 2]) / den, 0.0)
    return np.clip(d, -0.5, 0.5)


def cross_correlation_shifts(stack: np.ndarray, reference: np.ndarray, *, upsample: int = 20,
                             max_shift_px: float = 4.0) -> np.ndarray:
    """Batched upsampled cross-correlation: shift ``(dy, dx)`` of each (windowed) crop.

    The integer peak of the circular correlation is refined on a grid of
    ``1 / upsample`` px by a matrix DFT of the cross-power spectrum (as in
    Guizar-Sicairos et al. 2008 and scikit-image), then by a parabola
    through the finest samples.
    """
    n = len(stack)
    fr = sfft.fft2(reference)
    fm = sfft.fft2(stack, axes=(-2, -1))
    xps = fr[None] * np.conj(fm)
    corr = sfft.ifft2(xps, axes=(-2, -1)).real
    centre = _coarse_peak(corr, int(np.ceil(max_shift_px)))
    step = 1.0 / float(upsample)
    half = int(np.ceil(0.75 * upsample))
    c = _upsampled(xps, centre, step, half)                       # (n, J, J)
    J = c.shape[1]
    k = np.argmax(c.reshape(n, -1), axis=1)
    iy, ix = np.clip(k // J, 1, J - 2), np.clip(k % J, 1, J - 2)
    rows = np.arange(n)
    vy = np.stack([c[rows, iy - 1, ix], c[rows, iy, ix], c[rows, iy + 1, ix]], axis=1)
    vx = np.stack([c[rows, iy, ix - 1], c[rows, iy, ix], c[rows, iy, ix + 1]], axis=1)
    dy = (iy - half + _parabola(vy)) * step
    dx = (ix - half + _parabola(vx)) * step
    return centre + np.stack([dy, dx], axis=1)


def register(
    stack: np.ndarray,
    reference: np.ndarray,
    *,
    upsample: int = 20,
    iterations: int = 2,
    mask_radius_px: float = 0.0,
    edge_px: float = 12.0,
    max_shift_px: float = 4.0,
    batch: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Shifts that register each crop onto the reference.

    Parameters
    ----------
    stack
        ``(n, h, w)`` crops (same shape as the reference).
    reference
        ``(h, w)`` class reference (e.g. from :func:`refine_reference`).
    upsample
        Upsampling factor of the cross-correlation peak; a parabola through
        the finest samples refines it further.
    iterations
        Total passes: after the first, each pass measures the residual of
        the crop shifted by the current estimate, so the fixed window and
        mask bias nothing at convergence.
    mask_radius_px
        Hide a disc of this radius around the centre (the defect's own
        neighbourhood) in both images.
    edge_px
        Width of the border apodisation.
    max_shift_px
        Largest shift searched (px); keep it below half a lattice period.
    batch
        Crops registered per vectorised batch (bounds memory).

    Returns
    -------
    shifts : ``(n, 2)`` float64 ``(dy, dx)``
    score : ``(n,)`` normalised correlation of the registered crop with the reference
    """
    stack = np.asarray(stack, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if stack.ndim != 3 or stack.shape[1:] != ref.shape:
        raise InputError(f"crops {stack.shape} and reference {ref.shape} do not match")
    if not (isinstance(iterations, (int, np.integer)) and iterations >= 1):
        raise InputError(f"iterations must be a positive integer, got {iterations!r}")
    if not np.isfinite(ref).all():
        raise InputError("the reference holds NaN or Inf")
    win = registration_window(ref.shape, mask_radius_px=mask_radius_px, edge_px=edge_px)
    wsum = win.sum()
    refw = (ref - (ref * win).sum() / wsum) * win
    n = len(stack)
    shifts = np.zeros((n, 2))
    score = np.zeros(n)
    _register_batches(stack, refw, win, wsum, shifts, score, upsample, iterations, max_shift_px, batch)
    return shifts, score


def _register_batches(stack, refw, win, wsum, shifts, score, upsample, iterations, max_shift_px, batch) -> None:
    n = len(stack)
    for b0 in range(0, n, int(batch)):
        part = stack[b0 : b0 + int(batch)]
        s = np.zeros((len(part), 2))
        for it in range(int(iterations)):
            moved = part if it == 0 else _fourier_shift(part, s)
            mw = (moved - ((moved * win).sum(axis=(1, 2)) / wsum)[:, None, None]) * win
            if it > 0:
                # residual shifts are small: search only around zero
                s += cross_correlation_shifts(mw, refw, upsample=upsample, max_shift_px=1.0)
            else:
                s += cross_correlation_shifts(mw, refw, upsample=upsample, max_shift_px=max_shift_px)
        moved = _fourier_shift(part, s)
        mw = (moved - ((moved * win).sum(axis=(1, 2)) / wsum)[:, None, None]) * win
        score[b0 : b0 + len(part)] = np.einsum("nij,ij->n", mw, refw) / np.sqrt(
            np.einsum("nij,nij->n", mw, mw) * np.sum(refw**2) + 1e-300)
        shifts[b0 : b0 + len(part)] = s


def refine_reference(
    stack: np.ndarray,
    *,
    crop: int,
    rounds: int = 3,
    reference: np.ndarray | None = None,
    recentre: Any = None,
    symmetrise: Any = None,
    **register_kwargs: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Build a class reference by iterated registration and averaging.

    Parameters
    ----------
    stack
        ``(n, crop + 2m, crop + 2m)`` crops with a margin.
    crop
        Edge of the reference.
    rounds
        Rounds of (register to the current reference, average).
    reference
        Starting reference (default: the plain mean of the unshifted crops).
    recentre
        Optional callable ``image -> (dy, dx)`` giving the shift that puts
        the defect site on the centre pixel (e.g. from a lattice fit); the
        reference is shifted by it after every round, so the registered
        crops are centred on the site.
    symmetrise
        Optional callable ``image -> image`` applied to the reference after
        every round (e.g. C3v symmetrisation about the centre).
    register_kwargs
        Passed to :func:`register`.

    Returns
    -------
    reference : ``(crop, crop)`` float64
    shifts : ``(n, 2)`` shifts of the last round
    """
    stack = np.asarray(stack, dtype=np.float64)
    ref = central(stack, crop).mean(axis=0) if reference is None else np.asarray(reference, dtype=np.float64)
    shifts = np.zeros((len(stack), 2))
    for _ in range(int(rounds)):
        shifts, _ = register(central(stack, crop), ref, **register_kwargs)
        good = np.isfinite(shifts).all(axis=1)
        if not good.any():
            raise InputError("no crop could be registered to the reference")
        ref = apply_shifts(stack[good], shifts[good], crop=crop).mean(axis=0)
        if recentre is not None:
            d = np.asarray(recentre(ref), dtype=float)
            if np.isfinite(d).all() and np.hypot(*d) > 1e-4:
                m = (stack.shape[-1] - crop) // 2
                pad = np.pad(ref, m, mode="reflect")
                ref = apply_shifts(pad[None], d[None], crop=crop)[0]
        if symmetrise is not None:
            ref = np.asarray(symmetrise(ref), dtype=np.float64)
    return ref, shifts
