"""Mosaic simulation: chunking independence, truth ownership, metadata, failure modes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stemscale.errors import InputError
from stemscale.io import open_mosaic
from stemscale.simulate import Distortions, Sample, simulate_frame
from stemscale.parallel.simulate import simulate_mosaic
from stemscale.io.truth import read_truth

SHAPE = (700, 900)  # deliberately not a multiple of any shard
SAMPLE = Sample(concentrations={"SV": 0.02, "2Te": 0.01, "MV": 0.005}, rotation_deg=None,
                min_defect_spacing_A=4.0)
DIST = Distortions(shear=0.01, scale_y=0.005, jitter_px=0.4)


def _mosaic(tmp_path, name, chunks, shards, **kw):
    url = tmp_path / f"{name}.zarr"
    summary = simulate_mosaic(url, SHAPE, chunks=chunks, shards=shards, seed=5, sample=SAMPLE,
                              distortions=DIST, **kw)
    return url, summary


def _truth(url):
    return read_truth(f"{url}.truth").sort_values("column_id").reset_index(drop=True)


def test_mosaic_independent_of_chunking(tmp_path):
    a, sa = _mosaic(tmp_path, "a", (128, 128), (256, 256))
    b, sb = _mosaic(tmp_path, "b", (100, 150), (300, 450))
    ia, ib = open_mosaic(a), open_mosaic(b)
    assert ia.shape == SHAPE and ia.data.chunksize != ib.data.chunksize
    np.testing.assert_array_equal(ia.values, ib.values)
    ta, tb = _truth(a), _truth(b)
    pd.testing.assert_frame_equal(ta, tb)
    assert sa["columns"] == sb["columns"] == len(ta)
    assert sa["defects"] == sb["defects"]
    # owner-computes: every column exactly once, each part file holds the columns of its shard
    assert ta.column_id.is_unique
    assert len(list((tmp_path / "a.zarr.truth").glob("part-*.parquet"))) == 3 * 4
    assert ta.x_px.min() >= -0.5 and ta.x_px.max() < SHAPE[1] - 0.5
    assert ta.y_px.min() >= -0.5 and ta.y_px.max() < SHAPE[0] - 0.5


def test_mosaic_matches_a_frame_of_the_same_seed(tmp_path):
    url, _ = _mosaic(tmp_path, "m", (256, 256), (512, 512))
    frame = simulate_frame(SHAPE, sample=SAMPLE, distortions=DIST, seed=5, labels=False, render_tile=512)
    np.testing.assert_array_equal(open_mosaic(url).values, frame.image)
    pd.testing.assert_frame_equal(_truth(url), frame.truth.sort_values("column_id").reset_index(drop=True))
    # a frame rendered in one piece agrees with the tiled render to 1e-4 of the peak: the only
    # difference is the probe's band-limited ringing (< 1e-5 of its peak) beyond its support
    whole = simulate_frame((300, 300), sample=SAMPLE, distortions=DIST, seed=5, labels=False)
    tiled = simulate_frame((300, 300), sample=SAMPLE, distortions=DIST, seed=5, labels=False, render_tile=128)
    np.testing.assert_allclose(whole.expected, tiled.expected, rtol=0, atol=1e-4 * whole.expected.max())


def test_mosaic_metadata_and_completion(tmp_path):
    url, summary = _mosaic(tmp_path, "meta", (256, 256), (512, 512), dose_e_per_a2=900.0)
    m = open_mosaic(url)
    assert m.attrs["pixel_size_angstrom"] == pytest.approx(0.2074)
    assert m.attrs["dose_e_per_a2"] == 900.0
    assert m.attrs["high_tension_kv"] == 80.0 and m.attrs["convergence_mrad"] == 25.2
    assert float(m.x[1] - m.x[0]) == pytest.approx(0.2074)
    assert summary["shape"] == list(SHAPE)
    assert sum(summary["species"].values()) == summary["columns"]
    assert (tmp_path / "meta.zarr.truth" / "_complete.json").exists()
    # the image's mean matches the expected dose-scaled signal of the lattice plus background
    e_px = 900.0 * 0.2074**2
    assert 0.5 * 0.013 * e_px < float(m.mean()) < 2 * 0.013 * e_px


def test_mosaic_refuses_to_overwrite_and_validates_first(tmp_path):
    url, _ = _mosaic(tmp_path, "o", (256, 256), (512, 512))
    before = open_mosaic(url).values.copy()
    with pytest.raises(InputError, match="already exist"):
        _mosaic(tmp_path, "o", (256, 256), (512, 512))
    np.testing.assert_array_equal(open_mosaic(url).values, before)
    with pytest.raises(InputError, match="dose_e_per_a2"):
        simulate_mosaic(tmp_path / "bad.zarr", (256, 256), dose_e_per_a2=-1)
    with pytest.raises(InputError, match="2-D"):
        simulate_mosaic(tmp_path / "bad.zarr", (256, 256, 3))
    with pytest.raises(InputError, match="unknown defect class"):
        simulate_mosaic(tmp_path / "bad.zarr", (256, 256), sample=Sample(concentrations={"Vac": 0.1}))
    assert not (tmp_path / "bad.zarr").exists() and not (tmp_path / "bad.zarr.truth").exists()


def test_mosaic_on_a_distributed_cluster(tmp_path, client):
    url = tmp_path / "dist.zarr"
    local = tmp_path / "local.zarr"
    # the client fixture is the default client: one task per shard runs on its worker processes
    summary = simulate_mosaic(url, (512, 520), chunks=(128, 128), shards=(256, 256), seed=2, progress=True)
    assert summary["columns"] > 0
    import dask

    with dask.config.set(scheduler="threads"):
        simulate_mosaic(local, (512, 520), chunks=(128, 260), shards=(512, 260), seed=2)
    np.testing.assert_array_equal(open_mosaic(url).values, open_mosaic(local).values)
    pd.testing.assert_frame_equal(_truth(url), _truth(local))


@pytest.fixture(scope="module")
def s3_bucket():
    """A bucket on a local moto S3 server (server mode, so Dask workers could reach it too)."""
    import os
    import uuid

    s3fs = pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.moto_server.threaded_moto_server")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "stemscale-test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "stemscale-test")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {"endpoint_url": f"http://{host}:{port}", "key": os.environ["AWS_ACCESS_KEY_ID"],
               "secret": os.environ["AWS_SECRET_ACCESS_KEY"]}
    bucket = f"sim-{uuid.uuid4().hex[:10]}"
    s3fs.S3FileSystem(skip_instance_cache=True, **options).mkdir(bucket)
    try:
        yield f"s3://{bucket}", options
    finally:
        server.stop()
        s3fs.S3FileSystem.clear_instance_cache()


@pytest.mark.network
def test_mosaic_to_object_storage(tmp_path, s3_bucket):
    prefix, options = s3_bucket
    url = f"{prefix}/sim.zarr"
    summary = simulate_mosaic(url, (300, 260), chunks=(128, 128), shards=(256, 256), seed=3,
                              storage_options=options)
    assert summary["truth_url"] == f"{url}.truth"
    local = tmp_path / "sim.zarr"
    simulate_mosaic(local, (300, 260), chunks=(150, 130), shards=(300, 260), seed=3)
    np.testing.assert_array_equal(open_mosaic(url, storage_options=options).values, open_mosaic(local).values)
    remote = read_truth(f"{url}.truth", storage_options=options).sort_values("column_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(remote, _truth(local))
