"""Tiled inference: coverage and stitching, dihedral TTA, padding, pixel-size checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stemscale.detect import check_pixel_size, predict_proba, resample_image, standardise
from stemscale.detect.inference import (blend_weight, dihedral, dihedral_inverse, predict_windows,
                                        window_starts)
from stemscale.errors import InputError


@pytest.mark.parametrize("length,window,overlap", [(256, 256, 64), (300, 256, 64), (1024, 256, 64),
                                                   (1000, 128, 32), (257, 256, 0)])
def test_windows_cover_everything_with_required_overlap(length, window, overlap):
    s = window_starts(length, window, overlap)
    assert s[0] == 0 and s[-1] + window == length
    assert all(b - a <= window - overlap for a, b in zip(s, s[1:]))
    assert all(b > a for a, b in zip(s, s[1:]))


def test_dihedral_inverse_roundtrip_and_group_size():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    seen = set()
    for k in range(8):
        y = dihedral(x, k)
        assert torch.equal(dihedral_inverse(y, k), x)
        seen.add(tuple(y.flatten().tolist()))
    assert len(seen) == 8  # the 8 transforms are distinct


@pytest.mark.parametrize("shape", [(300, 517), (100, 90), (256, 256)])
def test_stitching_reproduces_a_pointwise_classifier_exactly(pointwise_model, shape):
    rng = np.random.default_rng(0)
    img = rng.gamma(2.0, 3.0, shape).astype(np.float32)
    p = predict_proba(img, pointwise_model, window=128, overlap=32)
    # oracle: the same 1x1 classifier applied to the whole standardised image at once
    z = (img - img.mean(dtype=np.float64)) / img.std(dtype=np.float64)
    with torch.no_grad():
        ref = torch.softmax(pointwise_model.network(torch.from_numpy(z[None, None].astype(np.float32))), 1)
    assert p.shape == (9, *shape)
    np.testing.assert_allclose(p, ref[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(p.sum(0), 1.0, atol=1e-5)


def test_tta_output_is_rotation_and_flip_equivariant(random_model):
    rng = np.random.default_rng(3)
    img = rng.normal(size=(160, 160)).astype(np.float32)
    kw = dict(window=96, overlap=32)
    p = predict_proba(img, random_model, tta=True, **kw)
    for k in (1, 2, 3):
        pr = predict_proba(np.rot90(img, k).copy(), random_model, tta=True, **kw)
        np.testing.assert_allclose(pr, np.rot90(p, k, axes=(1, 2)), atol=2e-5)
    pf = predict_proba(img[:, ::-1].copy(), random_model, tta=True, **kw)
    np.testing.assert_allclose(pf, p[:, :, ::-1], atol=2e-5)
    # without TTA a random network is not equivariant: the test above is not vacuous
    q = predict_proba(img, random_model, **kw)
    qr = predict_proba(np.rot90(img).copy(), random_model, **kw)
    assert np.abs(qr - np.rot90(q, 1, axes=(1, 2))).max() > 1e-3


def test_tta_average_equals_mean_over_transformed_inputs(random_model):
    x = torch.randn(2, 1, 64, 64)
    p = predict_windows(random_model, x, tta=True)
    with torch.no_grad():
        manual = sum(dihedral_inverse(torch.softmax(random_model.network(dihedral(x, k)), 1), k)
                     for k in range(8)) / 8
    torch.testing.assert_close(p, manual, atol=1e-6, rtol=1e-5)


def test_edges_are_padded_with_the_mean_not_reflected():
    # a 9x9 convolution sees 4 px beyond the image edge; the oracle pads the standardised
    # image with zeros (its mean), so a reflected or repeated edge would not match
    from stemscale.detect import ModelConfig
    from tests.detect.conftest import wrap

    cfg = ModelConfig(base_filters=4, depth=4)
    torch.manual_seed(2)
    net = torch.nn.Conv2d(1, cfg.n_classes, 9, padding=4)
    loaded = wrap(net, cfg)
    rng = np.random.default_rng(1)
    img = rng.normal(5.0, 2.0, (40, 100)).astype(np.float32)
    p = predict_proba(img, loaded, window=128, overlap=32)
    z = (img - img.mean(dtype=np.float64)) / img.std(dtype=np.float64)
    zp = np.zeros((128, 128), np.float32)
    zp[:40, :100] = z
    with torch.no_grad():
        ref = torch.softmax(net(torch.from_numpy(zp[None, None])), 1)[0, :, :40, :100].numpy()
    np.testing.assert_allclose(p, ref, atol=1e-5)


def test_bad_images_are_refused(random_model):
    with pytest.raises(InputError, match="2-D"):
        predict_proba(np.zeros((2, 64, 64)), random_model)
    bad = np.ones((64, 64))
    bad[3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        predict_proba(bad, random_model)
    with pytest.raises(InputError, match="constant"):
        predict_proba(np.ones((64, 64)), random_model)
    with pytest.raises(InputError, match="multiple"):
        predict_proba(np.random.rand(64, 64), random_model, window=90)


def test_standardise_uses_given_statistics():
    x = np.array([[1.0, 3.0]])
    np.testing.assert_allclose(standardise(x), [[-1.0, 1.0]])
    np.testing.assert_allclose(standardise(x, stats=(1.0, 2.0)), [[0.0, 1.0]])


def test_pixel_size_mismatch_over_ten_percent_is_refused_or_resampled():
    assert check_pixel_size(0.2074 * 1.09, 0.2074, resample=False) == 1.0
    with pytest.raises(InputError, match=r"12\.70 pm.*20\.74 pm.*resample"):
        check_pixel_size(0.127, 0.2074, resample=False)
    assert check_pixel_size(0.127, 0.2074, resample=True) == pytest.approx(0.127 / 0.2074)
    with pytest.raises(InputError, match="positive"):
        check_pixel_size(0.0, 0.2074, resample=True)


def test_resampling_keeps_a_peak_at_the_same_physical_place():
    # a Gaussian at (x, y) = (60.3, 41.7) px of 0.127 Å; resampled to 0.2074 Å pixels its
    # centre must sit at (x + 0.5) * z - 0.5 with z = 0.127 / 0.2074
    yy, xx = np.mgrid[0:128, 0:160]
    img = np.exp(-((xx - 60.3) ** 2 + (yy - 41.7) ** 2) / (2 * 5.0**2))
    z = 0.127 / 0.2074
    out = resample_image(img, z)
    assert out.shape == (round(128 * z), round(160 * z))
    zy, zx = out.shape[0] / 128, out.shape[1] / 160
    oy, ox = np.mgrid[0 : out.shape[0], 0 : out.shape[1]]
    w = out**4  # sharpen so the tails do not bias the centroid
    cx, cy = (w * ox).sum() / w.sum(), (w * oy).sum() / w.sum()
    assert cx == pytest.approx((60.3 + 0.5) * zx - 0.5, abs=0.05)
    assert cy == pytest.approx((41.7 + 0.5) * zy - 0.5, abs=0.05)


def test_blend_weight_is_symmetric_and_positive():
    w = blend_weight(64, 16)
    assert w.min() > 0 and w.max() == 1
    np.testing.assert_allclose(w, w.T)
    np.testing.assert_allclose(w, w[::-1, ::-1])
