"""A superposing (linear) field has zero coupling; a pair-only extra displacement is found."""

from __future__ import annotations

import numpy as np

from stemscale.strain import StrainGeometry
from stemscale.strain.analysis import ClassStrain
from stemscale.strain.coupling import pair_coupling
from stemscale.lattice import HexLattice

PS = 0.2074
A = 3.297 / PS


def _sites(radius_px):
    a1, a2 = np.array([A, 0.0]), np.array([A / 2, A * np.sqrt(3) / 2])
    lat = HexLattice(a1, a2, np.array([64.0, 64.0]) - (a1 + a2) / 3)
    s = lat.sites((128, 128))
    return s[s["r_px"] <= radius_px].reset_index(drop=True), a1, a2


def _field(xy, centre):
    d = xy - centre
    r = np.hypot(*d.T)
    u = np.where(r > 1e-6, 2.0 * np.cos(r / 6.0) * np.exp(-r / 40.0), 0.0) / (PS * 100)  # px
    with np.errstate(invalid="ignore"):
        return np.where(r[:, None] > 1e-6, d / r[:, None], 0) * u[:, None]


def _strain(sites, xy_def):
    g = StrainGeometry.from_sites(sites, sites, pixel_size_A=PS)
    xy0 = sites[["x_px", "y_px"]].to_numpy()
    return ClassStrain("x", 1, 1, PS, g, None, None, g.evaluate(xy_def, xy0))


def test_superposing_fields_do_not_couple():
    single_sites, a1, a2 = _sites(58.0)
    pair_sites, _, _ = _sites(30.0)
    xs = single_sites[["x_px", "y_px"]].to_numpy()
    c = xs[0]
    single = _strain(single_sites, xs + _field(xs, c))
    m = (1, 1)
    v = m[0] * a1 + m[1] * a2
    xp = pair_sites[["x_px", "y_px"]].to_numpy()
    pair = _strain(pair_sites, xp + _field(xp, c) + _field(xp, c + v))
    out = pair_coupling(pair, single, m)
    t = out["table"]
    ok = np.isfinite(t["sum_ux_pm"])
    assert ok.sum() > 20
    assert np.allclose(t.loc[ok, ["coupling_ux_pm", "coupling_uy_pm"]], 0.0, atol=1e-9)
    # an extra displacement only present in the pair is recovered as coupling
    extra = np.zeros_like(xp)
    extra[5] = [0.5 / (PS * 100), 0.0]
    pair2 = _strain(pair_sites, xp + _field(xp, c) + _field(xp, c + v) + extra)
    t2 = pair_coupling(pair2, single, m)["table"]
    assert t2.loc[5, "coupling_ux_pm"] - np.nanmean(t2["coupling_ux_pm"][pair.geometry.centre_mask]) > 0.4
