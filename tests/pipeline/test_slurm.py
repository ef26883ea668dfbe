"""`stemscale run --cluster slurm` for real, on the one-node SLURM that CI starts.

Skips unless a SLURM controller answers (start one with deploy/slurm/start-local-slurm.sh),
or fails when CI requires SLURM (STEMSCALE_REQUIRE_SLURM=1).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from stemscale import AcquisitionMetadata
from stemscale.cli import main
from stemscale.io import write_array
from stemscale.parallel.run import load_tables
from stemscale.simulate import simulate_frame


def _slurm_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%a %P"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "up" in out.stdout


def _partition() -> str:
    out = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=10)
    names = out.stdout.split()
    default = [n for n in names if n.endswith("*")]
    return (default or names)[0].rstrip("*")


pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("STEMSCALE_REQUIRE_SLURM") != "1" and not _slurm_up(),
                       reason="no SLURM controller (start deploy/slurm/start-local-slurm.sh)"),
]


def test_pipeline_on_slurm_gives_the_local_result(tmp_path, local_cluster):
    frame = simulate_frame((256, 256), seed=41, labels=False)
    url = tmp_path / "m.zarr"
    write_array(url, frame.image, AcquisitionMetadata(0.2074), chunks=(64, 64), shards=(128, 128))
    pipeline = {
        "kind": "defect_strain",
        "input": {"mosaic": "m.zarr"},
        "detect": {"detector": "peaks"},
        "average": {"enabled": False},
        "strain": {"enabled": False},
        "report": {"figures": False},
        "cluster": {"kind": "slurm", "jobs": 1, "options": {
            "cores": 1, "memory": "2GB", "processes": 1, "walltime": "00:10:00",
            "queue": _partition(), "python": sys.executable, "local_directory": str(tmp_path),
            "log_directory": str(tmp_path / "logs"),
            "job_script_prologue": ["export OMP_NUM_THREADS=1"]}},
    }
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(pipeline))
    assert main(["run", str(path), "--out", str(tmp_path / "slurm"), "--no-progress"]) == 0
    record = json.loads((tmp_path / "slurm" / "run.json").read_text())
    assert record["status"] == "complete" and record["cluster"]["kind"] == "slurm"
    assert record["cluster"]["workers"] >= 1
    # The same pipeline on the local cluster (by address) gives the same table.
    assert main(["run", str(path), "--out", str(tmp_path / "local"), "--no-progress",
                 "--cluster", local_cluster.scheduler_address]) == 0
    a, _ = load_tables(tmp_path / "slurm" / "tables")
    b, _ = load_tables(tmp_path / "local" / "tables")
    key = ["y_px", "x_px"]
    a, b = a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
    assert len(a) == len(b) > 100
    assert (a[key] - b[key]).abs().to_numpy().max() < 1e-6
