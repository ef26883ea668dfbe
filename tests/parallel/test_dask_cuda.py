"""GPU workers: a dask-cuda LocalCUDACluster run of a small mosaic gives the CPU run's tables.

The GPU run detects with the FCN on CUDA and fits with the GPU backend (CuPy, else torch) in
float32, so positions agree with the CPU (float64) run to a small tolerance, not bit for bit.
The test is marked ``gpu`` and skips without dask-cuda, a CUDA GPU or the shipped weights;
``make_cluster("cuda")``'s defaults are checked on any machine with a stand-in dask_cuda.
"""

from __future__ import annotations

import importlib.machinery
import sys
import types

import numpy as np
import pytest

from stemscale import AcquisitionMetadata
from stemscale.io import write_array
from stemscale.parallel import make_cluster
from stemscale.parallel.process import BlockConfig
from stemscale.parallel.run import load_tables, mosaic_statistics, run_mosaic

PIXEL = 0.2074
SHAPE = (512, 512)
BLOCK = (256, 256)
POSITION_TOL_PX = 0.01  # 2 pm: float32 GPU fits against float64 CPU fits


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _has_weights() -> bool:
    from stemscale.detect import available_models

    return "wse2" in available_models()


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory):
    from stemscale.simulate import simulate_frame

    frame = simulate_frame(SHAPE, seed=31, dose_e_per_a2=7300.0, labels=False)
    url = tmp_path_factory.mktemp("cuda") / "mosaic.zarr"
    write_array(url, frame.image, AcquisitionMetadata(PIXEL, dose_e_per_a2=7300),
                chunks=(128, 128), shards=BLOCK)
    return str(url)


def _config(url: str, device: str) -> BlockConfig:
    return BlockConfig(PIXEL, detector="fcn", tta=True, device=device,
                       stats=mosaic_statistics(url))


def _match(a, b, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``a``: index of the nearest row of ``b`` and its distance (px)."""
    from scipy.spatial import cKDTree

    d, i = cKDTree(b[["x_px", "y_px"]].to_numpy()).query(a[["x_px", "y_px"]].to_numpy(),
                                                            distance_upper_bound=tol)
    return i, d


@pytest.mark.gpu
def test_local_cuda_cluster_run_matches_cpu_run(mosaic, tmp_path):
    pytest.importorskip("dask_cuda")
    if not _cuda_available():
        pytest.skip("no CUDA GPU")
    if not _has_weights():
        pytest.skip("no shipped wse2 weights")
    from distributed import Client

    from stemscale.executor import current_client
    from stemscale.fit.states import is_usable

    assert current_client() is None  # the reference runs on local threads, on the CPU
    run_mosaic(mosaic, tmp_path / "cpu", _config(mosaic, "cpu"), block_shape=BLOCK)
    cpu_atoms, cpu_defects = load_tables(tmp_path / "cpu")

    with make_cluster("cuda", n_workers=1) as cluster, Client(cluster) as client:
        assert len(client.scheduler_info()["workers"]) == 1
        result = run_mosaic(mosaic, tmp_path / "gpu", _config(mosaic, "cuda"), block_shape=BLOCK)
    gpu_atoms, gpu_defects = load_tables(tmp_path / "gpu")
    assert result.n_blocks == 4 and result.n_atoms == len(gpu_atoms)

    # same tables: columns, dtypes, and the same columns found
    assert list(gpu_atoms.columns) == list(cpu_atoms.columns)
    assert dict(gpu_atoms.dtypes) == dict(cpu_atoms.dtypes)
    assert list(gpu_defects.columns) == list(cpu_defects.columns)
    n = len(cpu_atoms)
    assert n > 500
    assert abs(len(gpu_atoms) - n) <= max(2, n // 200)
    idx, dist = _match(cpu_atoms, gpu_atoms, POSITION_TOL_PX)
    found = np.isfinite(dist)
    assert found.mean() > 0.995, f"{(~found).sum()} of {n} CPU columns have no GPU column within " \
                                 f"{POSITION_TOL_PX} px"
    cpu_m, gpu_m = cpu_atoms[found], gpu_atoms.iloc[idx[found]]
    assert (cpu_m["site"].to_numpy() == gpu_m["site"].to_numpy()).mean() > 0.995
    assert (cpu_m["block"].to_numpy() == gpu_m["block"].to_numpy()).mean() > 0.995
    same_usable = is_usable(cpu_m["state"]).to_numpy() == is_usable(gpu_m["state"]).to_numpy()
    assert same_usable.mean() > 0.99
    np.testing.assert_allclose(gpu_m["x_A"].to_numpy(), cpu_m["x_A"].to_numpy(),
                               atol=POSITION_TOL_PX * PIXEL, rtol=0)
    # defects: same classes found, counts within a borderline column or two
    for cls in set(cpu_defects["class"]) | set(gpu_defects["class"]):
        c = int((cpu_defects["class"] == cls).sum())
        g = int((gpu_defects["class"] == cls).sum())
        assert abs(c - g) <= max(1, c // 20), (cls, c, g)


# ----------------------------------------------------------------- make_cluster("cuda"), any machine
@pytest.fixture()
def fake_dask_cuda(monkeypatch):
    """A stand-in dask_cuda whose LocalCUDACluster records its keyword arguments."""
    calls: list[dict] = []
    module = types.ModuleType("dask_cuda")
    module.LocalCUDACluster = lambda **kw: calls.append(kw) or kw  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dask_cuda", module)
    return calls


def _fake_rmm(monkeypatch, installed: bool) -> None:
    if installed:
        rmm = types.ModuleType("rmm")
        rmm.__spec__ = importlib.machinery.ModuleSpec("rmm", None)
        monkeypatch.setitem(sys.modules, "rmm", rmm)
    else:
        monkeypatch.setitem(sys.modules, "rmm", None)  # find_spec("rmm") is None


@pytest.mark.parametrize("rmm_installed", [False, True])
def test_cuda_cluster_without_pool_keeps_torch_and_cupy_allocators(fake_dask_cuda, monkeypatch,
                                                                   rmm_installed):
    _fake_rmm(monkeypatch, rmm_installed)
    kw = make_cluster("cuda", n_workers=1)
    assert kw["threads_per_worker"] == 1 and kw["n_workers"] == 1
    assert kw.get("rmm_allocator_external_lib_list") is None


def test_cuda_cluster_with_pool_shares_it_when_rmm_is_there(fake_dask_cuda, monkeypatch):
    _fake_rmm(monkeypatch, True)
    assert make_cluster("cuda", rmm_pool_size="4GB")["rmm_allocator_external_lib_list"] == [
        "torch", "cupy"]
    assert make_cluster("cuda", rmm_async=True)["rmm_allocator_external_lib_list"] == [
        "torch", "cupy"]
    # an explicit choice wins
    assert make_cluster("cuda", rmm_pool_size="4GB",
                        rmm_allocator_external_lib_list=None)[
        "rmm_allocator_external_lib_list"] is None


def test_cuda_cluster_with_pool_but_no_rmm_leaves_the_error_to_dask_cuda(fake_dask_cuda,
                                                                         monkeypatch):
    _fake_rmm(monkeypatch, False)
    kw = make_cluster("cuda", rmm_pool_size="4GB")
    assert kw["rmm_pool_size"] == "4GB" and "rmm_allocator_external_lib_list" not in kw
