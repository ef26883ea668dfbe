"""Helpers for the fitting tests: an independent Gaussian renderer and synthetic batches."""

from __future__ import annotations

import ctypes
import shutil
import subprocess

import numpy as np
import pytest


def gaussian_windows(params: np.ndarray, shape: tuple[int, int], model: str) -> np.ndarray:
    """Noiseless windows ``(n, h, w)``, written straight from the model formulas."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    p = np.asarray(params, dtype=np.float64)[:, :, None, None]
    if model == "gauss2d":
        a, x0, y0, s, b = (p[:, k] for k in range(5))
        return a * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * s**2)) + b
    if model == "gauss2d_elliptic":
        a, x0, y0, sx, sy, b = (p[:, k] for k in range(6))
        return a * np.exp(-((xx - x0) ** 2) / (2 * sx**2) - (yy - y0) ** 2 / (2 * sy**2)) + b
    a, x0, y0, sx, sy, b, th = (p[:, k] for k in range(7))
    # rotate the frame by -theta: the sigma_x axis points along (cos th, sin th)
    u = (xx - x0) * np.cos(th) + (yy - y0) * np.sin(th)
    v = -(xx - x0) * np.sin(th) + (yy - y0) * np.cos(th)
    return a * np.exp(-(u**2) / (2 * sx**2) - v**2 / (2 * sy**2)) + b


def random_truth(rng: np.random.Generator, n: int, shape=(7, 7), model="gauss2d_elliptic",
                 amp=(500.0, 1500.0), bg=(20.0, 60.0), jitter=0.5) -> np.ndarray:
    h, w = shape
    cx, cy = (w - 1) / 2, (h - 1) / 2
    a = rng.uniform(*amp, n)
    x0 = cx + rng.uniform(-jitter, jitter, n)
    y0 = cy + rng.uniform(-jitter, jitter, n)
    sx = rng.uniform(1.1, 1.6, n)
    sy = rng.uniform(1.1, 1.6, n)
    b = rng.uniform(*bg, n)
    if model == "gauss2d":
        return np.column_stack([a, x0, y0, sx, b])
    if model == "gauss2d_elliptic":
        return np.column_stack([a, x0, y0, sx, sy, b])
    sy = sx * rng.uniform(1.3, 1.6, n)
    return np.column_stack([a, x0, y0, sx, sy, b, rng.uniform(0.2, 1.2, n)])


def perturbed_start(rng: np.random.Generator, truth: np.ndarray) -> np.ndarray:
    """Start values a moment estimate would give: a few tenths of a pixel and ~20 % off."""
    start = truth.copy()
    n, P = truth.shape
    start[:, 0] *= rng.uniform(0.8, 1.2, n)
    start[:, 1] += rng.uniform(-0.4, 0.4, n)
    start[:, 2] += rng.uniform(-0.4, 0.4, n)
    start[:, 3] *= rng.uniform(0.85, 1.15, n)
    if P >= 6:
        start[:, 4] *= rng.uniform(0.85, 1.15, n)
        start[:, 5] *= rng.uniform(0.7, 1.3, n)
    else:
        start[:, 4] *= rng.uniform(0.7, 1.3, n)
    if P == 7:
        start[:, 6] += rng.uniform(-0.1, 0.1, n)
    return start


@pytest.fixture(scope="session")
def host_kernel(tmp_path_factory):
    """The CUDA kernel source compiled as plain C++ (double precision) and loaded by ctypes."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler to build the CUDA kernel source for the host")
    from stemscale.fit._cuda_source import CUDA_SOURCE

    d = tmp_path_factory.mktemp("hostkernel")
    src = d / "kernel.cpp"
    src.write_text(CUDA_SOURCE)
    lib = d / "kernel.so"
    proc = subprocess.run(
        [cxx, "-O2", "-shared", "-fPIC", "-x", "c++", "-DSTEMSCALE_HOST", "-DREAL=double",
         "-DDATA_T=double", "-Wno-unknown-pragmas", str(src), "-o", str(lib)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    so = ctypes.CDLL(str(lib))
    fn = so.lm_host
    dp = ctypes.POINTER(ctypes.c_double)
    ip = ctypes.POINTER(ctypes.c_int)
    fn.argtypes = [ctypes.c_int, dp, dp, ctypes.c_int, dp, ctypes.c_int, ctypes.c_int,
                   ctypes.c_longlong, ctypes.c_int, ctypes.c_int, dp, dp, ctypes.c_int, dp,
                   ctypes.c_int, ip, ctypes.c_int, ctypes.c_double, ctypes.c_double, dp, ip, dp, ip]
    fn.restype = None

    def run(code, data, init, *, mle=False, weights=None, offsets=None, lower=None, upper=None,
            free=None, max_iterations=25, tolerance=1e-4, shape=(7, 7)):
        n, P = init.shape
        h, w = shape
        c = lambda a: np.ascontiguousarray(a, dtype=np.float64)  # noqa: E731
        data = c(data.reshape(n, -1))
        init = c(init)
        lo = c(np.full((1, P), -np.inf) if lower is None else np.atleast_2d(lower))
        hi = c(np.full((1, P), np.inf) if upper is None else np.atleast_2d(upper))
        wts = c(weights if weights is not None else np.zeros(1))
        offs = c(offsets if offsets is not None else np.zeros(1))
        fr = np.ascontiguousarray(np.ones(P) if free is None else free, dtype=np.int32)
        out_p = np.empty((n, P))
        out_s = np.empty(n, dtype=np.int32)
        out_c = np.empty(n)
        out_i = np.empty(n, dtype=np.int32)
        ptr = lambda a: a.ctypes.data_as(dp)  # noqa: E731
        fn(code, ptr(data), ptr(wts), int(weights is not None), ptr(offs), int(offsets is not None),
           int(mle), n, h, w, ptr(init), ptr(lo), lo.shape[0], ptr(hi), hi.shape[0],
           fr.ctypes.data_as(ip), max_iterations, tolerance, 1e-12, ptr(out_p),
           out_s.ctypes.data_as(ip), ptr(out_c), out_i.ctypes.data_as(ip))
        return out_p, out_s, out_c, out_i

    return run
