"""Locating zarr stores on local disk or object storage (fsspec URLs)."""

from __future__ import annotations

import os
from typing import Any

import fsspec
import zarr
from zarr.storage import FsspecStore, LocalStore

from ..errors import MosaicNotFoundError

__all__ = ["is_remote", "make_store", "store_exists", "remove_store"]

PathLike = str | os.PathLike[str]


def is_remote(url: PathLike) -> bool:
    """True for URLs with a protocol other than ``file://`` (``s3://``, ``gs://`` ...)."""
    text = os.fspath(url)
    return "://" in text and not text.startswith("file://")


def _local_path(url: PathLike) -> str:
    text = os.fspath(url)
    return text[len("file://"):] if text.startswith("file://") else text


def make_store(
    url: PathLike,
    *,
    storage_options: dict[str, Any] | None = None,
    read_only: bool = False,
) -> zarr.abc.store.Store:
    """Return a zarr v3 store for a local path or an fsspec URL.

    Parameters
    ----------
    url
        Local path or URL such as ``s3://bucket/mosaic.zarr``.
    storage_options
        Passed to fsspec for remote URLs (for example ``{"endpoint_url": ...}``).
    read_only
        Open the store read-only.
    """
    if is_remote(url):
        return FsspecStore.from_url(
            os.fspath(url), storage_options=storage_options or {}, read_only=read_only
        )
    return LocalStore(_local_path(url), read_only=read_only)


def store_exists(url: PathLike, *, storage_options: dict[str, Any] | None = None) -> bool:
    """Whether anything exists at ``url``."""
    if is_remote(url):
        fs, path = fsspec.core.url_to_fs(os.fspath(url), **(storage_options or {}))
        return bool(fs.exists(path))
    return os.path.exists(_local_path(url))


def require_store(url: PathLike, *, storage_options: dict[str, Any] | None = None) -> None:
    """Raise :class:`MosaicNotFoundError` when nothing exists at ``url``."""
    if not store_exists(url, storage_options=storage_options):
        raise MosaicNotFoundError(f"no mosaic at '{os.fspath(url)}': the path does not exist")


def remove_store(url: PathLike, *, storage_options: dict[str, Any] | None = None) -> None:
    """Delete a store recursively (used to roll back a failed write)."""
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
