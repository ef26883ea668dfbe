"""The package layering, checked where it matters: in what an import really loads.

The core science packages (simulate, detect, fit, average, strain, lattice) must work on
in-memory arrays without the Dask/Zarr stack, and ``import stemscale`` alone must stay cheap.
import-linter (``.ci/gates``) checks the import graph statically; these tests check
``sys.modules`` in a fresh interpreter, which also catches imports made by a package's parent
``__init__`` and by third-party packages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CORE = ["stemscale.fit", "stemscale.detect", "stemscale.average", "stemscale.strain",
        "stemscale.simulate"]
# Created by the package refactor; checked as soon as it exists.
OPTIONAL_CORE = ["stemscale.lattice"]
HEAVY_FOR_CORE = ["dask", "distributed", "zarr", "xarray"]
HEAVY_FOR_TOP = ["dask", "distributed", "zarr", "xarray", "torch"]

_PROBE = """
import importlib, importlib.util, json, sys
for name in {modules!r}:
    importlib.import_module(name)
for name in {optional!r}:
    if importlib.util.find_spec(name) is not None:
        importlib.import_module(name)
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def _loaded_after_import(modules: list[str], optional: list[str], heavy: list[str]) -> list[str]:
    """Import ``modules`` in a fresh interpreter; return which of ``heavy`` got loaded."""
    code = _PROBE.format(modules=modules, optional=optional, heavy=heavy)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSTARTUP"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, f"import failed:\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_core_packages_do_not_load_the_dask_zarr_stack():
    loaded = _loaded_after_import(CORE, OPTIONAL_CORE, HEAVY_FOR_CORE)
    assert loaded == [], (
        f"importing {', '.join(CORE)} loaded {', '.join(loaded)}; the core packages must not "
        "need them (move the Dask/Zarr code to stemscale.parallel or stemscale.io)"
    )


def test_import_stemscale_is_light():
    loaded = _loaded_after_import(["stemscale"], [], HEAVY_FOR_TOP)
    assert loaded == [], (
        f"'import stemscale' loaded {', '.join(loaded)}; the top-level package must import "
        "them lazily"
    )
