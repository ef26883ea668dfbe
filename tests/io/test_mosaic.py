"""Writing and lazily reading mosaics: layout, laziness, completion, bad input."""

from __future__ import annotations

import os
import threading

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr
from zarr.storage import LocalStore, WrapperStore

from stemscale import (
    AcquisitionMetadata,
    CorruptBlockError,
    IncompleteMosaicError,
    InputError,
    MetadataError,
    MosaicNotFoundError,
)
from stemscale.io import (
    create_mosaic,
    mark_complete,
    open_mosaic,
    write_array,
    write_mosaic,
    write_region,
)

META = AcquisitionMetadata(
    pixel_size_angstrom=0.2074, high_tension_kv=80.0, convergence_mrad=25.2, dose_e_per_a2=7300.0
)


class CountingStore(WrapperStore):
    """Counts reads of anything but metadata documents."""

    def __init__(self, store):
        super().__init__(store)
        self.reads: list[str] = []
        self._lock = threading.Lock()

    async def get(self, key, prototype, byte_range=None):
        if not key.endswith("zarr.json"):
            with self._lock:
                self.reads.append(key)
        return await self._store.get(key, prototype, byte_range)

    async def get_partial_values(self, prototype, key_ranges):
        key_ranges = list(key_ranges)
        with self._lock:
            self.reads.extend(k for k, _ in key_ranges)
        return await self._store.get_partial_values(prototype, key_ranges)


@pytest.fixture()
def image(rng):
    return rng.normal(100.0, 10.0, size=(300, 520)).astype(np.float32)


def test_round_trip_numpy_coordinates_and_attrs(tmp_path, image):
    url = tmp_path / "m.zarr"
    write_mosaic(url, image, META, chunks=(64, 64), shards=(128, 256), translation=(5.0, -3.0))
    m = open_mosaic(url)
    assert m.dims == ("y", "x") and m.shape == image.shape
    np.testing.assert_array_equal(m.values, image)
    # Coordinates: pixel centre (i, j) at translation + index * pixel size, in Å.
    np.testing.assert_allclose(m.y.values, 5.0 + 0.2074 * np.arange(300))
    np.testing.assert_allclose(m.x.values, -3.0 + 0.2074 * np.arange(520))
    assert m.x.attrs["units"] == "angstrom" and m.y.attrs["units"] == "angstrom"
    assert m.attrs["pixel_size_angstrom"] == pytest.approx(0.2074)
    assert m.attrs["high_tension_kv"] == 80.0
    assert m.attrs["convergence_mrad"] == 25.2
    assert m.attrs["dose_e_per_a2"] == 7300.0
    assert m.attrs["provenance"]["software"] == "stemscale"


def test_dask_chunks_equal_shards_and_edges(tmp_path, image):
    url = tmp_path / "m.zarr"
    write_mosaic(url, image, META, chunks=(64, 64), shards=(128, 256))
    m = open_mosaic(url)
    assert m.data.chunks == ((128, 128, 44), (256, 256, 8))
    assert open_mosaic(url, chunks="chunks").data.chunks[0][:2] == (64, 64)
    assert open_mosaic(url, chunks=(100, 100)).data.chunks[1] == (100,) * 5 + (20,)
    array = zarr.open_group(url, mode="r")["0"]
    assert array.shards == (128, 256) and array.chunks == (64, 64)


def test_open_reads_no_pixels_until_computed(tmp_path, image):
    write_mosaic(tmp_path / "m.zarr", image, META, chunks=(64, 64), shards=(128, 256))
    store = CountingStore(LocalStore(tmp_path / "m.zarr", read_only=True))
    m = open_mosaic(store)
    assert dask.is_dask_collection(m.data)
    # Slicing and arithmetic stay lazy too.
    lazy = (m.isel(y=slice(0, 128), x=slice(0, 256)) * 2).mean()
    assert store.reads == []
    value = float(lazy.compute())
    assert store.reads, "computing must read shards"
    assert {k.split("/c/")[1] for k in store.reads} == {"0/0"}  # only the one shard needed
    assert value == pytest.approx(2 * image[:128, :256].mean(), rel=1e-5)


def test_dask_input_rechunked_to_whole_shards_loses_nothing(tmp_path, rng):
    # Dask chunks (37 x 53) straddle shard boundaries; written naively, tasks sharing a
    # shard would race in read-modify-write.  write_mosaic must rechunk to whole shards.
    data = da.from_array(rng.integers(0, 60000, size=(400, 600), dtype=np.uint16),
                         chunks=(37, 53))
    url = tmp_path / "m.zarr"
    with dask.config.set(scheduler="threads", num_workers=8):
        write_mosaic(url, data, META, chunks=(32, 32), shards=(128, 128))
    np.testing.assert_array_equal(open_mosaic(url).values, data.compute())


def test_xarray_round_trip_keeps_metadata_and_translation(tmp_path, image):
    first = tmp_path / "a.zarr"
    write_mosaic(first, image, META, translation=(100.0, 200.0), chunks=(64, 64),
                 shards=(128, 128))
    m = open_mosaic(first)
    second = tmp_path / "b.zarr"
    write_mosaic(second, m.isel(y=slice(10, 200)), chunks=(64, 64), shards=(128, 128))
    out = open_mosaic(second)
    np.testing.assert_array_equal(out.values, image[10:200])
    np.testing.assert_allclose(out.y.values, m.y.values[10:200])
    assert out.attrs["high_tension_kv"] == 80.0


def test_pyramid_levels_are_2x2_means_in_the_same_frame(tmp_path, rng):
    data = rng.uniform(0, 1, size=(259, 130)).astype(np.float32)  # odd edge on purpose
    url = tmp_path / "m.zarr"
    write_mosaic(url, data, META, chunks=(32, 32), shards=(64, 64), levels=3)
    level1 = open_mosaic(url, level=1)
    # Independent oracle: pad the odd edge by repeating the last row, then block-average.
    padded = np.concatenate([data, data[-1:]], axis=0).astype(np.float64)
    expected = padded.reshape(130, 2, 65, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(level1.values, expected, rtol=1e-6)
    assert level1.attrs["pixel_size_angstrom"] == pytest.approx(2 * 0.2074)
    # The coarse pixel (0, 0) centre lies halfway between fine pixels 0 and 1.
    assert float(level1.x[0]) == pytest.approx(0.5 * 0.2074)
    assert open_mosaic(url, level=2).shape == (65, 33)
    with pytest.raises(MetadataError, match="level 3 does not exist"):
        open_mosaic(url, level=3)


def test_integer_pyramid_keeps_dtype(tmp_path):
    data = np.array([[1, 2], [3, 5]], dtype=np.uint16)
    url = tmp_path / "m.zarr"
    write_mosaic(url, data, META, chunks=(2, 2), shards=(2, 2), levels=2)
    level1 = open_mosaic(url, level=1)
    assert level1.dtype == np.uint16 and int(level1.values[0, 0]) == round(11 / 4)


# --------------------------------------------------------------------------- completion


def test_exception_midway_leaves_store_incomplete_and_refused(tmp_path, image):
    calls = {"n": 0}

    def flaky(block):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full (simulated)")
        return block

    source = da.from_array(image, chunks=(128, 128)).map_blocks(flaky, dtype=image.dtype)
    url = tmp_path / "m.zarr"
    with dask.config.set(scheduler="sync"):
        with pytest.raises(RuntimeError, match="disk full") as info:
            write_mosaic(url, source, META, chunks=(64, 64), shards=(128, 128))
    assert any("incomplete" in note for note in getattr(info.value, "__notes__", []))
    assert zarr.open_group(url, mode="r").attrs["stemscale"]["complete"] is False
    with pytest.raises(IncompleteMosaicError, match="not completely written"):
        open_mosaic(url)
    assert open_mosaic(url, allow_incomplete=True).shape == image.shape


def test_create_then_mark_complete(tmp_path):
    url = tmp_path / "m.zarr"
    group = create_mosaic(url, (256, 256), META, chunks=(64, 64), shards=(128, 128))
    with pytest.raises(IncompleteMosaicError):
        open_mosaic(url)
    for y0 in (0, 128):
        for x0 in (0, 128):
            write_region(group["0"], np.full((128, 128), y0 + x0, np.float32), (y0, x0))
    mark_complete(group)
    m = open_mosaic(url)
    assert float(m[200, 200]) == 256.0


def test_write_region_refuses_partial_shards(tmp_path):
    group = create_mosaic(tmp_path / "m.zarr", (256, 200), META, chunks=(64, 50),
                          shards=(128, 100))
    with pytest.raises(InputError, match="not aligned to whole shards"):
        write_region(group["0"], np.zeros((64, 100), np.float32), (0, 0))
    with pytest.raises(InputError, match="not aligned"):
        write_region(group["0"], np.zeros((128, 100), np.float32), (64, 0))
    write_region(group["0"], np.ones((128, 100), np.float32), (128, 100))  # edge shard: fine


def test_existing_output_is_not_overwritten_silently(tmp_path, image):
    url = tmp_path / "m.zarr"
    write_array(url, image, META)
    with pytest.raises(InputError, match="already exists"):
        write_array(url, image, META)
    write_array(url, image[:10, :10], META, overwrite=True)
    assert open_mosaic(url).shape == (10, 10)


# --------------------------------------------------------------------------- bad input


def test_nan_in_numpy_input_writes_nothing(tmp_path, image):
    image[5, 7] = np.nan
    image[6, 8] = np.inf
    url = tmp_path / "m.zarr"
    with pytest.raises(InputError, match="2 NaN or Inf"):
        write_mosaic(url, image, META)
    assert not os.path.exists(url)


def test_nan_in_dask_input_names_block_and_leaves_incomplete(tmp_path, image):
    image[200, 300] = np.nan
    url = tmp_path / "m.zarr"
    with pytest.raises(InputError, match=r"block \[128:256, 256:512\].*y=200, x=300"):
        write_mosaic(url, da.from_array(image, chunks=(64, 64)), META, chunks=(64, 64),
                     shards=(128, 256))
    with pytest.raises(IncompleteMosaicError):
        open_mosaic(url)


@pytest.mark.parametrize("shape", [(3, 40, 40), (40,), (2, 2, 8, 8)])
def test_wrong_dimensionality(tmp_path, shape):
    with pytest.raises(InputError, match="2-D") as info:
        write_mosaic(tmp_path / "m.zarr", np.zeros(shape, np.float32), META)
    if len(shape) == 3:
        assert "select one frame" in str(info.value)
    assert not os.path.exists(tmp_path / "m.zarr")


@pytest.mark.parametrize("size", [0.0, -0.2, float("nan")])
def test_zero_negative_or_nan_pixel_size(size):
    with pytest.raises(InputError, match="pixel_size_angstrom must be a positive"):
        AcquisitionMetadata(pixel_size_angstrom=size)


def test_missing_pixel_size(tmp_path):
    with pytest.raises(MetadataError, match="pixel size is unknown"):
        write_mosaic(tmp_path / "m.zarr", np.zeros((4, 4)), None)
    with pytest.raises(MetadataError, match="pixel_size_angstrom"):
        write_mosaic(tmp_path / "m.zarr", xr.DataArray(np.zeros((4, 4)), dims=("y", "x")))


def test_complex_pixels_refused(tmp_path):
    with pytest.raises(InputError, match="complex"):
        write_mosaic(tmp_path / "m.zarr", np.zeros((4, 4), np.complex64), META)


def test_path_that_does_not_exist(tmp_path):
    with pytest.raises(MosaicNotFoundError, match="nope.zarr.*does not exist"):
        open_mosaic(tmp_path / "nope.zarr")


def test_bare_zarr_array_without_ngff(tmp_path):
    zarr.create_array(tmp_path / "bare.zarr", shape=(8, 8), dtype="f4")
    with pytest.raises(MetadataError, match="bare zarr array without OME-NGFF"):
        open_mosaic(tmp_path / "bare.zarr")


def test_group_without_ngff(tmp_path):
    group = zarr.create_group(tmp_path / "g.zarr")
    group.create_array("0", shape=(8, 8), dtype="f4")
    with pytest.raises(MetadataError, match="no OME-NGFF 'multiscales'"):
        open_mosaic(tmp_path / "g.zarr")


def test_not_a_zarr_store(tmp_path):
    (tmp_path / "notes.zarr").mkdir()
    (tmp_path / "notes.zarr" / "readme.txt").write_text("hello")
    with pytest.raises(MetadataError, match="not a readable zarr store"):
        open_mosaic(tmp_path / "notes.zarr")


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_shard_raises_corrupt_block_error_naming_it(tmp_path, image, damage):
    url = tmp_path / "m.zarr"
    write_mosaic(url, image, META, chunks=(64, 64), shards=(128, 256))
    shard = url / "0" / "c" / "1" / "0"
    raw = bytearray(shard.read_bytes())
    if damage == "flip":
        raw[200:260] = bytes(60)
    else:
        raw = raw[: len(raw) // 2]
    shard.write_bytes(bytes(raw))
    m = open_mosaic(url)  # metadata is intact: opening works
    float(m[:128].sum())  # other shards still read fine
    with pytest.raises(CorruptBlockError, match=r"damaged.*pixels \[128:256, 0:256\].*'0/c/1/0'"):
        m.sum().compute()
