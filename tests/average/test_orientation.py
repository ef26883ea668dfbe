"""Lattice orientation: rotated grains rejected, inverted domains recognised and mapped."""

from __future__ import annotations

import numpy as np
import pytest

from stemscale.average import check_orientation, extract_crops, lattice_angle, map_orientation, symmetrise
from stemscale.average.symmetry import symmetry_operations

from .conftest import PS, lattice_frame

A_PX = 3.297 / PS


@pytest.mark.parametrize("rotation", [0.0, 13.0, -21.0, 29.0])
def test_lattice_angle(rotation):
    f = lattice_frame(rotation=rotation, shape=(128, 128))
    got = lattice_angle(f.expected, A_PX)
    assert abs(((got - rotation + 30) % 60) - 30) < 0.3


def test_check_and_map_orientation():
    ref = extract_crops(lattice_frame(seed=1).expected, [80], [80], 128)[0]
    same = lattice_frame(seed=2)
    inverted = lattice_frame(seed=3, rotation=60.0)    # the other domain of the 2H lattice
    rotated = lattice_frame(seed=4, rotation=15.0)
    crops = np.stack([extract_crops(f.image, [80], [80], 128, margin=4)[0] for f in (same, inverted, rotated)])
    # crops are centred on a pixel, not on a chalcogen site; the check allows small shifts
    chk = check_orientation(crops, ref, period_px=A_PX)
    assert list(chk.status) == ["same", "inverted", "rotated"]
    mapped = map_orientation(crops[:2], chk.status[:2])
    chk2 = check_orientation(mapped, ref, period_px=A_PX)
    assert list(chk2.status) == ["same", "same"]
    assert chk2.score_same[1] > chk.score_same[1] + 0.2


def test_symmetrise_keeps_a_symmetric_lattice_and_averages_the_group():
    f = lattice_frame(shape=(129, 129))
    img = f.expected.astype(float)
    # the chalcogen site nearest the centre is the symmetry centre
    xs = f.truth[f.truth["site"] == "X"]
    k = np.argmin(np.hypot(xs["x_px"] - 64, xs["y_px"] - 64))
    c = (float(xs["x_px"].iloc[k]), float(xs["y_px"].iloc[k]))
    out = symmetrise(img, centre_xy=c, group="C3v", mirror_angle_deg=90.0)
    inner = (slice(30, 99), slice(30, 99))
    assert np.max(np.abs(out[inner] - img[inner])) < 0.02 * img.max()
    ops = symmetry_operations("C3v")
    assert len(ops) == 6
    for a in ops:
        for b in ops:  # closed under composition
            assert any(np.allclose(a @ b, g) for g in ops)
