"""Mosaic stores: zarr v3 + OME-NGFF 0.5, and the lazy xarray view of them.

A mosaic is a zarr v3 group holding one sharded 2-D array per resolution
level (``0`` = full resolution, ``1..n`` = 2x2-binned pyramid for viewers).
Its attributes hold the NGFF ``ome`` block and a ``stemscale`` block with the
acquisition metadata, provenance and a ``complete`` flag.  Writers set
``complete`` only after the last shard of the last level is written, so an
interrupted write is never mistaken for a finished mosaic, and
:func:`open_mosaic` refuses such a store.

Writing rules that keep parallel writes safe: every task writes whole shards
(Dask chunks = shards), because two tasks writing different inner chunks of
one shard race in a read-modify-write and silently lose data.  Each inner
chunk carries a CRC32C checksum, so damaged bytes surface as
:class:`~stemscale.errors.CorruptBlockError` instead of silent garbage.
"""

from __future__ import annotations

import functools
import importlib
import logging
from typing import Any, Literal, Mapping, Sequence

import dask
import dask.array as da
import numpy as np
import xarray as xr
import zarr
from dask.base import tokenize
from zarr.abc.store import Store
from zarr.codecs import BloscCodec, BloscShuffle, Crc32cCodec

from ..executor import dask_progress
from ..errors import IncompleteMosaicError, InputError, MetadataError
from ..metadata import AcquisitionMetadata, provenance
from .zarr_nodes import array_at, json_object
from .blocks import ZarrBlockReader
from .ngff import (
    IMAGE_PATH,  # noqa: F401  (re-exported for callers of the first version)
    SPACE_UNIT,
    _multiscale,
    level_path,
    level_paths_from_attrs,
    multiscales_metadata,
    pixel_size_from_attrs,
    translation_from_attrs,
)
from .store import PathLike, describe, make_store, remove_store, require_store, store_exists

__all__ = [
    "DEFAULT_CHUNKS",
    "DEFAULT_SHARDS",
    "create_mosaic",
    "open_mosaic_group",
    "mark_complete",
    "is_complete",
    "open_mosaic",
    "write_array",
    "write_mosaic",
    "write_region",
    "shard_shape",
]

log = logging.getLogger(__name__)

DEFAULT_CHUNKS = (512, 512)
DEFAULT_SHARDS = (2048, 2048)


# --------------------------------------------------------------------------- layout


def _normalise_blocks(
    shape: Sequence[int], chunks: Sequence[int], shards: Sequence[int] | None
) -> tuple[tuple[int, int], tuple[int, int] | None]:
    chunks = tuple(int(c) for c in chunks)
    if len(chunks) != 2 or min(chunks) <= 0:
        raise InputError(f"chunks must be two positive integers (y, x), got {chunks}")
    if shards is None:
        return (chunks[0], chunks[1]), None
    shards = tuple(int(s) for s in shards)
    if len(shards) != 2 or min(shards) <= 0 or any(s % c for s, c in zip(shards, chunks)):
        raise InputError(
            f"shards {shards} must be positive whole multiples of chunks {chunks} along each axis"
        )
    # A shard larger than the image wastes nothing on disk but confuses Dask chunking.
    shards = tuple(min(s, -(-n // c) * c) for s, n, c in zip(shards, shape, chunks))
    return (chunks[0], chunks[1]), (shards[0], shards[1])


def shard_shape(array: zarr.Array) -> tuple[int, ...]:
    """The unit a writer must write whole: the shard shape, or the chunk shape if unsharded."""
    return tuple(array.shards or array.chunks)


def _compressors(dtype: np.dtype) -> list[Any]:
    # Integer detector counts compress best with bit-shuffle; floats with byte shuffle.
    shuffle = BloscShuffle.bitshuffle if dtype.kind in "iu" else BloscShuffle.shuffle
    # Level 1: most of the ratio of level 3 at half the CPU (it dominated writes).
    # The CRC32C turns a damaged chunk into a decode error instead of silent garbage.
    return [BloscCodec(cname="zstd", clevel=1, shuffle=shuffle), Crc32cCodec()]


def _check_dtype(dtype: Any) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf":
        raise InputError(
            f"pixel type {dtype} is not supported; a mosaic holds real intensities "
            "(unsigned/signed integers or floats)"
        )
    return np.dtype("uint8") if dtype.kind == "b" else dtype


# --------------------------------------------------------------------------- create


def create_mosaic(
    url: PathLike,
    shape: Sequence[int],
    metadata: AcquisitionMetadata,
    *,
    dtype: str | np.dtype = "float32",
    chunks: Sequence[int] = DEFAULT_CHUNKS,
    shards: Sequence[int] | None = DEFAULT_SHARDS,
    name: str = "mosaic",
    translation: tuple[float, float] = (0.0, 0.0),
    storage_options: dict[str, Any] | None = None,
    overwrite: bool = False,
    details: dict[str, Any] | None = None,
    levels: int = 1,
) -> zarr.Group:
    """Create an empty mosaic store, marked incomplete until :func:`mark_complete`.

    Parameters
    ----------
    url
        Local path, fsspec URL (``s3://...``) or zarr store of the new mosaic
        (``.zarr`` by convention).
    shape
        (height, width) in pixels of level 0.
    metadata
        Acquisition metadata; its pixel size goes into the NGFF scale.
    dtype
        Pixel type (float32 for simulations, the detector's integer type for raw data).
    chunks, shards
        Inner chunk and shard shapes in pixels.  Writers must write whole
        shards (Dask chunks = shards) so two tasks never share a shard.
    name
        NGFF image name.
    translation
        Position of the centre of pixel (0, 0) in Å as (y, x), e.g. a stage position.
    storage_options
        fsspec options for remote URLs.
    overwrite
        Replace an existing store (it is deleted first, so no stale shard survives).
    details
        Extra provenance (the command, seed, source files ...).
    levels
        Number of resolution levels to create (1 = no pyramid); level ``k``
        has shape ``ceil(shape / 2**k)``.

    Returns
    -------
    zarr.Group
        The open group; write pixels into ``group["0"]`` (whole shards), then
        call :func:`mark_complete`.

    Raises
    ------
    InputError
        Bad shape, chunking or dtype, or the store exists and ``overwrite`` is False.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) != 2 or min(shape) <= 0:
        raise InputError(f"a mosaic is 2-D with positive height and width, got shape {shape}")
    if not isinstance(metadata, AcquisitionMetadata):
        raise InputError(
            f"metadata must be a stemscale.AcquisitionMetadata, got {type(metadata).__name__}"
        )
    levels = int(levels)
    if levels < 1:
        raise InputError(f"levels must be >= 1, got {levels}")
    dtype = _check_dtype(dtype)
    chunks_n, shards_n = _normalise_blocks(shape, chunks, shards)
    ome = multiscales_metadata(
        metadata.pixel_size_angstrom, name=name, translation=translation, levels=levels
    )
    if not isinstance(url, Store) and store_exists(
        url, storage_options=storage_options
    ):
        if not overwrite:
            raise InputError(
                f"'{describe(url)}' already exists; choose another output or pass "
                "overwrite=True (--overwrite on the command line) to replace it"
            )
        remove_store(url, storage_options=storage_options)
    store = make_store(url, storage_options=storage_options)
    group = zarr.create_group(store=store, zarr_format=3, overwrite=overwrite)
    # The incomplete flag goes in first: a crash while creating arrays leaves a store
    # that open_mosaic refuses.
    group.attrs.update(
        {
            "ome": ome,
            "stemscale": {
                "acquisition": metadata.to_attrs(),
                "provenance": provenance(**(details or {})),
                "complete": False,
            },
        }
    )
    for level in range(levels):
        level_shape = tuple(-(-n // 2**level) for n in shape)
        c, s = _normalise_blocks(level_shape, chunks_n, shards_n)
        group.create_array(
            level_path(level),
            shape=level_shape,
            dtype=dtype,
            chunks=c,
            shards=s,
            compressors=_compressors(dtype),
            fill_value=0,
            dimension_names=("y", "x"),
        )
    return group


def mark_complete(group: zarr.Group, **summary: Any) -> None:
    """Flag a mosaic as fully written (the last step of every writer)."""
    block = json_object(group.attrs.get("stemscale", {}),
                        f"the 'stemscale' attribute of '{group.store_path}'")
    block["complete"] = True
    if summary:
        block["summary"] = summary
    group.attrs["stemscale"] = block


def is_complete(group: zarr.Group) -> bool:
    """Whether a writer finished this mosaic."""
    block = json_object(group.attrs.get("stemscale", {}),
                        f"the 'stemscale' attribute of '{group.store_path}'")
    return bool(block.get("complete", False))


# --------------------------------------------------------------------------- open


def open_mosaic_group(
    url: PathLike,
    *,
    storage_options: dict[str, Any] | None = None,
    mode: Literal["r", "r+", "a", "w", "w-"] = "r",
) -> zarr.Group:
    """Open an existing mosaic group, with clear errors for common mistakes.

    Raises
    ------
    MosaicNotFoundError
        Nothing exists at ``url``.
    MetadataError
        ``url`` is not a zarr v3 store, or is a bare array without NGFF metadata.
    """
    where = describe(url)
    require_store(url, storage_options=storage_options)
    store = make_store(url, storage_options=storage_options, read_only=(mode == "r"))
    try:
        node = zarr.open(store=store, mode=mode, zarr_format=3)
    except Exception as exc:  # zarr raises several types for non-zarr paths
        try:  # a clearer message for zarr v2 data (e.g. NGFF 0.4)
            zarr.open(store=store, mode="r", zarr_format=2)
        except Exception:
            pass
        else:
            raise MetadataError(
                f"'{where}' is a zarr v2 store; stemscale mosaics are zarr v3 with OME-NGFF 0.5 "
                "metadata (convert it with stemscale.io.write_mosaic)"
            ) from None
        raise MetadataError(
            f"'{where}' is not a readable zarr store ({type(exc).__name__}: {exc}); "
            "a mosaic is a zarr v3 group written by stemscale (see 'stemscale ingest')"
        ) from None
    if isinstance(node, zarr.Array):
        raise MetadataError(
            f"'{where}' is a bare zarr array without OME-NGFF metadata, so its pixel size "
            "is unknown; a mosaic is a zarr group with NGFF 'multiscales' (convert it with "
            "stemscale.io.write_mosaic(url, data, AcquisitionMetadata(pixel_size_angstrom=...)))"
        )
    return node


def _dask_chunks(array: zarr.Array, chunks: Sequence[int] | int | str) -> tuple[int, ...]:
    if chunks == "shards":
        return shard_shape(array)
    if chunks == "chunks":
        return tuple(array.chunks)
    if isinstance(chunks, str):
        raise InputError(f"chunks must be 'shards', 'chunks' or a (y, x) shape, got {chunks!r}")
    if isinstance(chunks, (int, np.integer)):
        chunks = (int(chunks), int(chunks))
    out = tuple(int(c) for c in chunks)
    if len(out) != 2 or min(out) <= 0:
        raise InputError(f"chunks must be two positive integers (y, x), got {chunks!r}")
    return out


def open_mosaic(
    url: PathLike,
    storage_options: dict[str, Any] | None = None,
    chunks: Sequence[int] | int | str = "shards",
    *,
    level: int = 0,
    allow_incomplete: bool = False,
) -> xr.DataArray:
    """Open a mosaic as a lazy :class:`xarray.DataArray` in Å coordinates.

    Only metadata (two small JSON documents) is read: pixels load only when
    the result is computed, block by block, in whatever process computes it.

    Parameters
    ----------
    url
        Local path, fsspec URL (``s3://...``) or zarr store of a mosaic.
    storage_options
        fsspec options for remote URLs (endpoint, credentials).
    chunks
        Dask chunking: ``"shards"`` (default, one task per shard), ``"chunks"``
        (one per inner zarr chunk) or an explicit (y, x) shape.
    level
        Resolution level (0 = full resolution; ``k`` = the 2**k-binned pyramid level).
    allow_incomplete
        Open a store whose writer did not finish (for inspection only).

    Returns
    -------
    xarray.DataArray
        Dims ``("y", "x")``; coordinates ``y``, ``x`` in Å (pixel centres,
        ``units = "angstrom"``); ``attrs`` with ``pixel_size_angstrom``,
        ``high_tension_kv``, ``convergence_mrad``, ``dose_e_per_a2`` (when
        known), the rest of the acquisition metadata, ``provenance``,
        ``level`` and ``source_store``.

    Raises
    ------
    MosaicNotFoundError
        Nothing exists at ``url``.
    MetadataError
        The store lacks NGFF metadata or the pixel size.
    IncompleteMosaicError
        The writer of the store did not finish.

    Notes
    -----
    Damaged data surface when computing: a shard whose bytes fail the CRC32C
    checksum or cannot be decoded raises
    :class:`~stemscale.errors.CorruptBlockError` naming the pixel range and the
    shard object.  A shard object that is *missing* from a complete store reads
    as the fill value (0), as zarr defines it: zarr cannot tell a deleted
    shard from one that was never written because it was empty.  Transport
    errors (permissions, network) are raised unchanged as ``OSError``.
    """
    # Give the array its .stem facade.  The accessor is a face above this layer, so it is
    # loaded by name here rather than imported (io never depends on it at import time).
    importlib.import_module("stemscale.accessor")
    where = describe(url)
    group = open_mosaic_group(url, storage_options=storage_options)
    attrs = group.attrs.asdict()
    level = int(level)
    pixel_size = pixel_size_from_attrs(attrs, where, level)
    ty, tx = translation_from_attrs(attrs, where, level)
    path = level_paths_from_attrs(attrs, where)[level]
    block = json_object(attrs.get("stemscale") or {}, f"the 'stemscale' attribute of '{where}'")
    if not block.get("complete", False) and not allow_incomplete:
        if "stemscale" in attrs:
            raise IncompleteMosaicError(
                f"'{where}' was not completely written (its writer stopped before the end, "
                "so some shards may be missing); rerun the command that made it, or pass "
                "allow_incomplete=True to inspect it"
            )
    if path not in group:
        raise MetadataError(f"'{where}' has NGFF metadata but no array at path '{path}'")
    array = group[path]
    if not isinstance(array, zarr.Array) or array.ndim != 2:
        raise InputError(
            f"'{where}/{path}' has shape {getattr(array, 'shape', None)}; "
            "expected a 2-D (y, x) array"
        )
    dask_chunks = _dask_chunks(array, chunks)
    reader = ZarrBlockReader(
        url,
        path,
        array.shape,
        array.dtype,
        shard_shape(array),
        storage_options=storage_options,
    )
    # The token includes the creation stamp so a rewritten store never reuses cached keys.
    token = tokenize(
        where, path, array.shape, str(array.dtype), dask_chunks, storage_options,
        block.get("provenance", {}).get("created"), block.get("summary"),
    )
    data = da.from_array(
        reader,
        chunks=dask_chunks,
        name=f"open_mosaic-{token}",
        asarray=False,
        fancy=False,
        lock=False,
        meta=np.empty((0, 0), dtype=array.dtype),
    )
    ny, nx = array.shape
    acquisition = dict(block.get("acquisition", {}))
    acquisition["pixel_size_angstrom"] = pixel_size
    out_attrs = {
        **acquisition,
        "units": "counts" if array.dtype.kind in "iu" else "arbitrary",
        "provenance": block.get("provenance", {}),
        "level": level,
        "source_store": where,
    }
    if block.get("frames"):
        out_attrs["frames"] = block["frames"]
    name = _multiscale(attrs, where).get("name", "mosaic")
    return xr.DataArray(
        data,
        dims=("y", "x"),
        coords={
            "y": ("y", ty + pixel_size * np.arange(ny), {"units": SPACE_UNIT, "long_name": "y"}),
            "x": ("x", tx + pixel_size * np.arange(nx), {"units": SPACE_UNIT, "long_name": "x"}),
        },
        name=name,
        attrs=out_attrs,
    )


# --------------------------------------------------------------------------- write


def write_region(array: zarr.Array, block: np.ndarray, origin: Sequence[int]) -> None:
    """Write ``block`` at ``origin`` (y0, x0), refusing anything but whole shards.

    A block must start on a shard boundary and end on one or at the array edge:
    writing part of a shard is a read-modify-write that races with any other
    task writing the rest of that shard.

    Raises
    ------
    InputError
        The block is not aligned to whole shards.
    """
    shards = shard_shape(array)
    y0, x0 = (int(o) for o in origin)
    y1, x1 = y0 + block.shape[0], x0 + block.shape[1]
    for start, stop, size, n, axis in ((y0, y1, shards[0], array.shape[0], "y"),
                                       (x0, x1, shards[1], array.shape[1], "x")):
        if start % size or (stop % size and stop != n) or stop > n:
            raise InputError(
                f"block [{y0}:{y1}, {x0}:{x1}] is not aligned to whole shards of {shards} "
                f"along {axis} (array shape {array.shape}); rechunk the data to the shard shape"
            )
    array[y0:y1, x0:x1] = block


class _Target:
    """Picklable location of one array of a mosaic being written."""

    def __init__(self, url: PathLike, path: str, storage_options: dict[str, Any] | None):
        self.url = url
        self.path = path
        self.storage_options = dict(storage_options or {})

    def open(self) -> zarr.Array:
        store = make_store(self.url, storage_options=self.storage_options)
        return zarr.open_array(store=store, path=self.path, mode="r+", zarr_format=3)


def _write_block(
    target: _Target, block: np.ndarray, origin: tuple[int, int], check_finite: bool, where: str
) -> int:
    block = np.asarray(block)
    if check_finite and block.dtype.kind == "f":
        finite = np.isfinite(block)
        if not finite.all():
            bad = int(block.size - np.count_nonzero(finite))
            iy, ix = np.argwhere(~finite)[0]
            y0, x0 = origin
            raise InputError(
                f"the data written to '{where}' contain {bad} NaN or Inf pixel(s) in block "
                f"[{y0}:{y0 + block.shape[0]}, {x0}:{x0 + block.shape[1]}] (first at y={y0 + iy}, "
                f"x={x0 + ix}); expected finite intensities"
            )
    array = target.open()
    if array.dtype.kind in "iu" and block.dtype.kind == "f":
        # Round and clip instead of letting out-of-range values wrap around.
        info = np.iinfo(array.dtype)
        block = np.clip(np.rint(block), info.min, info.max)
    write_region(array, block.astype(array.dtype, copy=False), origin)
    return int(block.size)


def _bin2(block: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Mean over 2x2 pixels; an odd edge row/column is averaged with itself."""
    ny, nx = block.shape
    work = block.astype(np.float64)
    if ny % 2:
        work = np.concatenate([work, work[-1:, :]], axis=0)
    if nx % 2:
        work = np.concatenate([work, work[:, -1:]], axis=1)
    out = work.reshape(work.shape[0] // 2, 2, work.shape[1] // 2, 2).mean(axis=(1, 3))
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(dtype)


def _store_tasks(data: da.Array, target: _Target, check_finite: bool, where: str) -> list[Any]:
    offsets = [np.concatenate([[0], np.cumsum(c)[:-1]]) for c in data.chunks]
    blocks = data.to_delayed()
    write = dask.delayed(_write_block, pure=False)
    tasks = []
    for i, y0 in enumerate(offsets[0]):
        for j, x0 in enumerate(offsets[1]):
            tasks.append(write(target, blocks[i, j], (int(y0), int(x0)), check_finite, where))
    return tasks


def _as_metadata(metadata: Any, data: Any) -> AcquisitionMetadata:
    if isinstance(metadata, AcquisitionMetadata):
        return metadata
    if metadata is None and isinstance(data, xr.DataArray):
        fields = AcquisitionMetadata.__dataclass_fields__
        metadata = {k: v for k, v in data.attrs.items() if k in fields}
        if "pixel_size_angstrom" not in metadata:
            raise MetadataError(
                "the DataArray has no 'pixel_size_angstrom' attribute and no metadata was given; "
                "pass metadata=AcquisitionMetadata(pixel_size_angstrom=...)"
            )
    if metadata is None:
        raise MetadataError(
            "no metadata given, so the pixel size is unknown; pass "
            "metadata=AcquisitionMetadata(pixel_size_angstrom=...)"
        )
    if isinstance(metadata, Mapping):
        if metadata.get("pixel_size_angstrom") is None:
            raise MetadataError("metadata lacks 'pixel_size_angstrom' (Å per pixel)")
        return AcquisitionMetadata.from_attrs(metadata)
    raise InputError(
        f"metadata must be an AcquisitionMetadata or a mapping, got {type(metadata).__name__}"
    )


def _as_dask(data: Any, shards: tuple[int, int]) -> tuple[da.Array, bool]:
    """Return (2-D dask array chunked to ``shards``, whether finiteness is already checked)."""
    if isinstance(data, xr.DataArray):
        data = data.data
    checked = False
    if not isinstance(data, da.Array):
        data = np.asarray(data)
        _check_ndim(data.shape)
        _check_dtype(data.dtype)
        if data.dtype.kind == "f" and not np.isfinite(data).all():
            bad = int(data.size - np.count_nonzero(np.isfinite(data)))
            raise InputError(
                f"the image contains {bad} NaN or Inf pixel(s); expected finite intensities "
                "(mask or inpaint them before writing)"
            )
        checked = True
        data = da.from_array(data, chunks=shards)
    _check_ndim(data.shape)
    _check_dtype(data.dtype)
    return data.rechunk(shards), checked


def _check_ndim(shape: tuple[int, ...]) -> None:
    if len(shape) == 2:
        return
    if len(shape) == 3:
        raise InputError(
            f"expected a 2-D image (y, x) but got a 3-D array of shape {shape}; "
            "select one frame (data[i]) or sum the stack (data.sum(axis=0)) first"
        )
    raise InputError(f"expected a 2-D image (y, x), got an array of shape {shape}")


def write_mosaic(
    url: PathLike,
    data: Any,
    metadata: AcquisitionMetadata | Mapping[str, Any] | None = None,
    *,
    translation: tuple[float, float] | None = None,
    dtype: str | np.dtype | None = None,
    chunks: Sequence[int] = DEFAULT_CHUNKS,
    shards: Sequence[int] | None = DEFAULT_SHARDS,
    levels: int = 1,
    name: str = "mosaic",
    storage_options: dict[str, Any] | None = None,
    overwrite: bool = False,
    details: dict[str, Any] | None = None,
    frames: list[dict[str, Any]] | None = None,
    progress: bool = False,
) -> zarr.Group:
    """Write a 2-D image of any size as a complete mosaic, one Dask task per shard.

    The data are rechunked so that every Dask chunk is exactly one shard (never a
    partial-shard write from two tasks), written with the active Dask scheduler
    (threads, processes or a distributed cluster), then the optional pyramid is
    built from the stored level 0, and only then is the store marked complete.
    An exception anywhere leaves ``complete: False``, which :func:`open_mosaic`
    refuses.

    Parameters
    ----------
    url
        Output path, fsspec URL or zarr store.
    data
        2-D numpy array, Dask array or :class:`xarray.DataArray` (y, x).  A
        DataArray's attrs supply the metadata and its first coordinates the
        translation when those are not given.
    metadata
        Acquisition metadata (pixel size required).
    translation
        Å position of the centre of pixel (0, 0) as (y, x); default from the
        DataArray's coordinates, else (0, 0).
    dtype
        Stored pixel type (default: the data's).
    chunks, shards
        Inner chunk and shard shapes in pixels.
    levels
        Resolution levels to write (1 = none; ``n`` adds n-1 2x2-binned levels).
    name
        NGFF image name.
    storage_options
        fsspec options for remote URLs.
    overwrite
        Replace an existing store.
    details
        Extra provenance.
    frames
        Optional description of the raw frames the mosaic was built from.
    progress
        Show a progress bar (local schedulers).

    Returns
    -------
    zarr.Group
        The complete mosaic group.

    Raises
    ------
    InputError
        Wrong dimensionality or dtype, NaN/Inf pixels (found before anything is
        written for in-memory data; during the write, naming the block, for
        Dask data), or an existing output without ``overwrite``.
    MetadataError
        No pixel size.
    """
    where = describe(url)
    meta = _as_metadata(metadata, data)
    if translation is None:
        translation = (0.0, 0.0)
        if isinstance(data, xr.DataArray) and {"y", "x"} <= set(data.coords):
            if data.sizes.get("y", 0) and data.sizes.get("x", 0):
                translation = (float(data["y"][0]), float(data["x"][0]))
    shape = tuple(int(n) for n in getattr(data, "shape", ()))
    _check_ndim(shape)
    _check_dtype(dtype if dtype is not None else data.dtype)
    chunks_n, shards_n = _normalise_blocks(shape, chunks, shards)
    unit = shards_n or chunks_n
    array, checked = _as_dask(data, unit)
    out_dtype = _check_dtype(dtype if dtype is not None else array.dtype)
    if isinstance(data, xr.DataArray) and details is None:
        source = data.attrs.get("source_store")
        details = {"source": source} if source else None
    group = create_mosaic(
        url, shape, meta, dtype=out_dtype, chunks=chunks_n, shards=shards_n, name=name,
        translation=translation, storage_options=storage_options, overwrite=overwrite,
        details=details, levels=levels,
    )
    if frames:
        block = json_object(group.attrs["stemscale"], f"the 'stemscale' attribute of '{where}'")
        block["frames"] = frames
        group.attrs["stemscale"] = block
    try:
        with dask_progress(description="writing shards", enabled=progress):
            target = _Target(url, level_path(0), storage_options)
            dask.compute(*_store_tasks(array, target, not checked, where))
            for level in range(1, int(levels)):
                _write_level(url, group, level, storage_options)
    except Exception as exc:
        exc.add_note(f"'{where}' is left marked incomplete (complete: False)")
        raise
    mark_complete(group, shape=list(shape), levels=int(levels), dtype=str(out_dtype))
    return group


def _write_level(url: PathLike, group: zarr.Group, level: int, storage_options: Any) -> None:
    """Build pyramid level ``level`` lazily from the stored level ``level - 1``."""
    src = array_at(group, level_path(level - 1), describe(url))
    dst = array_at(group, level_path(level), describe(url))
    sy, sx = shard_shape(dst)
    reader = ZarrBlockReader(url, level_path(level - 1), src.shape, src.dtype, shard_shape(src),
                             storage_options)
    source = da.from_array(reader, chunks=(2 * sy, 2 * sx), asarray=False, fancy=False,
                           lock=False, meta=np.empty((0, 0), dtype=src.dtype))
    out_chunks = tuple(tuple(-(-c // 2) for c in cs) for cs in source.chunks)
    binned = source.map_blocks(
        functools.partial(_bin2, dtype=dst.dtype), dtype=dst.dtype, chunks=out_chunks
    )
    assert binned.shape == dst.shape, (binned.shape, dst.shape)
    target = _Target(url, level_path(level), storage_options)
    dask.compute(*_store_tasks(binned, target, False, describe(url)))


def write_array(
    url: PathLike,
    image: np.ndarray,
    metadata: AcquisitionMetadata,
    **kwargs: Any,
) -> zarr.Group:
    """Write an in-memory 2-D image as a complete mosaic (small data, tests, ingest).

    The image is validated first (2-D, finite) so that nothing is written for
    bad input.  Keyword arguments go to :func:`write_mosaic`.
    """
    image = np.asarray(image)
    return write_mosaic(url, image, metadata, **kwargs)
