"""Lazy, picklable access to one zarr array of a mosaic, block by block.

:class:`ZarrBlockReader` is the array-like that :func:`dask.array.from_array`
wraps in :func:`stemscale.io.open_mosaic`.  It holds only the location of the
array (a path or URL plus fsspec options), so it travels to Dask worker
processes cheaply and opens the array once per process.  A read that fails
because the stored bytes are damaged (checksum mismatch, undecodable
compressed data, truncated shard) is reported as
:class:`~stemscale.errors.CorruptBlockError` naming the store, the pixel
range and the shard object(s) involved; transport errors (``OSError``:
permissions, network) are re-raised unchanged because the data may be fine.
"""

from __future__ import annotations

from typing import Any, Sequence, cast

import numpy as np
import zarr

from ..errors import CorruptBlockError
from .store import PathLike, describe, make_store

__all__ = ["ZarrBlockReader", "shard_keys"]


def shard_keys(
    path: str, key: tuple[slice, slice], shard_shape: Sequence[int]
) -> list[str]:
    """Storage keys (default v3 ``c/i/j`` encoding) of the shards a selection touches."""
    ranges = []
    for sl, size in zip(key, shard_shape):
        first = sl.start // size
        last = (sl.stop - 1) // size
        ranges.append(range(first, last + 1))
    return [f"{path}/c/{i}/{j}" for i in ranges[0] for j in ranges[1]]


class ZarrBlockReader:
    """A read-only, picklable array-like over ``<store>/<path>``.

    Parameters
    ----------
    url
        Location of the mosaic group (path, fsspec URL or zarr store object).
    path
        Path of the array inside the group (``"0"`` for level 0).
    shape, dtype, shard_shape
        Known from the metadata already read, so nothing is opened until a
        block is requested.
    storage_options
        fsspec options for remote URLs.
    """

    def __init__(
        self,
        url: PathLike,
        path: str,
        shape: tuple[int, ...],
        dtype: np.dtype,
        shard_shape: tuple[int, ...],
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.url = url
        self.path = path
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)
        self.shard_shape = tuple(int(n) for n in shard_shape)
        self.storage_options = dict(storage_options or {})
        self._array: zarr.Array | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_array"] = None  # reopened in the receiving process
        return state

    def __repr__(self) -> str:
        return f"ZarrBlockReader({describe(self.url)!r}, {self.path!r}, shape={self.shape})"

    def _open(self) -> zarr.Array:
        if self._array is None:
            store = make_store(self.url, storage_options=self.storage_options, read_only=True)
            self._array = zarr.open_array(store=store, path=self.path, mode="r", zarr_format=3)
        return self._array

    def __getitem__(self, key: Any) -> np.ndarray:
        array = self._open()
        try:
            # zarr's default (CPU) buffers give a numpy array for the slices Dask asks for
            return cast(np.ndarray, array[key])
        except (OSError, MemoryError):
            raise
        except Exception as exc:  # codec / checksum / shard-index failures
            raise CorruptBlockError(self._message(key, exc)) from exc

    def _message(self, key: Any, exc: BaseException) -> str:
        if isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, slice) for k in key):
            ys, xs = (slice(*k.indices(n)[:2]) for k, n in zip(key, self.shape))
            region = f"pixels [{ys.start}:{ys.stop}, {xs.start}:{xs.stop}]"
            keys = shard_keys(self.path, (ys, xs), self.shard_shape[-2:])
            objects = ", ".join(f"'{k}'" for k in keys)
            where = f"{region}, stored in shard object(s) {objects}"
        else:
            where = f"selection {key!r}"
        return (
            f"'{describe(self.url)}' is damaged: cannot decode {where} "
            f"({type(exc).__name__}: {exc}); restore or rewrite that part of the mosaic"
        )
