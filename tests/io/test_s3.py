"""The same I/O on s3:// URLs, against a real moto S3 server on localhost."""

from __future__ import annotations

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
