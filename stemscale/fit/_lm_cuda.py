"""Fused GPU path: the one-thread-per-fit CUDA kernel, compiled by CuPy (NVRTC).

CuPy is imported only when this path is used, never at package import.  Data
may be CuPy arrays or CUDA torch tensors (exchanged through DLPack, no copy);
results come back on the same device, in the same library.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ..errors import InputError
from ._arrays import bounds_numpy
from ._cuda_source import CUDA_SOURCE
from ._lm_portable import pivot_epsilon
from .models import GaussianModel

__all__ = ["lm_cuda", "kernel_names", "MAX_EDGE"]

MAX_EDGE = 64          # longest window edge the kernel's scratch arrays hold
_SHARED_LIMIT = 48 * 1024


def kernel_names() -> dict[int, str]:
    """Kernel entry point per model code."""
    return {0: "lm_gauss2d", 1: "lm_gauss2d_elliptic", 2: "lm_gauss2d_rotated"}


@functools.lru_cache(maxsize=8)
def _module(real: str, data: str):
    import cupy

    opts: tuple[str, ...] = ("-std=c++14", f"-DREAL={real}", f"-DDATA_T={data}")
    if real == "float":
        opts += ("-DREAL_IS_FLOAT",)
    return cupy.RawModule(code=CUDA_SOURCE, options=opts)


def lm_cuda(data: Any, initial: Any, *, model: GaussianModel, window_shape: tuple[int, int],
            mle: bool, weights: Any | None, offsets: Any | None, bounds: Any, free: list[bool],
            max_iterations: int,
            tolerance: float, compute_dtype: str | None = None, block_size: int = 128):
    """Run the fused kernel; returns ``(parameters, states, chi_square, iterations)``.

    ``compute_dtype`` defaults to the data's precision (``float32`` data are
    fitted in float32, the fast path; ``float64`` in float64).
    """
    import cupy

    def is_torch(a: Any) -> bool:
        return type(a).__module__.split(".")[0] == "torch"

    def to_cupy(a: Any) -> Any:
        # CUDA torch tensors are shared through DLPack without a copy
        return cupy.from_dlpack(a.contiguous()) if is_torch(a) else a

    back_to_torch = is_torch(data)
    data, initial = to_cupy(data), to_cupy(initial)
    weights = None if weights is None else to_cupy(weights)
    offsets = None if offsets is None else to_cupy(offsets)
    h, w = window_shape
    if h > MAX_EDGE or w > MAX_EDGE:
        raise InputError(f"the GPU kernel handles windows up to {MAX_EDGE} px a side, got {(h, w)}")
    data = cupy.asarray(data)
    if data.dtype not in (cupy.float32, cupy.float64):
        data = data.astype(cupy.float32)
    data = cupy.ascontiguousarray(data.reshape(data.shape[0], -1))
    if compute_dtype is None:
        compute_dtype = "float" if data.dtype == cupy.float32 else "double"
    rdt = cupy.float32 if compute_dtype == "float" else cupy.float64
    ddt = "float" if data.dtype == cupy.float32 else "double"
    n, M = data.shape
    P = model.n_parameters
    init = cupy.ascontiguousarray(cupy.asarray(initial, dtype=rdt).reshape(n, P))
    lo_np, hi_np = bounds_numpy(bounds, n, P, np.float64)
    lo = cupy.asarray(lo_np, dtype=rdt)
    hi = cupy.asarray(hi_np, dtype=rdt)
    has_w = weights is not None
    wts = (cupy.ascontiguousarray(cupy.asarray(weights, dtype=rdt).reshape(n, M)) if has_w
           else cupy.zeros((1,), dtype=rdt))
    has_off = offsets is not None
    offs = (cupy.ascontiguousarray(cupy.asarray(offsets, dtype=rdt).reshape(n, M)) if has_off
            else cupy.zeros((1,), dtype=rdt))
    freem = cupy.asarray(np.asarray(free, dtype=np.int32))
    out_p = cupy.empty((n, P), dtype=rdt)
    out_state = cupy.empty((n,), dtype=cupy.int32)
    out_chi2 = cupy.empty((n,), dtype=rdt)
    out_it = cupy.empty((n,), dtype=cupy.int32)
    if n:
        itemsize = data.dtype.itemsize
        bs = int(block_size)
        while bs > 32 and bs * M * itemsize > _SHARED_LIMIT:
            bs //= 2
        use_shared = bs * M * itemsize <= _SHARED_LIMIT
        kern = _module(compute_dtype, ddt).get_function(kernel_names()[model.code])
        real = np.float32 if compute_dtype == "float" else np.float64
        grid = ((n + bs - 1) // bs,)
        kern(grid, (bs,), (
            data, wts, np.int32(has_w), offs, np.int32(has_off), np.int32(bool(mle)), np.int64(n),
            np.int32(h), np.int32(w),
            init, lo, np.int32(lo.shape[0]), hi, np.int32(hi.shape[0]), freem,
            np.int32(max_iterations), real(tolerance),
            real(pivot_epsilon(compute_dtype == "double")),
            np.int32(use_shared), out_p, out_state, out_chi2, out_it,
        ), shared_mem=(bs * M * itemsize if use_shared else 0))
    if back_to_torch:
        import torch

        return tuple(torch.from_dlpack(a) for a in (out_p, out_state, out_chi2, out_it))
    return out_p, out_state, out_chi2, out_it
