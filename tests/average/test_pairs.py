"""Pairs are grouped by separation vector up to C3v and reversal, and mapped onto one orientation."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from stemscale.average.pairs import canonical_vector, find_pairs, pair_class_name, transform_crops
from stemscale.average.symmetry import symmetry_operations

A = 3.297 / 0.2074
A1 = np.array([A, 0.0])
A2 = np.array([A / 2, A * np.sqrt(3) / 2])


@pytest.mark.parametrize("m", [(1, 0), (1, 1), (2, 0), (2, 1), (3, -1)])
def test_equivalent_vectors_share_one_canonical_form(m):
    ops = symmetry_operations("C3v", 90.0)
    Am = np.column_stack([A1, A2])
    images = set()
    canon0 = canonical_vector(m, A1, A2)[0]
    for g in ops:
        for sign in (1, -1):
            v = sign * (g @ (m[0] * A1 + m[1] * A2))
            mm = tuple(int(x) for x in np.round(np.linalg.solve(Am, v)))
            images.add(mm)
            canon, op, swapped = canonical_vector(mm, A1, A2)
            assert canon == canon0
            # the returned operation really maps the pair onto the canonical vector
            w = ops[op] @ (mm[0] * A1 + mm[1] * A2) * (-1 if swapped else 1)
            assert np.allclose(w, canon[0] * A1 + canon[1] * A2)
    lengths = {round(np.hypot(*(a * A1 + b * A2)), 6) for a, b in images}
    assert len(lengths) == 1


def test_different_shells_are_different_configurations():
    names = {canonical_vector(m, A1, A2)[0] for m in [(1, 0), (1, 1), (2, 0), (2, 1), (0, 1), (-1, 2)]}
    assert len(names) == 4  # a, sqrt(3) a, 2a, sqrt(7) a


def test_find_pairs_on_hand_placed_defects():
    rows = []
    base = np.array([400.0, 400.0])
    for k, m in enumerate([(1, 0), (0, 1), (-1, 1), (1, 1)]):
        p = base + np.array([300.0 * k, 0.0])
        rows += [("SV", *p), ("SV", *(p + m[0] * A1 + m[1] * A2))]
    rows += [("SV", 400, 1000), ("SV", 400 + A, 1000), ("2Te", 420, 1010)]   # a crowded pair
    rows += [("SV", 1500, 1500)]                                              # a single
    df = pd.DataFrame(rows, columns=["class", "x_px", "y_px"])
    res = find_pairs(df, cls="SV", pixel_size_A=0.2074, mosaic_shape=(2000, 2000), a1_px=A1, a2_px=A2)
    assert res.counts["found"] == 5 and res.counts["crowded"] == 1
    assert res.counts["kept"] == {pair_class_name("SV", (1, 0)): 3, pair_class_name("SV", (1, 1)): 1}
    assert set(res.pairs["op"]) <= set(range(6))


def test_transform_crops_rotates_about_the_centre():
    img = np.zeros((1, 33, 33))
    img[0, 16, 26] = 1.0  # a spot 10 px to the right of the centre pixel
    ops = symmetry_operations("C3v", 90.0)
    out = transform_crops(img, np.array([1]), np.array([90.0]), order=1)[0]
    # rotation by +120 degrees in (x, y): (10, 0) -> (-5, 8.66)
    yx = np.array(np.unravel_index(np.argmax(out), out.shape)) - 16
    want = ops[1] @ np.array([10.0, 0.0])
    assert np.allclose(yx[::-1], want, atol=0.6)
    mirrored = transform_crops(img, np.array([3]), np.array([90.0]), order=1)[0]
    assert mirrored[16, 6] == pytest.approx(1.0)
