"""CUDA inference: same answers as the CPU, and float16 autocast validated against float32."""

from __future__ import annotations

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


def test_cuda_matches_cpu_and_amp_matches_fp32():
    img = _image()
    cpu = predict_proba(img, get_model("wse2", device="cpu"), tta=True)
    gpu = get_model("wse2", device="cuda")
    p32 = predict_proba(img, gpu, tta=True)
    p16 = predict_proba(img, gpu, tta=True, amp=True)
    np.testing.assert_allclose(p32, cpu, atol=1e-3)
    assert np.abs(p16 - p32).max() < 0.05
    assert np.mean(p16.argmax(0) == p32.argmax(0)) > 0.999
