"""Mosaic stores: zarr v3 + OME-NGFF 0.5, and the lazy xarray view of them.

A mosaic is a zarr v3 group with one sharded 2-D array ``0`` (level 0).  Its
attributes hold the NGFF ``ome`` block and a ``stemscale`` block with the
acquisition metadata, provenance and a ``complete`` flag.  Writers set
``complete`` only after the last region is written, so an interrupted write
is never mistaken for a finished mosaic.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import dask.array as da
import numpy as np
import xarray as xr
import zarr
from zarr.codecs import BloscCodec, BloscShuffle

from ..errors import IncompleteMosaicError, InputError, MetadataError
from ..metadata import AcquisitionMetadata, provenance
from .ngff import IMAGE_PATH, SPACE_UNIT, multiscales_metadata, pixel_size_from_attrs, translation_from_attrs
from .store import PathLike, make_store, require_store

__all__ = [
    "DEFAULT_CHUNKS",
    "DEFAULT_SHARDS",
    "create_mosaic",
    "open_mosaic_group",
    "mark_complete",
    "is_complete",
    "open_mosaic",
    "write_array",
]

DEFAULT_CHUNKS = (512, 512)
DEFAULT_SHARDS = (2048, 2048)


def _normalise_blocks(shape: Sequence[int], chunks: Sequence[int], shards: Sequence[int] | None):
    chunks = tuple(int(c) for c in chunks)
    if len(chunks) != 2 or min(chunks) <= 0:
        raise InputError(f"chunks must be two positive integers (y, x), got {chunks}")
    if shards is None:
        return chunks, None
    shards = tuple(int(s) for s in shards)
    if len(shards) != 2 or any(s % c for s, c in zip(shards, chunks)):
        raise InputError(
            f"shards {shards} must be whole multiples of chunks {chunks} along each axis"
        )
    # A shard larger than the image would waste nothing on disk but confuses Dask chunking.
    shards = tuple(min(s, -(-n // c) * c) for s, n, c in zip(shards, shape, chunks))
    return chunks, shards


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
) -> zarr.Group:
    """Create an empty mosaic store, marked incomplete until :func:`mark_complete`.

    Parameters
    ----------
    url
        Local path or fsspec URL of the new store (``.zarr`` by convention).
    shape
        (height, width) in pixels.
    metadata
        Acquisition metadata; its pixel size goes into the NGFF scale.
    dtype
        Pixel type (float32 for simulations, the detector's integer type for raw data).
    chunks, shards
        Inner chunk and shard shapes in pixels.  Writers should write whole
        shards (Dask chunks = shards) so two tasks never share a shard.
    name
        NGFF image name.
    translation
        Position of pixel (0, 0) in Å as (y, x), e.g. a stage position.
    storage_options
        fsspec options for remote URLs.
    overwrite
        Replace an existing store.
    details
        Extra provenance (the command, seed, source files ...).

    Returns
    -------
    zarr.Group
        The open group; write pixels into ``group["0"]``.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) != 2 or min(shape) <= 0:
        raise InputError(f"a mosaic is 2-D with positive height and width, got shape {shape}")
    chunks, shards = _normalise_blocks(shape, chunks, shards)
    store = make_store(url, storage_options=storage_options)
    group = zarr.create_group(store=store, zarr_format=3, overwrite=overwrite)
    dtype = np.dtype(dtype)
    # Integer detector counts compress best with bit-shuffle; floats with byte shuffle.
    shuffle = BloscShuffle.bitshuffle if dtype.kind in "iu" else BloscShuffle.shuffle
    group.create_array(
        IMAGE_PATH,
        shape=shape,
        dtype=dtype,
        chunks=chunks,
        shards=shards,
        compressors=[BloscCodec(cname="zstd", clevel=3, shuffle=shuffle)],
        fill_value=0,
        dimension_names=("y", "x"),
    )
    group.attrs.update(
        {
            "ome": multiscales_metadata(
                metadata.pixel_size_angstrom, name=name, translation=translation
            ),
            "stemscale": {
                "acquisition": metadata.to_attrs(),
                "provenance": provenance(**(details or {})),
                "complete": False,
            },
        }
    )
    return group


def mark_complete(group: zarr.Group, **summary: Any) -> None:
    """Flag a mosaic as fully written (the last step of every writer)."""
    block = dict(group.attrs.get("stemscale", {}))
    block["complete"] = True
    if summary:
        block["summary"] = summary
    group.attrs["stemscale"] = block


def is_complete(group: zarr.Group) -> bool:
    """Whether a writer finished this mosaic."""
    return bool(group.attrs.get("stemscale", {}).get("complete", False))


def open_mosaic_group(
    url: PathLike,
    *,
    storage_options: dict[str, Any] | None = None,
    mode: str = "r",
) -> zarr.Group:
    """Open an existing mosaic group, with clear errors for common mistakes."""
    require_store(url, storage_options=storage_options)
    store = make_store(url, storage_options=storage_options, read_only=(mode == "r"))
    try:
        node = zarr.open(store=store, mode=mode)
    except Exception as exc:  # zarr raises several types for non-zarr paths
        raise MetadataError(
            f"'{os.fspath(url)}' is not a readable zarr v3 store ({type(exc).__name__}: {exc})"
        ) from None
    if isinstance(node, zarr.Array):
        raise MetadataError(
            f"'{os.fspath(url)}' is a bare zarr array without OME-NGFF metadata; "
            "a mosaic is a group with NGFF 'multiscales' (ingest it with 'stemscale ingest')"
        )
    return node


def open_mosaic(
    url: PathLike,
    *,
    storage_options: dict[str, Any] | None = None,
    chunks: Sequence[int] | str = "shards",
    allow_incomplete: bool = False,
) -> xr.DataArray:
    """Open a mosaic as a lazy :class:`xarray.DataArray` in Å coordinates.

    Nothing is read but metadata: pixels load only when the result is computed.

    Parameters
    ----------
    url
        Local path or fsspec URL (``s3://...``) of a mosaic store.
    storage_options
        fsspec options for remote URLs (endpoint, credentials).
    chunks
        Dask chunking: ``"shards"`` (default, one task per shard), ``"chunks"``
        (one per inner zarr chunk) or an explicit (y, x) shape.
    allow_incomplete
        Open a store whose writer did not finish (for inspection only).

    Returns
    -------
    xarray.DataArray
        Dims ``("y", "x")``, coordinates in Å, ``attrs`` with the pixel size,
        acquisition metadata and provenance.

    Raises
    ------
    MosaicNotFoundError
        Nothing exists at ``url``.
    MetadataError
        The store lacks NGFF metadata or the pixel size.
    IncompleteMosaicError
        The writer of the store did not finish.
    """
    where = os.fspath(url)
    group = open_mosaic_group(url, storage_options=storage_options)
    attrs = dict(group.attrs)
    pixel_size = pixel_size_from_attrs(attrs, where)
    ty, tx = translation_from_attrs(attrs, where)
    block = attrs.get("stemscale", {})
    if block and not block.get("complete", False) and not allow_incomplete:
        raise IncompleteMosaicError(
            f"'{where}' was not completely written (its writer stopped early); "
            "rerun the command that made it, or pass allow_incomplete=True to inspect it"
        )
    if IMAGE_PATH not in group:
        raise MetadataError(f"'{where}' has NGFF metadata but no level-0 array '{IMAGE_PATH}'")
    array = group[IMAGE_PATH]
    if array.ndim != 2:
        raise InputError(f"'{where}/{IMAGE_PATH}' has {array.ndim} dimensions; expected 2 (y, x)")
    if chunks == "shards":
        dask_chunks = tuple(array.shards or array.chunks)
    elif chunks == "chunks":
        dask_chunks = tuple(array.chunks)
    else:
        dask_chunks = tuple(int(c) for c in chunks)
    data = da.from_zarr(
        where, component=IMAGE_PATH, chunks=dask_chunks, storage_options=storage_options
    ) if _remote(where) else da.from_zarr(array, chunks=dask_chunks)
    ny, nx = array.shape
    acquisition = dict(block.get("acquisition", {}))
    acquisition["pixel_size_angstrom"] = pixel_size
    out_attrs = {
        **acquisition,
        "units": "counts",
        "provenance": block.get("provenance", {}),
        "source_store": where,
    }
    return xr.DataArray(
        data,
        dims=("y", "x"),
        coords={
            "y": ("y", ty + pixel_size * np.arange(ny), {"units": SPACE_UNIT}),
            "x": ("x", tx + pixel_size * np.arange(nx), {"units": SPACE_UNIT}),
        },
        name=attrs["ome"]["multiscales"][0].get("name", "mosaic"),
        attrs=out_attrs,
    )


def _remote(where: str) -> bool:
    from .store import is_remote

    return is_remote(where)


def write_array(
    url: PathLike,
    image: np.ndarray,
    metadata: AcquisitionMetadata,
    **kwargs: Any,
) -> zarr.Group:
    """Write an in-memory 2-D image as a complete mosaic (small data, tests, ingest).

    The image is validated first (2-D, finite) so that nothing is written for bad input.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise InputError(f"expected a 2-D image (y, x), got an array of shape {image.shape}")
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        bad = int((~np.isfinite(image)).sum())
        raise InputError(f"image contains {bad} NaN or Inf pixels; expected finite intensities")
    group = create_mosaic(url, image.shape, metadata, dtype=image.dtype, **kwargs)
    group[IMAGE_PATH][...] = image
    mark_complete(group)
    return group
