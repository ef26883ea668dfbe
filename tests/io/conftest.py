"""Fixtures for the I/O tests: a real S3 server (moto, server mode), example files."""

from __future__ import annotations

import json
import logging
import os
import uuid

import numpy as np
import pytest


# --------------------------------------------------------------------------- S3 (moto server)


@pytest.fixture(scope="session")
def moto_server():
    """A moto S3 server in server mode on 127.0.0.1 (a free port), for the whole session.

    A real HTTP server, unlike in-process mocks, is reachable from aiobotocore
    (s3fs) and from Dask worker processes.
    """
    pytest.importorskip("s3fs")
    server_mod = pytest.importorskip("moto.moto_server.threaded_moto_server")
    # Dummy credentials so botocore never looks for real ones; setdefault keeps a caller's.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "stemscale-test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "stemscale-test")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture()
def s3(moto_server):
    """A fresh bucket on the moto server; yields (bucket URL prefix, storage_options)."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    options = {
        "endpoint_url": moto_server,
        "key": os.environ["AWS_ACCESS_KEY_ID"],
        "secret": os.environ["AWS_SECRET_ACCESS_KEY"],
    }
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    bucket = f"stemscale-{uuid.uuid4().hex[:12]}"
    fs.mkdir(bucket)
    yield f"s3://{bucket}", options
    try:
        fs.rm(bucket, recursive=True)
    except Exception:  # the server is session-scoped; a leftover bucket is harmless
        pass
    s3fs.S3FileSystem.clear_instance_cache()


# --------------------------------------------------------------------------- real data


@pytest.fixture(scope="session")
def mos2_dm3():
    """The real Se-implanted MoS2 DM3 frame inside temul-toolkit 0.1.9 (installed on demand).

    temul-toolkit is GPL-3: the file is used where pip put it and never copied
    into this repository.
    """
    from stemscale.errors import MosaicNotFoundError
    from stemscale.io.example_data import temul_mos2_frame_path

    try:
        return temul_mos2_frame_path(install=True)
    except MosaicNotFoundError as exc:  # no package index reachable
        pytest.skip(f"example data unavailable: {exc}")


# --------------------------------------------------------------------------- synthetic files


def write_velox_emd(path, image, *, pixel_size_m, high_tension_v=None, convergence_rad=None,
                    stage_m=None, title="HAADF", extra_images=()):
    """Write a minimal Velox-style EMD file (HDF5) with the layout Velox uses.

    ``/Version`` holds the JSON format tag; each image lives in
    ``/Data/Image/<uuid>/Data`` as (y, x, frames) with a JSON ``Metadata``
    byte column beside it.
    """
    h5py = pytest.importorskip("h5py")  # rosettasciio's EMD reader needs it too

    def metadata(det_name):
        meta = {
            "BinaryResult": {
                "PixelSize": {"width": str(pixel_size_m), "height": str(pixel_size_m)},
                "PixelUnitX": "m",
                "PixelUnitY": "m",
                "Offset": {"x": "0", "y": "0"},
                "DetectorIndex": "0",
            },
            "Detectors": {"Detector-0": {"DetectorName": det_name}},
            "Acquisition": {"AcquisitionStartDatetime": {"DateTime": "1600000000"}},
            "Scan": {"DwellTime": "2e-06", "FrameTime": "2.1"},
            "Optics": {},
        }
        if high_tension_v is not None:
            meta["Optics"]["AccelerationVoltage"] = str(high_tension_v)
        if convergence_rad is not None:
            meta["Optics"]["BeamConvergence"] = str(convergence_rad)
        if stage_m is not None:
            meta["Stage"] = {"Position": {"x": str(stage_m[1]), "y": str(stage_m[0]), "z": "0"}}
        raw = json.dumps(meta).encode("utf-8")
        return np.frombuffer(raw, dtype=np.uint8).reshape(-1, 1)

    with h5py.File(path, "w") as f:
        f.create_dataset("Version", data=np.array([json.dumps(
            {"format": "Velox", "version": 11}).encode("utf-8")]))
        group = f.create_group("Data/Image")
        for name, img in ((title, image), *extra_images):
            sub = group.create_group(uuid.uuid4().hex)
            arr = np.asarray(img)
            stack = arr[..., None] if arr.ndim == 2 else np.moveaxis(arr, 0, -1)
            # Velox stores each frame in its own HDF5 chunk.
            sub.create_dataset("Data", data=stack, chunks=stack.shape[:2] + (1,))
            sub.create_dataset("Metadata", data=metadata(name))


@pytest.fixture()
def rng():
    return np.random.default_rng(1234)
