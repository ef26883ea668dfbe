"""Shared helpers for benchmark scripts: hardware/version records and the results JSON."""

from __future__ import annotations

import datetime as _dt
import importlib
import json
import os
import platform
from pathlib import Path
from typing import Any, Iterable

RESULTS_DIR = Path(__file__).resolve().parent / "results"

_PACKAGES = (
    "stemscale", "numpy", "scipy", "numba", "torch", "dask", "distributed", "zarr",
    "xarray", "finufft", "cupy",
)


def hardware() -> dict[str, Any]:
    """CPU model, core count, memory and (when present) the GPU, without touching CUDA in-process."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gib = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal"):
                    mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    gpu = None
    try:
        import subprocess

        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10,
        )
        if out.returncode == 0 and out.stdout.strip():
            gpu = out.stdout.strip().splitlines()
    except (OSError, Exception):
        gpu = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "gpu": gpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """Versions of the packages a benchmark depends on (missing ones are skipped)."""
    found = {}
    for name in (*_PACKAGES, *extra):
        try:
            module = importlib.import_module(name)
        except Exception:
            continue
        found[name] = str(getattr(module, "__version__", "unknown"))
    return found


def target(name: str, target_value: float, measured: float | None, unit: str,
           higher_is_better: bool = True, note: str | None = None) -> dict[str, Any]:
    """One entry of a results file's ``targets`` list."""
    if measured is None:
        met = False
    elif higher_is_better:
        met = bool(measured >= target_value)
    else:
        met = bool(measured <= target_value)
    entry = {"name": name, "target": target_value, "measured": measured, "unit": unit, "met": met}
    if note:
        entry["note"] = note
    return entry


def write_results(name: str, *, parameters: dict[str, Any], results: Any,
                  targets: list[dict[str, Any]], extra_versions: Iterable[str] = (),
                  path: Path | None = None) -> Path:
    """Write ``benchmarks/results/<name>.json`` and return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = path or RESULTS_DIR / f"{name}.json"
    record = {
        "benchmark": name,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "hardware": hardware(),
        "versions": versions(extra_versions),
        "parameters": parameters,
        "results": results,
        "targets": targets,
    }
    path.write_text(json.dumps(record, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(value: Any) -> Any:
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:
        pass
    return str(value)


def print_table(rows: list[dict[str, Any]], title: str | None = None) -> None:
    """Print rows (dicts with the same keys) as an aligned text table."""
    if title:
        print(f"\n{title}")
    if not rows:
        print("(no rows)")
        return
    keys = list(rows[0])
    fmt = [
        {k: (f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k])) for k in keys} for r in rows
    ]
    widths = {k: max(len(k), *(len(f[k]) for f in fmt)) for k in keys}
    print("  ".join(k.rjust(widths[k]) for k in keys))
    print("  ".join("-" * widths[k] for k in keys))
    for f in fmt:
        print("  ".join(f[k].rjust(widths[k]) for k in keys))


def print_targets(targets: list[dict[str, Any]]) -> None:
    """Print a results file's ``targets`` list as a table (notes left out)."""
    print_table([{k: (v if v is not None else "n/a") for k, v in t.items() if k != "note"}
                 for t in targets], title="Targets")
