"""Continuum comparison: a 2D centre of dilatation, u_r = A / r.

Outside the core of a point defect in an isotropic elastic sheet the
radial displacement falls as 1/r and never changes sign (the strain is
pure shear, zero trace).  Fitting it to the measured shell displacements,
weighted by their bootstrap errors, and reporting chi-square says whether
the data (e.g. alternating rings of expansion and contraction) can be
explained by continuum elasticity.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from ..errors import InputError

__all__ = ["ContinuumFit", "fit_centre_of_dilatation"]


@dataclass
class ContinuumFit:
    """Result of :func:`fit_centre_of_dilatation` (A in pm·Å)."""

    amplitude_pm_A: float
    amplitude_se: float
    chi_square: float
    dof: int
    reduced_chi_square: float
    p_value: float
    r_min_A: float
    n_points: int

    def predict(self, r_A: np.ndarray) -> np.ndarray:
        return self.amplitude_pm_A / np.asarray(r_A, dtype=float)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def fit_centre_of_dilatation(r_A: np.ndarray, u_r_pm: np.ndarray, se_pm: np.ndarray, *,
                             r_min_A: float = 0.0) -> ContinuumFit:
    """Weighted least-squares fit of ``u_r = A / r`` to radial displacements.

    Parameters
    ----------
    r_A, u_r_pm, se_pm
        Distances (Å), radial displacements and their standard errors (pm),
        e.g. the shell means of one sublattice.
    r_min_A
        Leave out points closer than this (the defect's core).
    """
    r = np.asarray(r_A, dtype=float)
    u = np.asarray(u_r_pm, dtype=float)
    s = np.asarray(se_pm, dtype=float)
    ok = np.isfinite(r) & np.isfinite(u) & np.isfinite(s) & (s > 0) & (r >= r_min_A) & (r > 0)
    if ok.sum() < 2:
        raise InputError("a continuum fit needs at least two points with finite errors")
    x = 1.0 / r[ok]
    w = 1.0 / s[ok] ** 2
    a = float(np.sum(w * x * u[ok]) / np.sum(w * x * x))
    a_se = float(1.0 / np.sqrt(np.sum(w * x * x)))
    chi2 = float(np.sum(w * (u[ok] - a * x) ** 2))
    dof = int(ok.sum() - 1)
    return ContinuumFit(a, a_se, chi2, dof, chi2 / dof, float(stats.chi2.sf(chi2, dof)), float(r_min_A), int(ok.sum()))
