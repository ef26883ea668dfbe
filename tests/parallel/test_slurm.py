"""The SLURM path for real: dask-jobqueue workers as jobs of a one-node SLURM.

CI starts slurmctld/slurmd/munge with deploy/slurm/start-local-slurm.sh before
the tests; elsewhere these tests skip unless a controller answers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from stemscale import AcquisitionMetadata
from stemscale.io import write_array
from stemscale.parallel import make_cluster
from stemscale.parallel.process import BlockConfig
from stemscale.parallel.run import load_tables, run_mosaic
from stemscale.simulate import simulate_frame


def _slurm_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%a"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "up" in out.stdout


_REQUIRED = os.environ.get("STEMSCALE_REQUIRE_SLURM") == "1"  # set by .ci/run

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(not _REQUIRED and not _slurm_up(),
                       reason="no SLURM controller (start deploy/slurm/start-local-slurm.sh)"),
]


def test_slurm_cluster_gives_the_local_result(tmp_path):
    from distributed import Client

    frame = simulate_frame((256, 256), seed=31, labels=False)
    url = str(tmp_path / "m.zarr")
    write_array(url, frame.image, AcquisitionMetadata(0.2074), chunks=(64, 64), shards=(128, 128))
    config = BlockConfig(0.2074, detector="peaks", stats=(0.0, 1.0))
    run_mosaic(url, tmp_path / "local", config, block_shape=(128, 128))

    cluster = make_cluster(
        "slurm", cores=1, memory="2GB", processes=1, walltime="00:10:00",
        local_directory=str(tmp_path), python=sys.executable, log_directory=str(tmp_path / "logs"),
        job_script_prologue=["export OMP_NUM_THREADS=1"],
    )
    try:
        cluster.scale(jobs=2)
        with Client(cluster) as client:
            client.wait_for_workers(2, timeout=120)
            jobs = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True, text=True).stdout
            assert jobs.strip(), "workers should run as SLURM jobs"
            result = run_mosaic(url, tmp_path / "slurm", config, block_shape=(128, 128))
    finally:
        cluster.close()
    assert result.n_blocks == 4
    local_atoms, _ = load_tables(tmp_path / "local")
    slurm_atoms, _ = load_tables(tmp_path / "slurm")
    a = local_atoms.sort_values(["y_px", "x_px"]).reset_index(drop=True)
    b = slurm_atoms.sort_values(["y_px", "x_px"]).reset_index(drop=True)
    assert len(a) == len(b) > 200
    np.testing.assert_allclose(a[["x_px", "y_px"]], b[["x_px", "y_px"]], atol=1e-6, rtol=0)
