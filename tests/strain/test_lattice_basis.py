"""Lattice orientation compared in one basis: near +-30 degrees the choice of a1 flips x_basis.

The strain stage used to compare the ``x_basis`` of the class and the pristine lattice fits
directly, and failed ("different lattice orientations") on any sample whose lattice sits near
30 degrees, where noise makes the two fits call directions 60 degrees apart ``a1``.
"""

from __future__ import annotations

import numpy as np
import pytest

from stemscale.errors import InputError
from stemscale.lattice import HexLattice, defect_site_shift, fit_lattice
from stemscale.strain.analysis import _same_lattice

PS = 0.2074
A = 3.297


def frame(rotation=0.0, offset=(0.3, 0.2), shape=(128, 128)):
    from stemscale.simulate import Sample, simulate_frame

    return simulate_frame(shape, sample=Sample(concentrations={}, rotation_deg=rotation, offset_A=offset),
                          seed=1, labels=False)


def test_rotated_basis_describes_the_same_sites():
    a = A / PS
    lat = HexLattice(np.array([a, 0.0]), np.array([a / 2, a * np.sqrt(3) / 2]), np.array([3.0, 4.0]), 1 / 3)
    x = lat.sites((96, 96))
    for k in range(6):
        other = lat.rotated_basis(k)
        assert other.x_basis == pytest.approx(1 / 3 if k % 2 == 0 else 2 / 3)
        y = other.sites((96, 96))
        for site in ("M", "X"):
            p = np.sort(x[x["site"] == site][["x_px", "y_px"]].to_numpy().round(6), axis=0)
            q = np.sort(y[y["site"] == site][["x_px", "y_px"]].to_numpy().round(6), axis=0)
            assert np.allclose(p, q)
        angle, same = other.orientation_difference(lat)
        assert abs(angle) < 1e-9 and same


def test_fits_either_side_of_30_degrees_are_the_same_domain():
    below, above = fit_lattice(frame(29.9).expected, A / PS), fit_lattice(frame(30.1).expected, A / PS)
    # the fits call directions 60 degrees apart a1, so x_basis differs ...
    assert below.angle_deg > 25 and above.angle_deg < -25
    assert below.x_basis != pytest.approx(above.x_basis)
    # ... while the lattices differ by 0.2 degrees, in the same domain
    angle, same = below.orientation_difference(above)
    assert abs(angle) == pytest.approx(0.2, abs=0.05) and same
    inverted = fit_lattice(frame(89.9).expected, A / PS)  # 60 degrees on: the mirror domain
    angle, same = inverted.orientation_difference(above)
    assert abs(angle) < 0.5 and not same


def test_strain_accepts_a_class_average_fitted_across_the_30_degree_boundary():
    pristine = fit_lattice(frame(30.05).expected, A / PS)
    lat = _same_lattice(frame(29.95, offset=(0.8, -0.4)).expected, pristine, A / PS)
    assert lat.orientation_difference(pristine) == (pytest.approx(0.0), True)
    with pytest.raises(InputError, match="inverted"):
        _same_lattice(frame(89.95).expected, pristine, A / PS)


def test_defect_site_shift_centres_the_requested_sublattice():
    f = frame(12.0)
    lat = fit_lattice(f.expected, A / PS)
    for site in ("M", "X"):
        d = defect_site_shift(f.expected, A / PS, site=site)
        _, pos = lat.nearest(np.array([[64.0, 64.0]]), site)
        assert np.allclose([pos[0, 1] + d[0], pos[0, 0] + d[1]], [64, 64], atol=1e-6)
        assert np.hypot(*d) <= A / PS / np.sqrt(3) + 1e-6  # never further than the sublattice's cell
    with pytest.raises(InputError, match="site"):
        defect_site_shift(f.expected, A / PS, site="hollow")
