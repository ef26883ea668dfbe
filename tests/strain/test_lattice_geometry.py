"""Reference lattice, derived geometry and the continuum fit, against analytic values."""

from __future__ import annotations

import numpy as np
import pytest

from stemscale.errors import InputError
from stemscale.strain import HexLattice, StrainGeometry, fit_centre_of_dilatation, fit_lattice
from stemscale.lattice import defect_site_shift

PS = 0.2074
A = 3.297


def frame(rotation=0.0, offset=(0.3, 0.2), shape=(128, 128)):
    from stemscale.simulate import Sample, simulate_frame

    return simulate_frame(shape, sample=Sample(concentrations={}, rotation_deg=rotation, offset_A=offset), seed=1,
                          labels=False)


@pytest.mark.parametrize("rotation, basis", [(0.0, 1 / 3), (60.0, 2 / 3), (13.0, 1 / 3)])
def test_fit_lattice_recovers_truth(rotation, basis):
    f = frame(rotation)
    lat = fit_lattice(f.expected, A / PS)
    assert abs(lat.a_px * PS - A) < 2e-3
    assert abs(((lat.angle_deg - rotation + 30) % 60) - 30) < 0.05
    assert lat.x_basis == pytest.approx(basis)
    for site in ("M", "X"):
        xy = f.truth[f.truth["site"] == site][["x_px", "y_px"]].to_numpy()
        _, pos = lat.nearest(xy, site)
        assert np.abs(pos - xy).max() < 0.05


def test_sites_are_indexed_from_the_central_chalcogen():
    f = frame()
    lat = fit_lattice(f.expected, A / PS)
    s = lat.sites((128, 128), margin=4)
    centre = s[(s["n1"] == 0) & (s["n2"] == 0) & (s["site"] == "X")]
    assert len(centre) == 1 and centre["r_px"].iloc[0] == 0
    assert np.hypot(centre["x_px"].iloc[0] - 64, centre["y_px"].iloc[0] - 64) < A / PS
    first = s[s["site"] == "M"].nsmallest(3, "r_px")
    assert np.allclose(first["r_px"] * PS, A / np.sqrt(3), atol=5e-3)
    # the recentring shift moves that site onto the centre pixel
    d = defect_site_shift(f.expected, A / PS)
    assert np.allclose([centre["y_px"].iloc[0] + d[0], centre["x_px"].iloc[0] + d[1]], [64, 64], atol=1e-9)


def ideal_sites(radius_px=50.0):
    a = A / PS
    lat = HexLattice(np.array([a, 0.0]), np.array([a / 2, a * np.sqrt(3) / 2]), np.array([64.0, 64.0]) - (np.array([a, 0]) + np.array([a / 2, a * np.sqrt(3) / 2])) / 3)
    s = lat.sites((128, 128))
    return s[s["r_px"] <= radius_px].reset_index(drop=True)


def test_geometry_recovers_an_injected_radial_field():
    s = ideal_sites()
    xy = s[["x_px", "y_px"]].to_numpy()
    r = s["r_px"].to_numpy()
    u_pm = np.where(r > 0, 3.0 * np.cos(r / 5.0), 0.0)  # any radial field (the centre cannot move)
    with np.errstate(invalid="ignore"):
        rhat = np.where(r[:, None] > 0, (xy - xy[0]) / r[:, None], 0)
    moved = xy + rhat * (u_pm / (PS * 100))[:, None] + np.array([0.37, -0.21])  # plus a rigid shift
    g = StrainGeometry.from_sites(s, s, pixel_size_A=PS)
    q = g.evaluate(moved, xy)
    assert np.allclose(q["u_r"], u_pm, atol=1e-9)
    assert np.allclose(q["u_t"], 0.0, atol=1e-9)
    for k, row in g.shells.iterrows():
        assert np.isclose(q["shell_u_r"][k], np.mean(u_pm[g.shell == k]))
    # the W triangle: each W moves out by u(r1) -> spacings grow by sqrt(3) u(r1)
    r1 = A / np.sqrt(3) / PS
    assert np.allclose(q["ww_def"] - q["ww_pri"], np.sqrt(3) * 3.0 * np.cos(r1 / 5.0), atol=1e-9)
    assert np.isclose(q["ww_mean_pri"], A * 100, atol=1e-6)
    # a batch of resamples is evaluated at once
    qb = g.evaluate(np.stack([moved, xy]), np.stack([xy, xy]))
    assert qb["u_r"].shape == (2, len(s)) and np.allclose(qb["u_r"][1], 0)


def test_uniform_expansion_gives_its_strain():
    s = ideal_sites()
    xy = s[["x_px", "y_px"]].to_numpy()
    c = xy[0]
    g = StrainGeometry.from_sites(s, s, pixel_size_A=PS)
    q = g.evaluate(c + 1.01 * (xy - c), xy)
    assert np.allclose(q["strain"][:, :2], 0.01) and np.allclose(q["strain"][:, 2], 0.0, atol=1e-12)
    assert np.allclose(q["dilatation"], 0.02)
    assert np.allclose(q["bond_change"], 0.01 * A * 100)
    shear = np.array([[1.0, 0.004], [0.004, 1.0]])
    q = g.evaluate(c + (xy - c) @ shear.T, xy)
    assert np.allclose(q["strain"][:, 2], 0.004) and np.allclose(q["dilatation"], 0.0, atol=1e-12)


def test_continuum_fit():
    r = np.array([1.9, 3.8, 5.0, 6.9, 7.6, 8.3])
    se = np.full_like(r, 0.05)
    fit = fit_centre_of_dilatation(r, 4.0 / r, se)
    assert fit.amplitude_pm_A == pytest.approx(4.0) and fit.chi_square == pytest.approx(0.0, abs=1e-18)
    assert fit.amplitude_se == pytest.approx(1.0 / np.sqrt(np.sum((1 / r) ** 2 / se**2)))
    osc = fit_centre_of_dilatation(r, 3 * np.cos(2 * np.pi * (r - 1.9) / 6), se)
    assert osc.reduced_chi_square > 100 and osc.p_value < 1e-10
    with pytest.raises(InputError):
        fit_centre_of_dilatation(r[:1], r[:1], se[:1])
