"""Truth tables of simulated mosaics: Parquet part files beside the mosaic.

The simulator's truth (one row per atom column) is written as one part file
per shard in ``<mosaic>.truth/`` plus a ``_complete.json`` marker; these
helpers only move tables, they know nothing of what is in them.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pandas as pd

from ..errors import MosaicNotFoundError
from .store import is_remote, store_exists

__all__ = ["read_truth", "truth_part_name", "truth_url_for", "write_truth_marker", "write_truth_part"]


def truth_url_for(url: str | os.PathLike[str]) -> str:
    """Default location of a mosaic's truth tables: ``<mosaic>.truth`` beside it."""
    return os.fspath(url).rstrip("/") + ".truth"


def truth_part_name(y0: int, x0: int) -> str:
    """File name of the truth part of the shard at pixel (y0, x0)."""
    return f"part-y{y0:08d}-x{x0:08d}.parquet"


def write_truth_part(table: pd.DataFrame, truth_url: str, name: str, options: dict[str, Any]) -> None:
    """Write one part file atomically (locally: whole or absent)."""
    path = truth_url.rstrip("/") + "/" + name
    if is_remote(truth_url):
        import fsspec

        with fsspec.open(path, "wb", **options) as fh:
            table.to_parquet(fh, index=False)
    else:
        os.makedirs(truth_url, exist_ok=True)
        tmp = path + ".tmp"
        table.to_parquet(tmp, index=False)
        os.replace(tmp, path)  # a part file is either whole or absent


def write_truth_marker(truth_url: str, summary: dict[str, Any], options: dict[str, Any]) -> None:
    """Write the marker that says every part file is there."""
    path = truth_url.rstrip("/") + "/_complete.json"
    text = json.dumps(summary, indent=2, default=str)
    if is_remote(truth_url):
        import fsspec

        with fsspec.open(path, "w", **options) as fh:
            fh.write(text)
    else:
        os.makedirs(truth_url, exist_ok=True)
        with open(path, "w") as fh:
            fh.write(text)


def read_truth(truth_url: str | os.PathLike[str], storage_options: dict[str, Any] | None = None) -> pd.DataFrame:
    """Read a simulated mosaic's truth tables (all part files) into one DataFrame."""
    where = os.fspath(truth_url)
    if not store_exists(where, storage_options=storage_options):
        raise MosaicNotFoundError(f"no truth tables at '{where}'")
    return pd.read_parquet(where, storage_options=storage_options or None)
