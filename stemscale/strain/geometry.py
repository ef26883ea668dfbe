"""Derived quantities of fitted column positions: spacings, displacements, shells, strain.

:class:`StrainGeometry` is built once from the matched site tables of a
class average and the pristine average.  Its :meth:`~StrainGeometry.evaluate`
maps fitted positions to every derived quantity and is vectorised over
any leading axes, so the same code turns the main fit into numbers and
thousands of bootstrap refits into their standard errors.

Conventions (all lengths of the outputs in pm):

* The centre of each average is the centroid of its metal columns within
  ``centre_radius_A`` of the central chalcogen site.  That set of sites is
  C3-symmetric, so a radially symmetric defect field does not move it, and
  it is far more precise than the (dim) central column.
* The displacement of a column is its position relative to the centre in
  the class average minus the same in the pristine average; ``u_r`` is
  its component along the ideal radial direction, ``u_t`` the tangential
  one (counter-clockwise).
* Shells group columns of one sublattice at the same ideal distance.
* Bonds are metal-metal nearest-neighbour pairs; triangles are the
  nearest-neighbour metal triangles, whose deformation gradient relative
  to pristine gives the strain (``exx, eyy, exy``, dilatation = trace).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import InputError

__all__ = ["StrainGeometry", "match_sites"]


def match_sites(defect_sites: pd.DataFrame, pristine_sites: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the sites present in both tables, matched by ``(site, n1, n2)``."""
    key = ["site", "n1", "n2"]
    a = defect_sites[key].reset_index().rename(columns={"index": "i_def"})
    b = pristine_sites[key].reset_index().rename(columns={"index": "i_pri"})
    m = a.merge(b, on=key, how="inner").sort_values("i_def")
    return m["i_def"].to_numpy(), m["i_pri"].to_numpy()


@dataclass
class StrainGeometry:
    """Index sets and ideal geometry shared by the class average and the pristine average.

    Build it with :meth:`from_sites`.

    Attributes
    ----------
    sites
        Matched site table (ideal ``dx_px``, ``dy_px``, ``r_px`` relative to the centre site).
    i_def, i_pri
        Rows of the defect / pristine fits for each matched site.
    pixel_size_A
        Å per pixel.
    centre_def, centre_pri
        Boolean masks (over matched sites) of the columns whose centroid is the centre.
    shell
        Shell id of every matched site; ``shells`` describes them.
    ww
        ``(3, 2)`` site pairs of the first metal shell (the W-W triangle around
        the defect), from the bond closest to the x (fast-scan) direction to
        the one closest to y.
    bonds
        ``(nb, 2)`` metal-metal nearest-neighbour pairs.
    triangles
        ``(nt, 3)`` metal triangles.
    """

    sites: pd.DataFrame
    i_def: np.ndarray
    i_pri: np.ndarray
    pixel_size_A: float
    centre_mask: np.ndarray
    shell: np.ndarray
    shells: pd.DataFrame
    ww: np.ndarray
    bonds: np.ndarray
    triangles: np.ndarray

    @classmethod
    def from_sites(cls, defect_sites: pd.DataFrame, pristine_sites: pd.DataFrame, *, pixel_size_A: float,
                   centre_radius_A: float = 8.0) -> "StrainGeometry":
        i_def, i_pri = match_sites(defect_sites, pristine_sites)
        if len(i_def) < 6:
            raise InputError("the class average and the pristine average share fewer than 6 sites; "
                             "do they have the same lattice orientation?")
        s = defect_sites.iloc[i_def].reset_index(drop=True)[["site", "n1", "n2", "dx_px", "dy_px", "r_px", "angle_deg"]].copy()
        ps = float(pixel_size_A)
        s["r_A"] = s["r_px"] * ps
        metal = (s["site"] == "M").to_numpy()
        centre = metal & (s["r_A"].to_numpy() <= centre_radius_A + 1e-6)
        if centre.sum() < 3:
            raise InputError(f"centre_radius_A={centre_radius_A} holds fewer than 3 metal columns")
        # shells: same sublattice and ideal distance (to 0.01 Å)
        key = s["site"] + ":" + (s["r_A"].round(2)).map("{:.2f}".format)
        codes, uniques = pd.factorize(key, sort=False)
        shells = pd.DataFrame({"shell": np.arange(len(uniques)), "site": [u.split(":")[0] for u in uniques],
                               "r_A": [float(u.split(":")[1]) for u in uniques]})
        shells["n_columns"] = np.bincount(codes, minlength=len(uniques))
        order = shells.sort_values(["site", "r_A"]).reset_index(drop=True)
        remap = np.empty(len(order), np.int64)
        remap[order["shell"].to_numpy()] = np.arange(len(order))
        codes = remap[codes]
        order["shell"] = np.arange(len(order))
        order["index_in_site"] = order.groupby("site").cumcount() + 1
        s["shell"] = codes
        # first metal shell: the three closest metal sites
        mi = np.flatnonzero(metal)
        first = mi[np.argsort(s["r_px"].to_numpy()[mi], kind="stable")[:3]]
        ww = np.array([[first[0], first[1]], [first[0], first[2]], [first[1], first[2]]])
        # order the bonds from the most horizontal (fast scan, x) to the most vertical
        ideal = s[["dx_px", "dy_px"]].to_numpy()
        bv = ideal[ww[:, 1]] - ideal[ww[:, 0]]
        ww = ww[np.argsort(np.abs(bv[:, 1]) / np.hypot(bv[:, 0], bv[:, 1]), kind="stable")]
        # metal nearest-neighbour bonds and triangles (from ideal positions)
        pts = s[["dx_px", "dy_px"]].to_numpy()[mi]
        from scipy.spatial import Delaunay, cKDTree

        dnn, _ = cKDTree(pts).query(pts, k=2)
        a = float(np.median(dnn[:, 1]))
        pairs = cKDTree(pts).query_pairs(1.1 * a, output_type="ndarray")
        bonds = mi[pairs] if len(pairs) else np.zeros((0, 2), np.int64)
        tri = Delaunay(pts).simplices
        sides = np.stack([np.hypot(*(pts[tri[:, i]] - pts[tri[:, j]]).T) for i, j in ((0, 1), (0, 2), (1, 2))], axis=1)
        tri = tri[(sides < 1.1 * a).all(axis=1)]
        return cls(s, i_def, i_pri, ps, centre, codes, order, ww, bonds, mi[tri])

    # ------------------------------------------------------------------ evaluation
    def _centre(self, xy: np.ndarray) -> np.ndarray:
        return np.nanmean(xy[..., self.centre_mask, :], axis=-2)

    def evaluate(self, xy_def: np.ndarray, xy_pri: np.ndarray) -> dict[str, np.ndarray]:
        """All derived quantities from fitted positions.

        Parameters
        ----------
        xy_def, xy_pri
            ``(..., n_def, 2)`` and ``(..., n_pri, 2)`` fitted positions (px)
            of the rows of the two fits (leading axes broadcast, e.g. bootstrap
            resamples).

        Returns
        -------
        dict of arrays (pm unless named otherwise) with leading axes kept:
        ``u`` (..., n, 2), ``u_r``, ``u_t`` (..., n), ``shell_u_r``,
        ``shell_u_t`` (..., n_shells), ``ww_def``, ``ww_pri`` (..., 3),
        ``ww_mean_def``, ``ww_mean_pri``, ``ww_change`` (...),
        ``bond_change`` (..., n_bonds), ``strain`` (..., n_tri, 3) and
        ``dilatation`` (..., n_tri) (dimensionless), ``centre_def``,
        ``centre_pri`` (..., 2) in px.
        """
        to_pm = self.pixel_size_A * 100.0
        d = np.asarray(xy_def, dtype=float)[..., self.i_def, :]
        p = np.asarray(xy_pri, dtype=float)[..., self.i_pri, :]
        cd, cp = self._centre(d), self._centre(p)
        rd = d - cd[..., None, :]
        rp = p - cp[..., None, :]
        u = (rd - rp) * to_pm
        ideal = self.sites[["dx_px", "dy_px"]].to_numpy()
        r = np.hypot(ideal[:, 0], ideal[:, 1])
        with np.errstate(invalid="ignore", divide="ignore"):
            rhat = np.where(r[:, None] > 0, ideal / r[:, None], 0.0)
        u_r = (u * rhat).sum(-1)
        u_t = u[..., 1] * rhat[:, 0] - u[..., 0] * rhat[:, 1]
        ns = len(self.shells)
        onehot = np.zeros((len(self.shell), ns))
        onehot[np.arange(len(self.shell)), self.shell] = 1.0
        cnt = onehot.sum(0)
        shell_u_r = np.einsum("...n,ns->...s", np.nan_to_num(u_r), onehot) / cnt
        shell_u_t = np.einsum("...n,ns->...s", np.nan_to_num(u_t), onehot) / cnt
        # NaN in a member makes the shell mean NaN
        bad = np.einsum("...n,ns->...s", np.isnan(u_r).astype(float), onehot) > 0
        shell_u_r = np.where(bad, np.nan, shell_u_r)
        shell_u_t = np.where(bad, np.nan, shell_u_t)

        def dist(x: np.ndarray, pairs: np.ndarray) -> np.ndarray:
            v = x[..., pairs[:, 0], :] - x[..., pairs[:, 1], :]
            return np.hypot(v[..., 0], v[..., 1]) * to_pm

        ww_def, ww_pri = dist(d, self.ww), dist(p, self.ww)
        bond_change = dist(d, self.bonds) - dist(p, self.bonds) if len(self.bonds) else np.zeros(d.shape[:-2] + (0,))
        strain = self._strain(d, p)
        return {
            "u": u, "u_r": u_r, "u_t": u_t, "shell_u_r": shell_u_r, "shell_u_t": shell_u_t,
            "ww_def": ww_def, "ww_pri": ww_pri, "ww_mean_def": ww_def.mean(-1), "ww_mean_pri": ww_pri.mean(-1),
            "ww_change": ww_def.mean(-1) - ww_pri.mean(-1), "bond_change": bond_change,
            "strain": strain, "dilatation": strain[..., 0] + strain[..., 1],
            "centre_def": cd, "centre_pri": cp,
        }

    def _strain(self, d: np.ndarray, p: np.ndarray) -> np.ndarray:
        if not len(self.triangles):
            return np.zeros(d.shape[:-2] + (0, 3))
        t = self.triangles
        ed = np.stack([d[..., t[:, 1], :] - d[..., t[:, 0], :], d[..., t[:, 2], :] - d[..., t[:, 0], :]], axis=-1)
        ep = np.stack([p[..., t[:, 1], :] - p[..., t[:, 0], :], p[..., t[:, 2], :] - p[..., t[:, 0], :]], axis=-1)
        # F ep = ed  ->  F = ed ep^-1   (2 x 2 per triangle)
        F = ed @ np.linalg.inv(ep)
        exx = F[..., 0, 0] - 1.0
        eyy = F[..., 1, 1] - 1.0
        exy = 0.5 * (F[..., 0, 1] + F[..., 1, 0])
        return np.stack([exx, eyy, exy], axis=-1)

    def triangle_centres(self) -> np.ndarray:
        """(nt, 2) ideal centroids (px, relative to the centre site) of the strain triangles."""
        ideal = self.sites[["dx_px", "dy_px"]].to_numpy()
        return ideal[self.triangles].mean(axis=1)

    def bond_midpoints(self) -> np.ndarray:
        ideal = self.sites[["dx_px", "dy_px"]].to_numpy()
        return ideal[self.bonds].mean(axis=1)
