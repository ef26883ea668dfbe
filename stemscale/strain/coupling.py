"""How the strain fields of two defects couple: pair field minus the superposition of singles.

For a pair configuration (canonical separation ``m = (m1, m2)`` in lattice
vectors, crops centred on the first defect), the displacement of a site
``(site, n1, n2)`` in the pair's class average is compared with the sum of
the isolated defect's displacements at that site seen from each member:
``u1(site, n1, n2) + u2(site, n1 - m1, n2 - m2)``.  The superposition is
put in the pair average's centring convention (its centroid over the same
centre columns is removed), so a purely linear (superposing) field gives a
coupling of zero.  Errors come from the bootstrap resamples of the pair and
of the single class (independent crop sets).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from .analysis import ClassStrain

__all__ = ["superposition", "pair_coupling"]


def _lookup(single: ClassStrain) -> dict[tuple[str, int, int], int]:
    s = single.geometry.sites
    return {(str(a), int(b), int(c)): k for k, (a, b, c) in enumerate(zip(s["site"], s["n1"], s["n2"]))}


def superposition(pair_sites: pd.DataFrame, single_u: np.ndarray, lookup: dict, m: tuple[int, int],
                  centre_mask: np.ndarray) -> np.ndarray:
    """Superposed displacement ``(..., n_sites, 2)`` of two singles at the pair's sites (pm).

    ``single_u`` is ``(..., n_single_sites, 2)``; sites missing from the
    single class's table (too far from one of the defects) give NaN.
    """
    lead = single_u.shape[:-2]
    out = np.zeros(lead + (len(pair_sites), 2))
    for j, (site, n1, n2) in enumerate(zip(pair_sites["site"], pair_sites["n1"], pair_sites["n2"])):
        k1 = lookup.get((str(site), int(n1), int(n2)))
        k2 = lookup.get((str(site), int(n1) - int(m[0]), int(n2) - int(m[1])))
        if k1 is None or k2 is None:
            out[..., j, :] = np.nan
            continue
        out[..., j, :] = single_u[..., k1, :] + single_u[..., k2, :]
    centre = np.nanmean(out[..., centre_mask, :], axis=-2)
    return out - centre[..., None, :]


def pair_coupling(pair: ClassStrain, single: ClassStrain, m: tuple[int, int]) -> dict[str, Any]:
    """Coupling of a pair's strain field: measured minus superposed single-defect displacements.

    Parameters
    ----------
    pair
        :class:`ClassStrain` of the pair configuration (crops centred on the first defect).
    single
        :class:`ClassStrain` of the isolated defect class.
    m
        Canonical separation (lattice vector indices) of the second defect.

    Returns
    -------
    dict
        ``table``: per site the pair displacement, the superposition and
        their difference (pm) with standard errors; ``chi_square``, ``dof``,
        ``p_value`` of the coupling against zero (sites with finite errors).
    """
    from scipy import stats

    if pair.pixel_size_A != single.pixel_size_A:
        raise InputError("the pair and the single-defect averages have different pixel sizes")
    lookup = _lookup(single)
    sites = pair.geometry.sites
    mask = pair.geometry.centre_mask
    sup = superposition(sites, single.values["u"], lookup, m, mask)
    coup = pair.values["u"] - sup
    se = np.full(coup.shape, np.nan)
    if "u" in pair.boot and "u" in single.boot:
        B = min(len(pair.boot["u"]), len(single.boot["u"]))
        sb = superposition(sites, single.boot["u"][:B], lookup, m, mask)
        cb = pair.boot["u"][:B] - sb
        with np.errstate(invalid="ignore"):
            se = np.nanstd(cb, axis=0, ddof=1)
        sup_se = np.nanstd(sb, axis=0, ddof=1)
    else:
        sup_se = np.full(coup.shape, np.nan)
    table = sites[["site", "n1", "n2", "r_A"]].copy()
    table["x_A"] = sites["dx_px"] * pair.pixel_size_A
    table["y_A"] = sites["dy_px"] * pair.pixel_size_A
    table["pair_ux_pm"], table["pair_uy_pm"] = pair.values["u"][:, 0], pair.values["u"][:, 1]
    table["sum_ux_pm"], table["sum_uy_pm"] = sup[:, 0], sup[:, 1]
    table["sum_ux_se_pm"], table["sum_uy_se_pm"] = sup_se[:, 0], sup_se[:, 1]
    table["coupling_ux_pm"], table["coupling_uy_pm"] = coup[:, 0], coup[:, 1]
    table["coupling_ux_se_pm"], table["coupling_uy_se_pm"] = se[:, 0], se[:, 1]
    z = np.concatenate([coup[:, 0] / se[:, 0], coup[:, 1] / se[:, 1]])
    z = z[np.isfinite(z)]
    chi2 = float(np.sum(z**2))
    dof = int(len(z))
    return {"table": table, "chi_square": chi2, "dof": dof,
            "p_value": float(stats.chi2.sf(chi2, dof)) if dof else float("nan"),
            "separation": tuple(int(v) for v in m)}
