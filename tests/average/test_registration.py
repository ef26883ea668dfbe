"""Registration recovers known sub-pixel shifts; shifting and cropping are exact."""

from __future__ import annotations

import numpy as np
import pytest

from stemscale.average import apply_shifts, central, extract_crops, register, rot180
from stemscale.average.registration import cross_correlation_shifts
from stemscale.errors import InputError

from .conftest import lattice_frame


def shifted_crops(n, dose, seed):
    """Noisy crops whose lattice is moved by known random sub-pixel offsets."""
    rng = np.random.default_rng(seed)
    true, crops = [], []
    for k in range(n):
        d = rng.uniform(-0.7, 0.7, 2)
        f = lattice_frame(d, seed=seed * 100 + k + 1, dose=dose)
        crops.append(extract_crops(f.image, [80], [80], 128)[0])
        true.append(-d)  # the shift that moves the crop back onto the reference
    return np.array(crops, dtype=float), np.array(true)


def test_recovers_subpixel_shifts_on_noisy_crops(reference_crop):
    # 100x the paper's dose: the noise floor of a 128 px crop is ~0.003 px, so any error is bias
    crops, true = shifted_crops(10, 7300.0 * 100, seed=1)
    shifts, score = register(crops, reference_crop * 100)
    err = np.abs(shifts - true)
    assert err.max() < 0.01
    assert (score > 0.9).all()


def test_unbiased_at_the_paper_dose(reference_crop):
    crops, true = shifted_crops(16, 7300.0, seed=2)
    for mask in (0.0, 20.0):
        shifts, _ = register(crops, reference_crop, mask_radius_px=mask)
        err = shifts - true
        # noise-limited scatter (~0.03 px from ~150 columns at ~7 pm each) and no bias
        assert np.sqrt(np.mean(err**2)) < 0.05
        assert np.all(np.abs(err.mean(axis=0)) < 0.01 + 3 * err.std(axis=0) / np.sqrt(len(err)))


def test_integer_and_large_shifts_and_limit(reference_crop):
    moved = np.roll(reference_crop, (2, -3), axis=(0, 1))[None]
    s = cross_correlation_shifts(moved - moved.mean(), reference_crop - reference_crop.mean(), max_shift_px=4)
    assert np.allclose(s, [[-2, 3]], atol=1e-6)


def test_fourier_shift_matches_a_moved_lattice():
    # a band-limited (noiseless) image shifted in Fourier space equals the image rendered moved
    f0 = lattice_frame((0.0, 0.0))
    f1 = lattice_frame((0.3, -0.45))
    crops = extract_crops(f1.expected, [80], [80], 128, margin=16)
    back = apply_shifts(crops, [[-0.3, 0.45]], crop=128)[0]
    ref = extract_crops(f0.expected, [80], [80], 128)[0]
    inner = (slice(16, -16), slice(16, -16))
    assert np.max(np.abs(back[inner] - ref[inner])) < 4e-3 * ref.max()  # Gibbs ringing of the non-periodic crop
    spline = apply_shifts(crops, [[-0.3, 0.45]], crop=128, method="spline")[0]
    assert np.max(np.abs(spline[inner] - ref[inner])) < 2e-2 * ref.max()


def test_rot180_about_centre_pixel():
    rng = np.random.default_rng(0)
    img = rng.random((41, 41))
    c = 20
    crops = extract_crops(img, [c], [c], 16, margin=2)      # edge 20, centre pixel 10
    rotated = central(rot180(crops), 16)[0]
    want = extract_crops(img[::-1, ::-1], [40 - c], [40 - c], 16)[0]  # rotation about pixel c
    assert np.array_equal(rotated, want)


def test_bad_inputs(reference_crop):
    with pytest.raises(InputError, match="do not match"):
        register(np.zeros((2, 10, 10)), reference_crop)
    with pytest.raises(InputError, match="margin"):
        apply_shifts(np.zeros((1, 132, 132)), [[3.0, 0.0]], crop=128)
    with pytest.raises(InputError, match="leaves the image"):
        extract_crops(np.zeros((100, 100)), [10], [50], 64)
