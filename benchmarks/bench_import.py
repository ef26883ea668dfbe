"""Import cost of the numeric core: what `import stemscale.<core>` loads and how long it takes.

The layered package promises that the core (fit, detect, average, strain, lattice, simulate)
loads no Dask, distributed, zarr or xarray, so a worker or a notebook that only fits Gaussians
pays for NumPy/SciPy/pandas and nothing more.  Each import runs in a fresh interpreter
(median of ``--repeat`` runs), beside a bare ``python -c pass`` for scale.  ``--baseline DIR``
also times another checkout (e.g. the release before the layering) in the same run, so the
ratio survives a noisy machine.

    python benchmarks/bench_import.py [--repeat 7] [--baseline /path/to/old/checkout]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import print_table, print_targets, target, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("dask", "distributed", "zarr", "xarray", "torch")
MODULES = ("stemscale.fit", "stemscale.detect", "stemscale.average", "stemscale.strain",
           "stemscale.simulate", "stemscale.lattice", "stemscale")
PROBE = ("import importlib, json, sys, time; t = time.perf_counter(); importlib.import_module({m!r}); "
         "dt = time.perf_counter() - t; print(json.dumps({{'s': dt, 'n': len(sys.modules), "
         "'heavy': [h for h in {heavy!r} if h in sys.modules]}}))")


def _probe(module: str, root: Path, repeat: int) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    runs, last = [], {}
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", PROBE.format(m=module, heavy=HEAVY)],
                             capture_output=True, text=True, env=env, cwd=root, check=False)
        wall = time.perf_counter() - t0
        if out.returncode != 0:
            return {"module": module, "error": out.stderr.strip().splitlines()[-1:]}
        last = json.loads(out.stdout.strip().splitlines()[-1])
        runs.append(wall)
    return {"module": module, "wall_s": statistics.median(runs), "import_s": last["s"],
            "modules": last["n"], "heavy": ",".join(last["heavy"]) or "-"}


def _bare(repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--baseline", type=Path, default=None,
                   help="another checkout to time in the same run (PYTHONPATH=<it>)")
    args = p.parse_args()
    load = os.getloadavg()
    bare = _bare(args.repeat)
    rows = [_probe(m, ROOT, args.repeat) for m in MODULES]
    print_table(rows, title=f"import cost (median of {args.repeat}; bare python {bare:.3f} s; "
                f"load {load[0]:.2f})")
    base_rows = None
    if args.baseline is not None:
        base_rows = [_probe(m, args.baseline, args.repeat) for m in ("stemscale.fit",)]
        print_table(base_rows, title=f"baseline {args.baseline}")
    core = [r for r in rows if r["module"] != "stemscale"]
    heavy_core = sorted({h for r in core for h in str(r.get("heavy", "")).split(",")
                         if h and h != "-" and h != "torch"})
    fit = next(r for r in rows if r["module"] == "stemscale.fit")
    targets = [
        target("core modules that load dask/distributed/zarr/xarray", 0, len(heavy_core),
               "modules", higher_is_better=False, note=", ".join(heavy_core) or None),
        target("import stemscale.fit (wall, fresh interpreter)", 1.0, round(float(fit["wall_s"]), 3),
               "s", higher_is_better=False),
    ]
    if base_rows and "wall_s" in base_rows[0]:
        ratio = float(base_rows[0]["wall_s"]) / float(fit["wall_s"])
        targets.append(target("import stemscale.fit speed-up over the baseline checkout", 1.0,
                              round(ratio, 2), "x", note=str(args.baseline)))
    print_targets(targets)
    path = write_results("bench_import", parameters={"repeat": args.repeat,
                                                     "baseline": str(args.baseline or "")},
                         results={"bare_python_s": bare, "load_average": list(load),
                                  "modules": rows, "baseline": base_rows},
                         targets=targets)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
