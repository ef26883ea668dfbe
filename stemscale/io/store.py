"""Locating zarr stores on local disk or object storage (fsspec URLs).

Every public I/O function accepts a local path, a ``file://`` URL, any fsspec
URL (``s3://bucket/mosaic.zarr``, ``gs://...``) or an already built zarr v3
``Store`` object (handy for in-memory stores and instrumented stores in tests).
"""

from __future__ import annotations

import os
from typing import Any, Union

import fsspec
from zarr.abc.store import Store
from zarr.storage import FsspecStore, LocalStore

from ..errors import MosaicNotFoundError

__all__ = ["PathLike", "describe", "is_remote", "make_store", "store_exists", "remove_store"]

PathLike = Union[str, "os.PathLike[str]", Store]


def describe(url: PathLike) -> str:
    """A short human-readable name of a store location for messages."""
    if isinstance(url, Store):
        return f"<{type(url).__name__}>"
    return os.fspath(url)


def is_remote(url: PathLike) -> bool:
    """True for URLs with a protocol other than ``file://`` (``s3://``, ``gs://`` ...)."""
    if isinstance(url, Store):
        return False
    text = os.fspath(url)
    return "://" in text and not text.startswith("file://")


def _local_path(url: str | os.PathLike[str]) -> str:
    text = os.fspath(url)
    return text[len("file://"):] if text.startswith("file://") else text


def make_store(
    url: PathLike,
    *,
    storage_options: dict[str, Any] | None = None,
    read_only: bool = False,
) -> Store:
    """Return a zarr v3 store for a local path, an fsspec URL or a store object.

    Parameters
    ----------
    url
        Local path, URL such as ``s3://bucket/mosaic.zarr``, or a zarr ``Store``
        (returned unchanged).
    storage_options
        Passed to fsspec for remote URLs (for example ``{"endpoint_url": ...}``).
    read_only
        Open the store read-only.
    """
    if isinstance(url, Store):
        return url
    if is_remote(url):
        return FsspecStore.from_url(
            os.fspath(url), storage_options=dict(storage_options or {}), read_only=read_only
        )
    return LocalStore(_local_path(url), read_only=read_only)


def store_exists(url: PathLike, *, storage_options: dict[str, Any] | None = None) -> bool:
    """Whether anything exists at ``url``."""
    if isinstance(url, Store):
        return True
    if is_remote(url):
        fs, path = fsspec.core.url_to_fs(os.fspath(url), **(storage_options or {}))
        return bool(fs.exists(path))
    return os.path.exists(_local_path(url))


def require_store(url: PathLike, *, storage_options: dict[str, Any] | None = None) -> None:
    """Raise :class:`MosaicNotFoundError` when nothing exists at ``url``."""
    if not store_exists(url, storage_options=storage_options):
        raise MosaicNotFoundError(f"no mosaic at '{describe(url)}': the path does not exist")


def remove_store(url: PathLike, *, storage_options: dict[str, Any] | None = None) -> None:
    """Delete a store recursively (used to roll back a failed write)."""
    if isinstance(url, Store):
        return  # a store object belongs to its caller; nothing to delete by name
    if is_remote(url):
        fs, path = fsspec.core.url_to_fs(os.fspath(url), **(storage_options or {}))
        if fs.exists(path):
            fs.rm(path, recursive=True)
        return
    import shutil

    path = _local_path(url)
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)
