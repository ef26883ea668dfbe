"""Print what the GPU check runs on: the card, the driver, CUDA as each library sees it, versions.

    python benchmarks/gpu/envinfo.py

Never fails on a missing piece: each line says what it found or why not (the exit status is 1
only when no CUDA device is usable from torch or CuPy, the point of the whole check).
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import platform
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

DISTRIBUTIONS = (
    "torch", "cupy-cuda13x", "cupy-cuda12x", "numba", "numba-cuda", "cuda-core", "cuda-bindings",
    "cuda-python", "nvidia-ml-py", "dask", "distributed", "dask-cuda", "rapids-dask-dependency",
    "bokeh", "zarr", "numcodecs", "finufft", "rosettasciio", "numpy", "scipy", "pandas", "pyarrow",
    "xarray", "scikit-image", "pydantic", "array-api-compat", "pytest", "pytest-timeout",
)


def _run(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return (out.stdout or out.stderr).strip()
    except Exception as exc:  # noqa: BLE001
        return f"({cmd[0]}: {exc})"


def _try(label: str, fn) -> object:
    try:
        value = fn()
    except Exception as exc:  # noqa: BLE001
        value = f"error: {type(exc).__name__}: {exc}"
    print(f"{label:<34} {value}")
    return value


def main() -> int:
    print("== card and driver (nvidia-smi)")
    print(_run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap,"
                "clocks.max.sm,power.limit", "--format=csv"]))
    print(_run(["nvidia-smi", "-L"]))
    print("\n== machine")
    print(f"{'python':<34} {sys.version.split()[0]} ({sys.executable})")
    print(f"{'platform':<34} {platform.platform()}")
    print(f"{'glibc':<34} {' '.join(platform.libc_ver())}")
    print("\n== distributions (version and where)")
    for name in DISTRIBUTIONS:
        try:
            d = md.distribution(name)
            print(f"{name:<34} {d.version:<16} {d.locate_file('')}")
        except md.PackageNotFoundError:
            print(f"{name:<34} -")
    providers = md.packages_distributions().get("cupy", [])
    print(f"{'module cupy provided by':<34} {', '.join(providers) or '-'}")

    print("\n== CUDA from each library")
    usable = []

    def torch_info():
        import torch

        ok = torch.cuda.is_available()
        if ok:
            usable.append("torch")
            return (f"{torch.__version__}, CUDA {torch.version.cuda}, cuDNN "
                    f"{torch.backends.cudnn.version()}, {torch.cuda.get_device_name(0)}, "
                    f"{torch.cuda.device_count()} device(s)")
        return f"{torch.__version__}: no CUDA device"

    def cupy_info():
        import cupy

        n = cupy.cuda.runtime.getDeviceCount()
        if n:
            usable.append("cupy")
        rt = cupy.cuda.runtime.runtimeGetVersion()
        drv = cupy.cuda.runtime.driverGetVersion()
        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        return f"{cupy.__version__}, runtime {rt}, driver {drv}, {name}, {n} device(s)"

    def nvrtc_info():
        from cupy.cuda import nvrtc

        return f"NVRTC {nvrtc.getVersion()}"

    def numba_info():
        import numba
        from numba import cuda

        return f"{numba.__version__}, cuda.is_available() = {cuda.is_available()}"

    _try("torch", torch_info)
    _try("cupy", cupy_info)
    _try("cupy NVRTC", nvrtc_info)
    _try("numba", numba_info)
    _try("nvcc", lambda: next((ln for ln in _run(["nvcc", "--version"]).splitlines()
                               if "release" in ln), "not found"))

    print("\n== stemscale")
    for mod in ("stemscale", "stemscale.parallel", "dask_cuda", "zarr", "finufft", "rsciio"):
        _try(f"import {mod}", lambda m=mod: getattr(importlib.import_module(m), "__file__", "ok"))
    _try("stemscale.fit.available_backends()",
         lambda: importlib.import_module("stemscale.fit").available_backends())
    _try("stemscale.detect.available_models()",
         lambda: importlib.import_module("stemscale.detect").available_models())
    if not usable:
        print("\nno CUDA device is usable from torch or CuPy")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
