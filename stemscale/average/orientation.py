"""Lattice orientation of crops: rotated grains and inverted (60-degree / mirror) domains.

A 2H-MX2 monolayer seen along c has C3v symmetry about a chalcogen column:
rotating it by 60 degrees (or mirroring it across a line along a lattice
vector) gives the *inverted* domain, where metal columns sit on the former
hollow sites.  Rotating a crop by 180 degrees about its centre pixel is
exact in pixels and maps one domain onto the other (180 = 60 + 120), so
inverted crops can be mapped back without interpolation.  Grains rotated
by any other angle are detected from the hexagonal FFT peaks
(:func:`stemscale.lattice.lattice_angle`, re-exported here) and rejected.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..lattice import angle_from_spectrum, fit_lattice, lattice_angle
from .crops import central, rot180
from .registration import registration_window

__all__ = ["lattice_angle", "OrientationCheck", "check_orientation", "map_orientation", "one_domain"]


@dataclass
class OrientationCheck:
    """Per-crop verdicts of :func:`check_orientation`.

    Attributes
    ----------
    status
        ``"same"``, ``"inverted"`` (the 60-degree / mirror domain) or
        ``"rotated"`` (a grain at another angle).
    angle_deg
        Lattice angle of each crop (modulo 60 degrees).
    score_same, score_inverted
        Normalised correlation with the reference and with the reference
        rotated by 180 degrees (after the best small shift).
    """

    status: np.ndarray
    angle_deg: np.ndarray
    score_same: np.ndarray
    score_inverted: np.ndarray


def _peak_correlations(stack: np.ndarray, refs: list[np.ndarray], max_shift_px: float,
                       period_px: float) -> tuple[list[np.ndarray], np.ndarray]:
    """Normalised cross-correlation peaks (integer lags within ``max_shift_px``) with each reference,
    and the lattice angle, from one FFT per crop."""
    import scipy.fft as sfft

    h, w = refs[0].shape
    win = registration_window((h, w), edge_px=12.0)
    wsum = win.sum()
    mov = (stack - ((stack * win).sum(axis=(1, 2)) / wsum)[:, None, None]) * win
    fm = sfft.fft2(mov, axes=(-2, -1))
    norm_m = np.sqrt(np.einsum("nij,nij->n", mov, mov))
    sy = np.abs(np.fft.fftfreq(h, 1.0 / h))[:, None]
    sx = np.abs(np.fft.fftfreq(w, 1.0 / w))[None, :]
    allowed = (sy <= max_shift_px) & (sx <= max_shift_px)
    out = []
    for ref in refs:
        r = (ref - (ref * win).sum() / wsum) * win
        corr = sfft.ifft2(sfft.fft2(r)[None] * np.conj(fm), axes=(-2, -1)).real
        peak = np.where(allowed[None], corr, -np.inf).reshape(len(stack), -1).max(axis=1)
        out.append(peak / (norm_m * np.sqrt(np.sum(r * r)) + 1e-300))
    return out, angle_from_spectrum(np.abs(fm) ** 2, period_px)


def check_orientation(
    stack: np.ndarray,
    reference: np.ndarray,
    *,
    period_px: float,
    angle_tolerance_deg: float = 3.0,
    reference_angle_deg: float | None = None,
    max_shift_px: float = 4.0,
) -> OrientationCheck:
    """Classify crops as sharing the reference's orientation, inverted, or rotated.

    Parameters
    ----------
    stack
        ``(n, s, s)`` crops with the defect on pixel ``s // 2``, of the same
        shape as ``reference`` (or larger: the centre is compared).
    reference
        ``(c, c)`` class reference (defect on pixel ``c // 2``).
    period_px
        Lattice constant in pixels.
    angle_tolerance_deg
        Crops whose lattice angle differs by more than this are ``"rotated"``.
    reference_angle_deg
        The reference's lattice angle (default: measured on it).
    max_shift_px
        Largest misplacement searched when comparing patterns.
    """
    stack = np.asarray(stack, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    c = ref.shape[-1]
    if stack.ndim != 3 or stack.shape[-1] < c:
        raise InputError(f"crops {stack.shape} do not cover the reference {ref.shape}")
    if stack.shape[-1] > c:
        stack = central(stack, c)
    ref_angle = lattice_angle(ref, period_px) if reference_angle_deg is None else float(reference_angle_deg)
    # One FFT per crop: correlation with the reference and with the reference rotated by 180
    # degrees (the same as correlating the rotated crop with the reference), and the lattice angle.
    (same, inv), angles = _peak_correlations(stack, [ref, _rot180_about_centre(ref)], max_shift_px, period_px)
    diff = (angles - ref_angle + 30.0) % 60.0 - 30.0
    status = np.where(inv > same, "inverted", "same").astype(object)
    status[np.abs(diff) > angle_tolerance_deg] = "rotated"
    return OrientationCheck(status=status, angle_deg=angles, score_same=same, score_inverted=inv)


def _rot180_about_centre(image: np.ndarray) -> np.ndarray:
    """A (c, c) image rotated by 180 degrees about pixel c // 2 (the first row/column repeat the edge)."""
    return rot180(image[None])[0]


def map_orientation(stack: np.ndarray, status: np.ndarray) -> np.ndarray:
    """Rotate the ``"inverted"`` crops by 180 degrees so every crop shares one domain."""
    out = np.array(stack, copy=True)
    inv = np.asarray(status) == "inverted"
    if inv.any():
        out[inv] = rot180(out[inv])
    return out


def one_domain(references: dict[str, np.ndarray], period_px: float, *,
               anchor: str = "pristine") -> dict[str, np.ndarray]:
    """Class references all in the domain of ``references[anchor]``.

    Every class maps its crops onto its own reference's domain (:func:`check_orientation`
    against it), and each reference starts from the majority of its class's crops, so on a
    sample with inverted domains two classes can end up in opposite ones, and a class
    average could not be compared with the pristine average.  A reference whose fitted
    lattice is the other domain than the anchor's is rotated by 180 degrees about its
    centre pixel (its defect site), which is exact in pixels and maps one domain onto the
    other.  Without an anchor, or when a lattice cannot be fitted, references are left as
    they are.
    """
    if anchor not in references:
        return dict(references)
    try:
        base = fit_lattice(references[anchor], period_px)
    except InputError:
        return dict(references)
    out = {}
    for cls, ref in references.items():
        if cls != anchor:
            try:
                _, same = fit_lattice(ref, period_px).orientation_difference(base)
            except InputError:
                same = True
            if not same:
                ref = _rot180_about_centre(np.asarray(ref))
        out[cls] = ref
    return out

