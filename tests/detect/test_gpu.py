"""CUDA inference: same answers as the CPU, and float16 autocast validated against float32."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from stemscale.detect import available_models, get_model, predict_proba

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif("wse2" not in available_models(), reason="no shipped weights"),
]


def _image():
    from stemscale.simulate import simulate_frame

    return simulate_frame((512, 512), seed=99, dose_e_per_a2=7300.0).image


@contextlib.contextmanager
def _strict_fp32():
    """cuDNN convolutions in true float32: torch lets them use TF32 (10-bit mantissa) by default."""
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = before


def _close(p, ref, what):
    assert np.abs(p - ref).max() < 0.05, what
    assert np.mean(p.argmax(0) == ref.argmax(0)) > 0.999, what


def test_cuda_matches_cpu_and_amp_matches_fp32():
    img = _image()
    cpu = predict_proba(img, get_model("wse2", device="cpu"), tta=True)
    gpu = get_model("wse2", device="cuda")
    with _strict_fp32():
        p32 = predict_proba(img, gpu, tta=True)
    np.testing.assert_allclose(p32, cpu, atol=1e-3)
    # what runs by default: TF32 convolutions, and float16 autocast on request
    _close(predict_proba(img, gpu, tta=True), p32, "TF32 (torch's default) against float32")
    _close(predict_proba(img, gpu, tta=True, amp=True), p32, "float16 autocast against float32")
