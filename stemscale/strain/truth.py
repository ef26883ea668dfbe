"""The injected displacements a class average should recover (for simulated data).

A class average shows, for every lattice site near the defect, the *mean*
position of that site over the averaged crops.  The quantity to compare
with is therefore the mean over those crops of the injected displacement of
each site (the defect's own field plus whatever its neighbours add),
relative to the same centroid convention as
:class:`~stemscale.strain.geometry.StrainGeometry`, minus the same for the
pristine crops.  :func:`injected_displacements` computes exactly that from
the simulator's truth table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from ..errors import InputError
from .geometry import StrainGeometry

__all__ = ["mean_site_displacements", "injected_displacements"]


def mean_site_displacements(truth: pd.DataFrame, centres_xy: np.ndarray, geometry: StrainGeometry,
                            *, tolerance_px: float = 2.0) -> np.ndarray:
    """Mean injected displacement (pm) of every geometry site over crops centred on ``centres_xy``.

    Parameters
    ----------
    truth
        Simulator truth: ``x_px``, ``y_px`` (displaced), ``dx_pm``, ``dy_pm``
        (global pixels of the same mosaic as the centres).
    centres_xy
        ``(n, 2)`` true (sub-pixel) positions of the central sites.
    geometry
        The matched sites (ideal offsets ``dx_px``, ``dy_px`` from the centre site).
    tolerance_px
        Largest distance between an ideal site and the truth column matched to it.

    Returns
    -------
    ``(n_sites, 2)`` mean displacement relative to the centroid of the
    centre columns, in pm (NaN where no crop had the site).
    """
    for c in ("x_px", "y_px", "dx_pm", "dy_pm"):
        if c not in truth.columns:
            raise InputError(f"truth table lacks {c!r}")
    ps = geometry.pixel_size_A
    disp = truth[["dx_pm", "dy_pm"]].to_numpy(dtype=float)
    ideal = truth[["x_px", "y_px"]].to_numpy(dtype=float) - disp * 0.01 / ps
    tree = cKDTree(ideal)
    offs = geometry.sites[["dx_px", "dy_px"]].to_numpy()
    centres = np.asarray(centres_xy, dtype=float).reshape(-1, 2)
    total = np.zeros((len(offs), 2))
    count = np.zeros(len(offs))
    for centre in centres:
        # the centre's own ideal position: its displacement is ~0 by symmetry, use the nearest ideal site
        d0, j0 = tree.query(centre, k=1)
        c_ideal = ideal[j0] if d0 < tolerance_px else centre
        d, j = tree.query(c_ideal[None, :] + offs, k=1)
        ok = d < tolerance_px
        u = np.where(ok[:, None], disp[j], np.nan)
        centre_u = u[geometry.centre_mask]
        centre_u = centre_u[np.isfinite(centre_u).all(axis=1)]
        if not len(centre_u):
            continue  # no truth at the centre (e.g. an emptied column): no reference, skip it
        u = u - centre_u.mean(axis=0)
        good = np.isfinite(u).all(axis=1)
        total[good] += u[good]
        count[good] += 1
    with np.errstate(invalid="ignore"):
        return total / count[:, None]


def injected_displacements(truth: pd.DataFrame, defect_centres_xy: np.ndarray, pristine_centres_xy: np.ndarray,
                           geometry: StrainGeometry) -> dict[str, np.ndarray]:
    """What the class average minus the pristine average should show, from the simulator's truth.

    Returns
    -------
    dict with ``u`` (n_sites, 2), ``u_r``, ``u_t`` (n_sites) and
    ``shell_u_r`` (n_shells), all in pm, in the conventions of
    :meth:`StrainGeometry.evaluate`.
    """
    ud = mean_site_displacements(truth, defect_centres_xy, geometry)
    up = mean_site_displacements(truth, pristine_centres_xy, geometry)
    u = ud - up
    ideal = geometry.sites[["dx_px", "dy_px"]].to_numpy()
    r = np.hypot(ideal[:, 0], ideal[:, 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        rhat = np.where(r[:, None] > 0, ideal / r[:, None], 0.0)
    u_r = (u * rhat).sum(-1)
    u_t = u[:, 1] * rhat[:, 0] - u[:, 0] * rhat[:, 1]
    ns = len(geometry.shells)
    shell_u_r = np.array([np.nanmean(u_r[geometry.shell == s]) for s in range(ns)])
    shell_u_t = np.array([np.nanmean(u_t[geometry.shell == s]) for s in range(ns)])
    return {"u": u, "u_r": u_r, "u_t": u_t, "shell_u_r": shell_u_r, "shell_u_t": shell_u_t}
