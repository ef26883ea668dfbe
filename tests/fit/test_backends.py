"""Every implementation gives the answers of the portable (array-API) reference."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from stemscale.fit import FitState, fit_batch
from stemscale.fit.models import get_model

from .conftest import gaussian_windows, perturbed_start, random_truth

MODELS = ("gauss2d", "gauss2d_elliptic", "gauss2d_rotated")


def _batch(model, estimator, n=300, shape=(7, 7), seed=20):
    rng = np.random.default_rng(seed)
    truth = random_truth(rng, n, shape, model)
    data = rng.poisson(gaussian_windows(truth, shape, model)).astype(np.float64)
    return data, perturbed_start(rng, truth)


def _assert_same(a, b, atol=1e-7):
    """Same states, same iteration counts (almost always), same parameters."""
    pa, pb = np.asarray(a[0]), np.asarray(b[0])
    sa, sb = np.asarray(a[1]), np.asarray(b[1])
    assert (sa == sb).mean() > 0.99
    same = sa == sb
    ia, ib = np.asarray(a[3]), np.asarray(b[3])
    assert (ia[same] == ib[same]).mean() > 0.99
    both = same & np.all(np.isfinite(pa), axis=1)
    np.testing.assert_allclose(pa[both], pb[both], rtol=1e-6, atol=atol)


def _tuple(r):
    return r.parameters, r.states, r.chi_square, r.iterations


@pytest.mark.parametrize("estimator", ["lse", "mle"])
@pytest.mark.parametrize("model", MODELS)
def test_numba_kernel_equals_portable(model, estimator):
    shape = (9, 9) if model == "gauss2d_rotated" else (7, 7)
    data, start = _batch(model, estimator, shape=shape)
    ref = fit_batch(data, start, model=model, estimator=estimator, backend="numpy")
    fast = fit_batch(data, start, model=model, estimator=estimator, backend="numba")
    assert ref.backend == "numpy" and fast.backend == "numba"
    _assert_same(_tuple(fast), _tuple(ref))
    np.testing.assert_allclose(fast.chi_square, ref.chi_square, rtol=1e-8)


def test_numba_equals_portable_with_weights_offsets_bounds_and_mask():
    data, start = _batch("gauss2d_elliptic", "lse", n=200)
    rng = np.random.default_rng(21)
    weights = 1.0 / np.maximum(data, 1.0)
    offset = rng.uniform(0, 5, data.shape)
    lo = np.array([0, 1, 1, 1.2, 0.5, 0])
    hi = np.array([2000, 5, 5, 3, 1.3, 100])
    kw = dict(weights=weights, offset=offset, bounds=(lo, hi), fit_mask=[1, 1, 1, 1, 1, 0])
    a = fit_batch(data, start, backend="numba", **kw)
    b = fit_batch(data, start, backend="numpy", **kw)
    _assert_same(_tuple(a), _tuple(b))


def test_float32_data_fit_like_float64():
    data, start = _batch("gauss2d_elliptic", "lse")
    a = fit_batch(data.astype(np.float32), start, backend="numba")
    b = fit_batch(data, start, backend="numba")
    _assert_same(_tuple(a), _tuple(b))


def test_torch_cpu_equals_numpy():
    torch = pytest.importorskip("torch")
    data, start = _batch("gauss2d_elliptic", "mle")
    ref = fit_batch(data, start, estimator="mle", backend="numpy")
    t = fit_batch(torch.from_numpy(data), torch.from_numpy(start), estimator="mle")
    assert t.backend == "torch" and isinstance(t.parameters, torch.Tensor)
    _assert_same(_tuple(t.to_numpy()), _tuple(ref), atol=1e-6)
    # NumPy input sent through torch on request
    t2 = fit_batch(data, start, estimator="mle", backend="torch")
    _assert_same(_tuple(t2.to_numpy()), _tuple(ref), atol=1e-6)


@pytest.mark.parametrize("estimator", ["lse", "mle"])
@pytest.mark.parametrize("model", MODELS)
def test_cuda_kernel_source_built_for_host_equals_numba(host_kernel, model, estimator):
    """The GPU kernel's own source, compiled as C++, follows the reference step for step."""
    shape = (9, 9) if model == "gauss2d_rotated" else (7, 7)
    data, start = _batch(model, estimator, shape=shape, seed=22)
    ref = fit_batch(data, start, model=model, estimator=estimator, backend="numba")
    out = host_kernel(get_model(model).code, data, start, mle=estimator == "mle", shape=shape)
    _assert_same(out, _tuple(ref))


def test_cuda_kernel_source_host_handles_weights_offsets_bounds_and_bad_windows(host_kernel):
    data, start = _batch("gauss2d_elliptic", "lse", n=100, seed=23)
    data[3] = np.nan
    data[4] = 0.0
    weights = 1.0 / np.maximum(data, 1.0)
    weights[3] = 1.0
    offset = np.random.default_rng(3).uniform(0, 5, data.shape)
    lo = np.array([0, 1, 1, 1.2, 0.5, -np.inf])
    hi = np.array([2000, 5, 5, 3, 1.3, np.inf])
    init = start.copy()
    init[4, 0] = 0.0
    ref = fit_batch(data, init, weights=weights, offset=offset, bounds=(lo, hi), backend="numba")
    out = host_kernel(1, data, init, weights=weights, offsets=offset, lower=lo, upper=hi)
    _assert_same(out, _tuple(ref))
    assert out[1][3] == FitState.INVALID_INPUT and out[1][4] == FitState.SINGULAR


@pytest.mark.gpu
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
@pytest.mark.parametrize("real", ["float", "double"])
def test_cuda_kernel_compiles_for_hopper(tmp_path, real):
    from stemscale.fit._cuda_source import CUDA_SOURCE

    src = tmp_path / "k.cu"
    src.write_text(CUDA_SOURCE)
    flags = [f"-DREAL={real}", "-DDATA_T=float"] + (["-DREAL_IS_FLOAT"] if real == "float" else [])
    proc = subprocess.run(["nvcc", "--ptx", "-arch=sm_90", "-std=c++14", *flags, str(src),
                           "-o", str(tmp_path / "k.ptx")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    ptx = (tmp_path / "k.ptx").read_text()
    for name in ("lm_gauss2d", "lm_gauss2d_elliptic", "lm_gauss2d_rotated"):
        assert f".entry {name}(" in ptx


@pytest.mark.gpu
def test_cuda_kernel_compiles_with_nvrtc():
    """CuPy compiles the kernel with NVRTC, which has no C headers: check that path too."""
    nvrtc = pytest.importorskip("cupy_backends.cuda.libs.nvrtc")
    from stemscale.fit._cuda_source import CUDA_SOURCE

    for real in ("float", "double"):
        opts = ["-std=c++14", f"-DREAL={real}", "-DDATA_T=float", "-arch=compute_90"]
        if real == "float":
            opts.append("-DREAL_IS_FLOAT")
        prog = nvrtc.createProgram(CUDA_SOURCE, "lm.cu", [], [])
        try:
            nvrtc.compileProgram(prog, opts)
        except Exception:  # noqa: BLE001
            pytest.fail(nvrtc.getProgramLog(prog))
        ptx = nvrtc.getPTX(prog)
        ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
        assert ".entry lm_gauss2d_elliptic(" in ptx


def _gpu_available() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


@pytest.mark.gpu
@pytest.mark.parametrize("model", MODELS)
def test_cupy_fused_kernel_equals_portable(model):
    cupy = pytest.importorskip("cupy")
    if not _gpu_available():
        pytest.skip("no CUDA GPU")
    shape = (9, 9) if model == "gauss2d_rotated" else (7, 7)
    for estimator in ("lse", "mle"):
        data, start = _batch(model, estimator, shape=shape, seed=24)
        ref = fit_batch(data, start, model=model, estimator=estimator, backend="numpy")
        g64 = fit_batch(cupy.asarray(data), cupy.asarray(start), model=model, estimator=estimator)
        assert g64.backend == "cupy" and isinstance(g64.parameters, cupy.ndarray)
        _assert_same(_tuple(g64.to_numpy()), _tuple(ref), atol=1e-6)
        g32 = fit_batch(cupy.asarray(data, dtype=cupy.float32), cupy.asarray(start), model=model,
                        estimator=estimator).to_numpy()
        ok = (g32.states == 0) & (ref.states == 0)
        assert ok.mean() > 0.97
        assert np.abs(g32.parameters[ok, 1:3] - ref.parameters[ok, 1:3]).max() < 2e-3
        # the portable implementation on CuPy arrays, too
        gp = fit_batch(cupy.asarray(data), cupy.asarray(start), model=model, estimator=estimator,
                       backend="portable")
        _assert_same(_tuple(gp.to_numpy()), _tuple(ref), atol=1e-6)


@pytest.mark.gpu
def test_torch_cuda_portable_and_fused_equal_numpy():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU for torch")
    data, start = _batch("gauss2d_elliptic", "lse", seed=25)
    ref = fit_batch(data, start, backend="numpy")
    td = torch.from_numpy(data).cuda()
    ts = torch.from_numpy(start).cuda()
    tp = fit_batch(td, ts)
    assert tp.parameters.is_cuda
    _assert_same(_tuple(tp.to_numpy()), _tuple(ref), atol=1e-6)
    if _gpu_available():
        tf = fit_batch(td, ts, backend="cupy")
        assert isinstance(tf.parameters, torch.Tensor) and tf.parameters.is_cuda
        _assert_same(_tuple(tf.to_numpy()), _tuple(ref), atol=1e-6)
