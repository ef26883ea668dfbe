"""Reference lattice of a 2H-MX2 crop: lattice vectors, sublattices and ideal column sites.

A crop (class average or pristine average) shows metal (M) columns on one
triangular sublattice and chalcogen (X) columns on another, shifted by a
third of the cell diagonal.  :func:`fit_lattice` finds the orientation
from the FFT, the sublattices from intensity peaks (metal columns are the
brighter ones in WSe2 / MoS2 ADF images), and refines the origin and both
lattice vectors by least squares on the peak positions.  The lattice then
lists every ideal site of a crop (:meth:`HexLattice.sites`), indexed
relative to the chalcogen site nearest the crop centre, which is where a
chalcogen-site defect sits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from .angle import lattice_angle

__all__ = ["HexLattice", "fit_lattice", "find_peaks", "defect_site_shift"]


@dataclass(frozen=True)
class HexLattice:
    """A 2H-MX2 lattice in pixel coordinates (x, y).

    Attributes
    ----------
    a1, a2
        Lattice vectors (px), ``a2`` at +60 degrees from ``a1``.
    origin
        Position (px) of the metal site with indices (0, 0).
    x_basis
        Fractional offset ``f`` of the chalcogen sublattice: X sites are at
        ``origin + (n1 + f) a1 + (n2 + f) a2`` with ``f`` 1/3 or 2/3 (the two
        domains).
    """

    a1: np.ndarray
    a2: np.ndarray
    origin: np.ndarray
    x_basis: float = 1.0 / 3.0

    @property
    def a_px(self) -> float:
        """Lattice constant (px): the mean length of ``a1`` and ``a2``."""
        return float(0.5 * (np.hypot(*self.a1) + np.hypot(*self.a2)))

    @property
    def angle_deg(self) -> float:
        """Direction of ``a1`` (degrees, counter-clockwise from +x in pixel coordinates)."""
        return float(math.degrees(math.atan2(self.a1[1], self.a1[0])))

    @property
    def matrix(self) -> np.ndarray:
        """2 x 2 matrix with columns a1, a2."""
        return np.column_stack([self.a1, self.a2])

    def basis(self, site: str) -> np.ndarray:
        """Offset (px) of sublattice ``site`` (``"M"`` or ``"X"``) from the lattice points."""
        f = 0.0 if site == "M" else self.x_basis
        return f * (self.a1 + self.a2)

    def position(self, site: str, n1: Any, n2: Any) -> np.ndarray:
        """(n, 2) positions (px) of sites with indices n1, n2."""
        n1 = np.asarray(n1, dtype=float)
        n2 = np.asarray(n2, dtype=float)
        b = self.basis(site)
        return self.origin[None, :] + n1[:, None] * self.a1[None, :] + n2[:, None] * self.a2[None, :] + b[None, :]

    def fractional(self, xy: np.ndarray, site: str) -> np.ndarray:
        """Lattice coordinates of points relative to a sublattice."""
        xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        return np.linalg.solve(self.matrix, (xy - self.origin - self.basis(site)).T).T

    def nearest(self, xy: Any, site: str) -> tuple[np.ndarray, np.ndarray]:
        """Indices (n, 2) and positions (n, 2) of the nearest site of a sublattice."""
        f = self.fractional(np.asarray(xy, dtype=float), site)
        base = np.floor(f)
        best_d = np.full(len(f), np.inf)
        best = np.zeros_like(base)
        for d1 in (0, 1):
            for d2 in (0, 1):
                idx = base + np.array([d1, d2])
                p = self.position(site, idx[:, 0], idx[:, 1])
                d = np.hypot(*(p - np.asarray(xy, dtype=float).reshape(-1, 2)).T)
                better = d < best_d
                best_d = np.where(better, d, best_d)
                best[better] = idx[better]
        return best.astype(np.int64), self.position(site, best[:, 0], best[:, 1])

    def shifted(self, delta_xy: Any) -> "HexLattice":
        """The same lattice with its origin moved by ``delta_xy`` (px)."""
        return HexLattice(self.a1, self.a2, self.origin + np.asarray(delta_xy, dtype=float), self.x_basis)

    def rotated_basis(self, k: int) -> "HexLattice":
        """The same sites described with ``a1`` turned by ``k * 60`` degrees.

        Which of the six equivalent directions is ``a1`` is a convention (a fit takes the
        lattice angle modulo 60 degrees, in [-30, 30)); turning the basis by 60 degrees
        moves the chalcogen offset from 1/3 to 2/3 of the cell diagonal and back, so
        ``x_basis`` alone says nothing about the domain unless both lattices use the same
        ``a1`` (see :meth:`aligned_to`).
        """
        a1, a2 = np.asarray(self.a1, float), np.asarray(self.a2, float)
        for _ in range(int(k) % 6):
            a1, a2 = a2, a2 - a1
        odd = int(k) % 2 == 1
        x_basis = (_THIRD if abs(self.x_basis - _THIRD) > 1e-6 else 2.0 * _THIRD) if odd else self.x_basis
        return HexLattice(a1, a2, np.asarray(self.origin, float), x_basis)

    def aligned_to(self, other: "HexLattice") -> "HexLattice":
        """The same sites described with the ``a1`` (of the six directions) closest to ``other.a1``."""
        ref = math.atan2(other.a1[1], other.a1[0])
        best = min(range(6), key=lambda k: abs(_wrap_angle(
            math.atan2(self.a1[1], self.a1[0]) + k * math.pi / 3 - ref)))
        return self.rotated_basis(best)

    def orientation_difference(self, other: "HexLattice") -> tuple[float, bool]:
        """Angle (degrees) between the two lattices and whether they are the same domain.

        Independent of which direction each lattice calls ``a1``: ``self`` is first
        described in the basis closest to ``other``'s.  Two lattices of the same domain
        put the chalcogen sublattice at the same fraction of the cell diagonal; the
        inverted (60 degree / mirror) domain at the other one.
        """
        own = self.aligned_to(other)
        angle = math.degrees(_wrap_angle(math.atan2(own.a1[1], own.a1[0]) - math.atan2(other.a1[1], other.a1[0])))
        return angle, abs(own.x_basis - other.x_basis) < 1e-6

    def sites(self, shape: tuple[int, int], *, margin: float = 0.0,
              centre_xy: tuple[float, float] | None = None) -> pd.DataFrame:
        """Every ideal M and X site inside ``shape`` (at least ``margin`` px from the edges).

        Indices ``n1, n2`` are relative to the X site nearest ``centre_xy``
        (default: the centre pixel), so the same physical site has the same
        indices in every crop of the same orientation.  Columns: ``site``,
        ``n1``, ``n2``, ``x_px``, ``y_px``, ``dx_px``, ``dy_px`` (from the
        centre site), ``r_px``, ``angle_deg``.
        """
        h, w = shape
        cxy = np.array([w // 2, h // 2], dtype=float) if centre_xy is None else np.asarray(centre_xy, float)
        c_idx, c_pos = self.nearest(cxy[None], "X")
        rows = []
        corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], dtype=float)
        for site in ("M", "X"):
            f = self.fractional(corners, site)
            lo = np.floor(f.min(axis=0)) - 1
            hi = np.ceil(f.max(axis=0)) + 1
            g1, g2 = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij")
            n1, n2 = g1.ravel(), g2.ravel()
            p = self.position(site, n1, n2)
            ok = (p[:, 0] >= margin) & (p[:, 0] <= w - 1 - margin) & (p[:, 1] >= margin) & (p[:, 1] <= h - 1 - margin)
            rows.append(pd.DataFrame({
                "site": site,
                "n1": (n1[ok] - c_idx[0, 0]).astype(np.int64),
                "n2": (n2[ok] - c_idx[0, 1]).astype(np.int64),
                "x_px": p[ok, 0], "y_px": p[ok, 1],
            }))
        out = pd.concat(rows, ignore_index=True)
        out["dx_px"] = out["x_px"] - c_pos[0, 0]
        out["dy_px"] = out["y_px"] - c_pos[0, 1]
        out["r_px"] = np.hypot(out["dx_px"], out["dy_px"])
        out["angle_deg"] = np.degrees(np.arctan2(out["dy_px"], out["dx_px"]))
        return out.sort_values(["r_px", "site", "angle_deg"]).reset_index(drop=True)


def find_peaks(image: np.ndarray, min_distance_px: float, *, exclude_border: int = 3) -> pd.DataFrame:
    """Local intensity maxima (``x_px``, ``y_px``, ``intensity``) at least ``min_distance_px`` apart."""
    from scipy import ndimage
    from skimage.feature import peak_local_max

    img = np.asarray(image, dtype=np.float64)
    smooth = ndimage.gaussian_filter(img, 1.0)
    rc = peak_local_max(smooth, min_distance=max(1, int(min_distance_px)), exclude_border=exclude_border)
    return pd.DataFrame({"x_px": rc[:, 1].astype(float), "y_px": rc[:, 0].astype(float),
                         "intensity": smooth[rc[:, 0], rc[:, 1]]})


def _wrap(f: np.ndarray) -> np.ndarray:
    return f - np.round(f)


_THIRD = 1.0 / 3.0


def _wrap_angle(phi: float) -> float:
    """An angle (radians) wrapped to [-pi, pi)."""
    return (phi + math.pi) % (2 * math.pi) - math.pi


def fit_lattice(image: np.ndarray, a_px: float, *, exclude_radius_px: float = 0.0,
                metal_brighter: bool = True, refine: bool = True) -> HexLattice:
    """Fit the 2H lattice of a (high signal-to-noise) crop.

    Parameters
    ----------
    image
        ``(h, w)`` class average or pristine average.
    a_px
        Nominal lattice constant in pixels (a start value; it is refined).
    exclude_radius_px
        Ignore peaks closer than this to the centre (the defect's core) in
        the least-squares refinement.
    metal_brighter
        Metal columns are the brighter sublattice (true for ADF images of
        W/Mo dichalcogenides).
    refine
        Refine the peak positions by Gaussian fits before the least squares.

    Returns
    -------
    HexLattice
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2 or not np.isfinite(img).all():
        raise InputError("fit_lattice needs a finite 2-D image")
    h, w = img.shape
    phi = math.radians(float(lattice_angle(img, a_px)))
    a1 = a_px * np.array([math.cos(phi), math.sin(phi)])
    a2 = a_px * np.array([math.cos(phi + math.pi / 3), math.sin(phi + math.pi / 3)])
    peaks = find_peaks(img, 0.35 * a_px)
    if len(peaks) < 6:
        raise InputError(f"found only {len(peaks)} intensity peaks; is this an atomic-resolution crop?")
    xy = peaks[["x_px", "y_px"]].to_numpy()
    inten = peaks["intensity"].to_numpy()
    if refine:
        # The one dependency of the lattice package on another stemscale package (stemscale.fit
        # depends on nothing but stemscale.errors), imported lazily as before.
        from ..fit import refine_positions

        fitted = refine_positions(img, xy, window=7, model="gauss2d")
        fxy = fitted[["x_px", "y_px"]].to_numpy()
        good = (fitted["state"].to_numpy() <= 1) & (np.hypot(*(fxy - xy).T) < 2.0)
        xy = np.where(good[:, None], fxy, xy)
    mat = np.column_stack([a1, a2])
    frac = np.linalg.solve(mat, xy.T).T
    # The brightest third of the peaks are metal columns (3 sublattices: M, X, hollow).
    bright = inten >= np.quantile(inten, 2.0 / 3.0) if metal_brighter else inten <= np.quantile(inten, 1.0 / 3.0)
    zf = np.exp(2j * np.pi * frac[bright]).mean(axis=0)
    o_frac = np.angle(zf) / (2 * np.pi)
    origin = mat @ o_frac
    # Which of the two remaining sublattices holds the chalcogen columns.
    rest = ~bright
    score: dict[float, int] = {}
    for f in (1.0 / 3.0, 2.0 / 3.0):
        d = _wrap(frac[rest] - o_frac - f)
        score[f] = int(np.sum(np.hypot(*(mat @ d.T)) < 0.2 * a_px))
    x_basis = max(score, key=lambda f: score[f])
    lat = HexLattice(a1, a2, origin, x_basis)
    # Least squares on every peak assigned to M or X (not too far from its site).
    for _ in range(2):
        A, b = [], []
        centre = np.array([w / 2.0, h / 2.0])
        for site in ("M", "X"):
            idx, pos = lat.nearest(xy, site)
            d = np.hypot(*(pos - xy).T)
            ok = (d < 0.2 * lat.a_px) & (np.hypot(*(xy - centre).T) >= exclude_radius_px)
            f = idx[ok] + (0.0 if site == "M" else lat.x_basis)
            for (f1, f2), p in zip(f, xy[ok]):
                A.append([1, 0, f1, 0, f2, 0])
                b.append(p[0])
                A.append([0, 1, 0, f1, 0, f2])
                b.append(p[1])
        if len(b) < 12:
            break
        sol, *_ = np.linalg.lstsq(np.asarray(A, float), np.asarray(b, float), rcond=None)
        lat = HexLattice(np.array([sol[2], sol[3]]), np.array([sol[4], sol[5]]), np.array([sol[0], sol[1]]), lat.x_basis)
    return lat


def defect_site_shift(image: np.ndarray, a_px: float, *, exclude_radius_px: float = 0.0,
                      site: str = "X") -> np.ndarray:
    """Shift ``(dy, dx)`` that moves the ``site`` (``"X"`` chalcogen, ``"M"`` metal) nearest
    the centre onto the centre pixel.

    Use it to recentre a class reference on its defect's site (a metal vacancy or
    substitution on a metal site, the other classes on a chalcogen site): the lattice
    is fitted on all columns (a radially symmetric defect field does not move its
    origin), so the defect's own contrast plays no part.
    """
    if site not in ("M", "X"):
        raise InputError(f"site must be 'M' or 'X', got {site!r}")
    img = np.asarray(image, dtype=np.float64)
    h, w = img.shape
    lat = fit_lattice(img, a_px, exclude_radius_px=exclude_radius_px)
    centre = np.array([w // 2, h // 2], dtype=float)
    _, pos = lat.nearest(centre[None], site)
    d = centre - pos[0]
    return np.array([d[1], d[0]])
