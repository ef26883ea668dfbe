"""Bad input through the command line: one line on stderr, a non-zero exit, nothing half-done.

Each case runs ``python -m stemscale.cli`` in a subprocess, as a user would,
and checks the exit code, that stderr is exactly one line naming the culprit,
and that no output that looks complete was left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stemscale import AcquisitionMetadata
from stemscale.io import write_array
from stemscale.simulate import simulate_frame


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    env.pop("STEMSCALE_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "stemscale.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def _one_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode != 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def _not_complete(out: Path) -> None:
    manifest = out / "manifest.json"
    if manifest.exists():
        assert json.loads(manifest.read_text())["complete"] is False


@pytest.fixture(scope="module")
def frame_mosaic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("bad-input")
    frame = simulate_frame((256, 256), seed=4, labels=False)
    url = base / "ok.zarr"
    write_array(url, frame.image, AcquisitionMetadata(0.2074, material="WSe2"),
                chunks=(128, 128), shards=(128, 128))
    return url


def test_output_url_is_refused_not_written_as_a_local_folder(frame_mosaic: Path,
                                                              tmp_path: Path) -> None:
    proc = _cli("find", str(frame_mosaic), "s3://bucket/out", "--detector", "peaks", cwd=tmp_path)
    _one_line(proc, "s3://bucket/out", "URL")
    assert not (tmp_path / "s3:").exists()


def test_coarse_sampling_is_refused(tmp_path: Path) -> None:
    url = tmp_path / "coarse.zarr"
    image = np.random.default_rng(0).poisson(50, (128, 128)).astype("float32")
    write_array(url, image, AcquisitionMetadata(0.60), chunks=(128, 128), shards=(128, 128))
    proc = _cli("find", str(url), str(tmp_path / "out"), "--detector", "peaks", cwd=tmp_path)
    _one_line(proc, "60.0 pm", "coarse.zarr")
    _not_complete(tmp_path / "out")


def test_constant_mosaic_is_reported_not_completed_empty(tmp_path: Path) -> None:
    url = tmp_path / "zeros.zarr"
    write_array(url, np.zeros((256, 256), "float32"), AcquisitionMetadata(0.2074),
                chunks=(128, 128), shards=(128, 128))
    proc = _cli("find", str(url), str(tmp_path / "out"), "--detector", "peaks", cwd=tmp_path)
    _one_line(proc, "constant", "zeros.zarr")
    _not_complete(tmp_path / "out")


def test_missing_mosaic_names_the_path(tmp_path: Path) -> None:
    proc = _cli("find", str(tmp_path / "nothing.zarr"), str(tmp_path / "out"), cwd=tmp_path)
    _one_line(proc, "nothing.zarr")
    assert not (tmp_path / "out").exists()


def test_output_blocked_by_a_file(frame_mosaic: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = _cli("find", str(frame_mosaic), str(blocker / "out"), "--detector", "peaks",
                "--workers", "1", cwd=tmp_path)
    _one_line(proc, str(blocker))


@pytest.mark.slow
def test_corrupt_shard_names_one_block_and_leaves_the_run_unfinished(frame_mosaic: Path,
                                                                     tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken.zarr"
    shutil.copytree(frame_mosaic, broken)
    shard = broken / "0" / "c" / "1" / "0"
    data = bytearray(shard.read_bytes())
    data[100:400] = b"\x00" * 300
    shard.write_bytes(bytes(data))
    out = tmp_path / "out"
    proc = _cli("find", str(broken), str(out), "--detector", "peaks", "--workers", "1",
                cwd=tmp_path)
    line = _one_line(proc, "broken.zarr", "damaged")
    assert line.count("shard") <= 2, line
    _not_complete(out)
    import pandas as pd

    with pytest.raises(Exception):  # no table, or one that pandas refuses: never half a table
        pd.read_parquet(out / "atoms")
