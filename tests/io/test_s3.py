"""The same I/O on s3:// URLs, against a real moto S3 server on localhost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import dask
import numpy as np
import pytest
import s3fs
import tifffile

from stemscale import IncompleteMosaicError, MetadataError, MosaicNotFoundError
from stemscale.cli import main
from stemscale.io import open_mosaic, write_mosaic
from stemscale.io.ingest import ingest
from stemscale.metadata import AcquisitionMetadata

pytestmark = pytest.mark.network

META = AcquisitionMetadata(pixel_size_angstrom=0.2074, high_tension_kv=80.0)


def test_write_and_open_on_s3(s3, rng):
    bucket, options = s3
    url = f"{bucket}/m.zarr"
    data = rng.integers(0, 1000, size=(300, 500), dtype=np.uint16)
    write_mosaic(url, data, META, chunks=(64, 64), shards=(128, 256), levels=2,
                 storage_options=options)
    # The shards really are objects on the server.
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    assert sorted(fs.ls(f"{url}/0/c/0")) == [f"{url[5:]}/0/c/0/0", f"{url[5:]}/0/c/0/1"]
    m = open_mosaic(url, storage_options=options)
    assert dask.is_dask_collection(m.data) and m.data.chunks[0] == (128, 128, 44)
    np.testing.assert_array_equal(m.values, data)
    assert m.attrs["high_tension_kv"] == 80.0
    level1 = open_mosaic(url, storage_options=options, level=1)
    expected = data.astype(float).reshape(150, 2, 250, 2).mean(axis=(1, 3))
    np.testing.assert_array_equal(level1.values, np.rint(expected).astype(np.uint16))


def test_s3_errors(s3):
    bucket, options = s3
    with pytest.raises(MosaicNotFoundError, match="does not exist"):
        open_mosaic(f"{bucket}/nope.zarr", storage_options=options)
    import zarr
    from zarr.storage import FsspecStore

    store = FsspecStore.from_url(f"{bucket}/bare.zarr", storage_options=options)
    zarr.create_array(store, shape=(4, 4), dtype="f4")
    with pytest.raises(MetadataError, match="bare zarr array"):
        open_mosaic(f"{bucket}/bare.zarr", storage_options=options)


def test_incomplete_s3_store_refused(s3):
    from stemscale.io import create_mosaic

    bucket, options = s3
    create_mosaic(f"{bucket}/half.zarr", (64, 64), META, storage_options=options)
    with pytest.raises(IncompleteMosaicError, match="not completely written"):
        open_mosaic(f"{bucket}/half.zarr", storage_options=options)


def test_cli_ingest_to_s3(s3, tmp_path, rng):
    bucket, options = s3
    src = tmp_path / "frame.tif"
    image = rng.normal(size=(40, 50)).astype(np.float32)
    tifffile.imwrite(src, image)
    url = f"{bucket}/frame.zarr"
    code = main(["ingest", str(src), url, "--pixel-size", "0.2", "--quiet",
                 "--storage-option", f"endpoint_url={options['endpoint_url']}",
                 "--storage-option", f"key={options['key']}",
                 "--storage-option", f"secret={options['secret']}"])
    assert code == 0
    np.testing.assert_array_equal(open_mosaic(url, storage_options=options).values, image)


def test_distributed_workers_read_from_s3(s3, tmp_path, rng, request):
    """Two worker processes reduce an S3 mosaic, reading its shards from the server."""
    bucket, options = s3
    image = rng.integers(0, 5000, size=(512, 384), dtype=np.uint16)
    src = tmp_path / "frame.tif"
    tifffile.imwrite(src, image)
    url = f"{bucket}/cluster.zarr"
    ingest(src, url, pixel_size=0.2, chunks=(64, 64), shards=(128, 128),
           storage_options=options)
    client = request.getfixturevalue("client")  # a 2-process LocalCluster from here on
    m = open_mosaic(url, storage_options=options)
    assert m.data.npartitions == 12
    from distributed import get_task_stream

    with get_task_stream(client) as stream:
        total = client.compute(m.data.astype(np.int64).sum()).result()
    assert int(total) == int(image.astype(np.int64).sum())
    # The shard reads ran inside the worker processes, not in this one.
    readers = {t["worker"] for t in stream.data if "open_mosaic" in str(t["key"])}
    assert readers and readers <= set(client.scheduler_info()["workers"])
    column_means = m.mean("y").compute()
    np.testing.assert_allclose(column_means.values, image.mean(axis=0))


# --------------------------------------------------------------------------- --storage-option


def _options_argv(options: dict) -> list[str]:
    return [arg for k, v in options.items() for arg in ("--storage-option", f"{k}={v}")]


def test_cli_find_info_simulate_take_storage_options(s3, tmp_path, monkeypatch, capsys):
    """Without AWS_ENDPOINT_URL, --storage-option alone leads every command to the server."""
    from stemscale.io import write_array
    from stemscale.parallel.run import load_tables
    from stemscale.simulate import simulate_frame

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    bucket, options = s3
    frame = simulate_frame((192, 192), seed=3, labels=False)
    url = f"{bucket}/m.zarr"
    write_array(url, frame.image, AcquisitionMetadata(0.2074, material="WSe2"), chunks=(64, 64),
                shards=(128, 128), storage_options=options)
    argv = _options_argv(options)

    assert main(["info", url, "--json", *argv]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["shape_px"] == [192, 192] and info["complete"] is True

    out = tmp_path / "found"
    assert main(["find", url, str(out), "--detector", "peaks", "--workers", "1", *argv]) == 0
    atoms, _ = load_tables(out)
    assert len(atoms) > 100
    assert options["secret"] not in (out / "manifest.json").read_text()

    simulated = f"{bucket}/sim.zarr"
    assert main(["simulate", simulated, "--shape", "128", "128", "--chunks", "64", "64",
                 "--shards", "128", "128", "--no-progress", *argv]) == 0
    assert open_mosaic(simulated, storage_options=options).shape == (128, 128)


def _cli(*args: str, cwd) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") and k != "STEMSCALE_DEBUG"}
    env.update(AWS_ACCESS_KEY_ID="stemscale-test", AWS_SECRET_ACCESS_KEY="stemscale-test",
               AWS_DEFAULT_REGION="us-east-1", PYTHONWARNINGS="ignore::DeprecationWarning")
    return subprocess.run([sys.executable, "-m", "stemscale.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _error_line(proc) -> str:
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and ": error: " in lines[0], proc.stderr
    return lines[0]


def test_unreachable_endpoint_is_one_line_and_quick(tmp_path):
    pytest.importorskip("s3fs")
    t0 = time.perf_counter()
    proc = _cli("find", "s3://no-such-bucket/m.zarr", str(tmp_path / "out"), "--detector", "peaks",
                "--storage-option", "endpoint_url=http://127.0.0.1:9", cwd=tmp_path)
    seconds = time.perf_counter() - t0
    line = _error_line(proc)
    assert "cannot reach the object-storage endpoint" in line and "127.0.0.1:9" in line
    assert seconds < 60, f"{seconds:.0f} s to give up on an unreachable endpoint"
    assert not (tmp_path / "out").exists()


def test_credentials_in_a_url_never_appear_in_messages(tmp_path):
    pytest.importorskip("s3fs")
    proc = _cli("info", "s3://AKIAKEY123:SECRETVAL987@bucket/m.zarr",
                "--storage-option", "endpoint_url=http://127.0.0.1:9", cwd=tmp_path)
    line = _error_line(proc)
    assert "SECRETVAL987" not in proc.stderr + proc.stdout
    assert "AKIAKEY123" not in proc.stderr + proc.stdout
    assert "--storage-option key=" in line
    proc = _cli("info", "https://user:PASSWORD456@127.0.0.1:9/m.zarr", cwd=tmp_path)
    line = _error_line(proc)
    assert "PASSWORD456" not in proc.stderr + proc.stdout and "https://***@127.0.0.1:9" in line
