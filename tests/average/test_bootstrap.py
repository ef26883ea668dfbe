"""The vectorised bootstrap reproduces explicit resampling and sigma / sqrt(N)."""

from __future__ import annotations

import numpy as np
import pytest

from stemscale.average import bootstrap_means, precision_slope, resample_counts, standard_error
from stemscale.errors import InputError


def test_counts_are_resamples_with_replacement():
    c = resample_counts(50, 300, seed=1)
    assert c.shape == (300, 50)
    assert np.all(c.sum(1) == 50)
    # each crop is drawn Binomial(50, 1/50) times: mean 1, variance 0.98
    assert abs(c.mean() - 1.0) < 0.01 and abs(c.var() - 0.98) < 0.05
    sub = resample_counts(50, 20, seed=1, subset=np.arange(10, 20))
    assert np.all(sub[:, :10] == 0) and np.all(sub[:, 20:] == 0) and np.all(sub.sum(1) == 10)


def test_means_match_explicit_resampling():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(40, 7))
    c = resample_counts(40, 5, seed=3)
    want = np.stack([np.repeat(data, c[b].astype(int), axis=0).mean(0) for b in range(5)])
    assert np.allclose(bootstrap_means(data, c), want)
    assert np.allclose(bootstrap_means(data, c, pixels=np.array([1, 4])), want[:, [1, 4]])


@pytest.mark.parametrize("n", [100, 1000])
def test_standard_error_is_sigma_over_sqrt_n(n):
    rng = np.random.default_rng(n)
    sigma = 6.0
    stack = rng.normal(330.0, sigma, size=(n, 3))
    se = standard_error(bootstrap_means(stack, resample_counts(n, 1000, seed=2)))
    expected = stack.std(0, ddof=1) / np.sqrt(n)
    # 1000 resamples estimate a standard deviation to ~2.2 %
    assert np.allclose(se, expected, rtol=0.08)
    assert np.allclose(se, sigma / np.sqrt(n), rtol=0.15)


def test_streams_a_crop_stack(tmp_path):
    from stemscale.io.crop_stack import CropStack
    from stemscale.io.crop_stack import create_stack, mark_stack_complete, write_part

    rng = np.random.default_rng(4)
    parts = [rng.normal(size=(n, 4, 4)) for n in (3, 5, 2)]
    url = tmp_path / "s.zarr"
    create_stack(url, crop=4, classes=["SV"])
    for k, p in enumerate(parts):
        write_part(url, "SV", f"b{k}", p, row_ids=np.arange(len(p)), shifts=np.zeros((len(p), 2)))
    mark_stack_complete(url)
    stack = CropStack.open(url, "SV")
    allc = np.concatenate(parts).reshape(10, -1).astype(np.float32).astype(float)
    c = resample_counts(10, 7, seed=0)
    assert np.allclose(bootstrap_means(stack, c), bootstrap_means(allc, c))


def test_precision_slope():
    n = np.array([100, 200, 400, 800, 1600])
    fit = precision_slope(n, 8.0 / np.sqrt(n))
    assert abs(fit["slope"] + 0.5) < 1e-9 and abs(fit["sigma1_from_fit"] - 8.0) < 1e-9
    with pytest.raises(InputError):
        precision_slope([100], [0.1])
    with pytest.raises(InputError):
        resample_counts(5, 0)
