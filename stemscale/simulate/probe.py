"""The microscope and the intensity of its probe (the incoherent ADF point-spread function).

The probe wave is the inverse Fourier transform of the objective aperture
times the aberration phase ``exp(-i chi(k))``; its intensity, blurred by a
Gaussian source (a product in Fourier space), is the point-spread function
(PSF) of incoherent ADF imaging.  It is sampled directly on the (possibly
sheared) scan grid, so scan distortions deform the PSF exactly as they do in
a real microscope, then truncated smoothly at a radius ``R`` (5 Å plus twice
the geometric blur of the aberrations; flat to 0.6 R, raised-cosine taper to
zero at R) and normalised to unit integral over the sample plane (Å⁻²).  The
Airy tails beyond R (about 3 % of the intensity at R = 5 Å, falling as 1/R)
are thereby folded into the core: the total detected signal is conserved.
A finite support is what lets tiles of a mosaic be rendered independently:
a pixel depends only on atoms closer than ``R``.

Aberrations follow Krivanek's notation, with the wave aberration

    W(θ, φ) = ½ θ² [C1 + A1 cos 2(φ - φA1)]
              + ⅓ θ³ [B2 cos(φ - φB2) + A2 cos 3(φ - φA2)]
              + ¼ C3 θ⁴ + ⅙ C5 θ⁶,        chi = 2π W / λ,

where θ = λ|k| is the scattering angle.  Positive C1 is overfocus.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache
from typing import Any

import numpy as np
import scipy.fft as sfft

from ..errors import InputError
from ..lattice import PAPER_PIXEL_SIZE_A

__all__ = ["Microscope", "electron_wavelength_A", "ProbeKernel", "probe_kernel"]


def electron_wavelength_A(high_tension_kv: float) -> float:
    """Relativistic electron wavelength in Å for an accelerating voltage in kV."""
    v = high_tension_kv * 1e3
    # h / sqrt(2 m0 e V (1 + e V / (2 m0 c^2))), in Å
    return 12.2642584 / math.sqrt(v * (1.0 + 0.97846914e-6 * v))


@dataclass(frozen=True)
class Microscope:
    """Probe, detector and scan parameters of an aberration-corrected ADF-STEM.

    Parameters
    ----------
    high_tension_kv
        Accelerating voltage (kV).
    convergence_mrad
        Probe convergence semi-angle (mrad).
    detector_inner_mrad, detector_outer_mrad
        Annular detector angles (mrad).  Recorded in the metadata; the
        detected fraction itself is set by the atoms' cross-sections
        (:mod:`stemscale.simulate.materials`), calibrated for 63-200 mrad.
    pixel_size_A
        Scan step (Å per pixel); default: the reference paper's 20.74 pm
        (:data:`stemscale.lattice.PAPER_PIXEL_SIZE_A`).
    defocus_nm
        C1, positive = overfocus (nm).
    c3_um, c5_mm
        Spherical aberrations C3 (µm) and C5 (mm).
    a1_nm, a1_angle_deg
        Two-fold astigmatism A1 and its azimuth.
    a2_nm, a2_angle_deg
        Three-fold astigmatism A2 and its azimuth.
    b2_nm, b2_angle_deg
        Axial coma B2 and its azimuth.
    source_size_A
        FWHM of the Gaussian effective source (Å), as in Kirkland's incostem.
    gain
        Detector gain (ADU per detected electron).
    offset
        Detector offset (ADU) added after the gain.
    read_noise
        Standard deviation of Gaussian read noise (ADU).
    """

    high_tension_kv: float = 80.0
    convergence_mrad: float = 25.2
    detector_inner_mrad: float = 63.0
    detector_outer_mrad: float = 200.0
    pixel_size_A: float = PAPER_PIXEL_SIZE_A
    defocus_nm: float = 0.0
    c3_um: float = 0.0
    c5_mm: float = 0.0
    a1_nm: float = 0.0
    a1_angle_deg: float = 0.0
    a2_nm: float = 0.0
    a2_angle_deg: float = 0.0
    b2_nm: float = 0.0
    b2_angle_deg: float = 0.0
    source_size_A: float = 1.0
    gain: float = 1.0
    offset: float = 0.0
    read_noise: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
                raise InputError(f"Microscope.{f.name} must be a number, got {value!r}")
            if not math.isfinite(float(value)):
                raise InputError(f"Microscope.{f.name} must be finite, got {value!r}")
        positive = ("high_tension_kv", "convergence_mrad", "pixel_size_A", "gain")
        for name in positive:
            if not getattr(self, name) > 0:
                raise InputError(f"Microscope.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("source_size_A", "read_noise", "detector_inner_mrad"):
            if getattr(self, name) < 0:
                raise InputError(f"Microscope.{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.detector_outer_mrad > self.detector_inner_mrad:
            raise InputError(
                "Microscope.detector_outer_mrad must exceed detector_inner_mrad, got "
                f"{self.detector_inner_mrad}-{self.detector_outer_mrad} mrad"
            )
        if self.convergence_mrad >= 0.5 * self.high_tension_kv * 1e3:  # absurd, catches unit slips
            raise InputError(f"Microscope.convergence_mrad={self.convergence_mrad} is not a plausible angle")

    @property
    def wavelength_A(self) -> float:
        """Electron wavelength (Å)."""
        return electron_wavelength_A(self.high_tension_kv)

    def aberration_free(self) -> "Microscope":
        """The same microscope with every aberration set to zero (used for label masks)."""
        return replace(self, defocus_nm=0.0, c3_um=0.0, c5_mm=0.0, a1_nm=0.0, a2_nm=0.0, b2_nm=0.0)

    def to_dict(self) -> dict[str, float]:
        """Plain dict of the parameters (for metadata)."""
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def random(cls, rng: np.random.Generator | int | None = None, **overrides: Any) -> "Microscope":
        """A randomised microscope for training data.

        Draws follow the ranges of the paper's 2021 simulation parameters
        (stem-learning ``params.py``): defocus σ = 1 nm, A1 = 1 ± 1 nm, B2 =
        10 ± 20 nm, A2 = 25 ± 50 nm with its azimuth near 90°, source size
        1.0 ± 0.05 Å, plus small residual C3 and a ±10 % detector gain.

        Parameters
        ----------
        rng
            A NumPy Generator (or a seed).
        **overrides
            Fixed values for any field.
        """
        rng = np.random.default_rng(rng)
        values = dict(
            defocus_nm=rng.normal(0.0, 1.0),
            c3_um=rng.normal(0.0, 2.0),
            a1_nm=abs(rng.normal(1.0, 1.0)),
            a1_angle_deg=rng.uniform(0.0, 180.0),
            a2_nm=abs(rng.normal(25.0, 50.0)),
            a2_angle_deg=rng.normal(90.0, 7.5),
            b2_nm=abs(rng.normal(10.0, 20.0)),
            b2_angle_deg=rng.uniform(0.0, 360.0),
            source_size_A=max(0.0, rng.normal(1.0, 0.05)),
            gain=rng.uniform(0.9, 1.1),
        )
        values.update(overrides)
        return cls(**values)

    def geometric_radius_A(self) -> float:
        """Radius (Å) over which the aberrations spread the probe geometrically."""
        t = self.convergence_mrad * 1e-3
        return (
            abs(self.defocus_nm * 10) * t
            + abs(self.a1_nm * 10) * t
            + (abs(self.a2_nm) + abs(self.b2_nm)) * 10 * t**2
            + abs(self.c3_um * 1e4) * t**3
            + abs(self.c5_mm * 1e7) * t**5
        )


@dataclass(frozen=True, eq=False)  # hashed by identity (cached per microscope)
class ProbeKernel:
    """A probe PSF sampled on whole pixel offsets of a scan grid.

    Attributes
    ----------
    values
        (2r+1, 2r+1) array: ``values[r + dy, r + dx]`` is the PSF (Å⁻²) at
        the sample-plane offset of (dy, dx) pixels; zero beyond the support.
    radius_px
        r, half-size of ``values`` in pixels.
    support_A
        R, the truncation radius in the sample plane (Å).
    peak
        PSF value at zero offset (Å⁻²).
    band
        (qy, qx): highest spatial frequency (cycles per pixel) along each
        pixel axis that the probe intensity holds (twice the aperture radius).
    """

    values: np.ndarray
    radius_px: int
    support_A: float
    peak: float
    band: tuple[float, float]


def _wave_aberration(kx: np.ndarray, ky: np.ndarray, m: Microscope) -> np.ndarray:
    lam = m.wavelength_A
    theta2 = (kx**2 + ky**2) * lam**2
    theta = np.sqrt(theta2)
    phi = np.arctan2(ky, kx)
    w = 0.5 * theta2 * (m.defocus_nm * 10 + m.a1_nm * 10 * np.cos(2 * (phi - math.radians(m.a1_angle_deg))))
    w += theta2 * theta / 3.0 * (
        m.b2_nm * 10 * np.cos(phi - math.radians(m.b2_angle_deg))
        + m.a2_nm * 10 * np.cos(3 * (phi - math.radians(m.a2_angle_deg)))
    )
    w += 0.25 * m.c3_um * 1e4 * theta2**2 + m.c5_mm * 1e7 * theta2**3 / 6.0
    return w


def support_guess(r_geo: float, base: float) -> float:
    return base + 2.0 * r_geo


def _to_sample_matrix(affine: tuple[float, float, float, float]) -> np.ndarray:
    # affine = (a_xx, a_xy, a_yx, a_yy): sample offset (x, y) = px * A @ (dx, dy)
    return np.array([[affine[0], affine[1]], [affine[2], affine[3]]], dtype=np.float64)


@lru_cache(maxsize=64)
def probe_kernel(
    microscope: Microscope,
    affine: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 1.0),
    base_support_A: float = 5.0,
) -> ProbeKernel:
    """Sample the probe intensity on whole-pixel offsets of a (distorted) scan grid.

    Parameters
    ----------
    microscope
        Probe parameters and pixel size.
    affine
        Row-major 2x2 matrix A (a_xx, a_xy, a_yx, a_yy) mapping a pixel offset
        (dx, dy) to the sample-plane offset ``pixel_size * A @ (dx, dy)``.
    base_support_A
        Truncation radius (Å) of an aberration-free probe; aberrations add
        twice their geometric blur radius.

    Returns
    -------
    ProbeKernel
    """
    px = microscope.pixel_size_A
    a_mat = _to_sample_matrix(affine)
    lam = microscope.wavelength_A
    kmax = microscope.convergence_mrad * 1e-3 / lam
    if 2 * kmax * px * np.abs(a_mat).max() >= 0.5 * 0.98:
        raise InputError(
            f"pixel size {px} Å undersamples the probe: its intensity holds spatial frequencies up to "
            f"{2 * kmax:.3f} Å⁻¹ but the scan samples only up to {0.5 / px:.3f} Å⁻¹"
        )
    r_geo = microscope.geometric_radius_A()
    # Compute grid: wide enough that wrap-around of the probe tails is negligible.
    extent_A = max(48.0, 4.0 * support_guess(r_geo, base_support_A))
    n = sfft.next_fast_len(int(math.ceil(extent_A / px)) | 1)
    n += n % 2
    q = sfft.fftfreq(n)  # cycles per pixel
    qy, qx = np.meshgrid(q, q, indexing="ij")
    # Physical frequency k = A^{-T} q / px, so that k . (px A d) = q . d.
    inv_t = np.linalg.inv(a_mat).T
    kx = (inv_t[0, 0] * qx + inv_t[0, 1] * qy) / px
    ky = (inv_t[1, 0] * qx + inv_t[1, 1] * qy) / px
    k2 = kx**2 + ky**2
    aperture = k2 <= kmax**2
    chi = 2 * np.pi / lam * _wave_aberration(kx[aperture], ky[aperture], microscope)
    wave_k = np.zeros((n, n), dtype=np.complex128)
    wave_k[aperture] = np.exp(-1j * chi)
    wave = sfft.ifft2(wave_k, workers=1)
    intensity = (wave.real**2 + wave.imag**2)
    if microscope.source_size_A > 0:
        s = microscope.source_size_A / (2 * math.sqrt(2 * math.log(2)))
        intensity = sfft.ifft2(sfft.fft2(intensity) * np.exp(-2 * np.pi**2 * s**2 * k2)).real
    intensity = np.fft.fftshift(intensity)
    c = n // 2
    dy, dx = np.mgrid[-c : n - c, -c : n - c]
    ox = px * (a_mat[0, 0] * dx + a_mat[0, 1] * dy)
    oy = px * (a_mat[1, 0] * dx + a_mat[1, 1] * dy)
    r = np.hypot(ox, oy)
    support = float(base_support_A + 2.0 * r_geo)
    # Flat to 0.6 R, raised-cosine taper to zero at R: compact support, smooth spectrum.
    inner = 0.6 * support
    t = np.clip((r - inner) / (support - inner), 0.0, 1.0)
    window = 0.5 * (1 + np.cos(np.pi * t))
    psf = np.where(r < support, intensity * window, 0.0)
    psf /= psf.sum() * px * px * abs(np.linalg.det(a_mat))
    rows = np.nonzero(psf.any(axis=1))[0]
    cols = np.nonzero(psf.any(axis=0))[0]
    rad = int(max(c - rows[0], rows[-1] - c, c - cols[0], cols[-1] - c))
    values = np.ascontiguousarray(psf[c - rad : c + rad + 1, c - rad : c + rad + 1])
    values.setflags(write=False)
    # |psi|^2 holds |k| <= 2 kmax; q = px A^T k, so the band along each pixel axis is:
    band_x = 2 * kmax * px * math.hypot(a_mat[0, 0], a_mat[1, 0])
    band_y = 2 * kmax * px * math.hypot(a_mat[0, 1], a_mat[1, 1])
    return ProbeKernel(values=values, radius_px=rad, support_A=support, peak=float(psf[c, c]),
                       band=(band_y, band_x))
