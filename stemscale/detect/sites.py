"""Put detected defects on their refined lattice sites."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from .postprocess import DEFECT_SITE

__all__ = ["place_defects"]


def place_defects(defects: pd.DataFrame, atoms: pd.DataFrame, lattice_nn: float) -> pd.DataFrame:
    """Put each defect on its refined lattice site.

    A defect whose column is still there (SV, 2Te, TeSe, MSub) takes the
    fitted position of the nearest column of its site; an empty site (DV, MV)
    takes the centroid of the three nearest columns of the other sublattice,
    which surround it in 2H projection.  Otherwise the FCN centroid is kept.

    Parameters
    ----------
    defects
        ``class``, ``x_px``, ``y_px`` of each defect.
    atoms
        Refined columns: ``x_px``, ``y_px``, ``site`` (``"M"``/``"X"``).
    lattice_nn
        Nearest column distance in pixels.

    Returns
    -------
    pandas.DataFrame
        ``defects`` with moved positions and a ``position`` column
        (``"column"``, ``"site"`` or ``"fcn"``).
    """
    if defects.empty:
        defects = defects.copy()
        defects["position"] = pd.Series(dtype=object)
        return defects
    out = defects.copy()
    out["position"] = "fcn"
    fitted = atoms[np.isfinite(atoms["x_px"]) & np.isfinite(atoms["y_px"])]
    trees: dict[str, tuple[cKDTree, pd.DataFrame] | None] = {}
    for site in ("M", "X"):
        sel = fitted[fitted["site"] == site]
        trees[site] = (cKDTree(sel[["x_px", "y_px"]].to_numpy()), sel) if len(sel) else None
    for i, row in out.iterrows():
        site = DEFECT_SITE.get(row["class"], "X")
        empty = row["class"] in ("DV", "MV")
        point = (row["x_px"], row["y_px"])
        own = trees[site]
        if not empty and own is not None:
            dist, j = own[0].query(point)
            if dist <= 0.5 * lattice_nn:
                hit = own[1].iloc[j]
                out.loc[i, ["x_px", "y_px", "position"]] = [hit["x_px"], hit["y_px"], "column"]
                continue
        other = "X" if site == "M" else "M"
        ring_trees = trees[other]
        if ring_trees is not None and len(ring_trees[1]) >= 3:
            dist, j = ring_trees[0].query(point, k=3)
            if np.all(dist <= 1.5 * lattice_nn):
                ring = ring_trees[1].iloc[j]
                out.loc[i, ["x_px", "y_px", "position"]] = [
                    ring["x_px"].mean(), ring["y_px"].mean(), "site",
                ]
    return out
