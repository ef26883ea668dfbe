"""Reading and writing mosaics: zarr v3 + OME-NGFF, raw file ingest, object storage."""

from .mosaic import (
    DEFAULT_CHUNKS,
    DEFAULT_SHARDS,
    create_mosaic,
    is_complete,
    mark_complete,
    open_mosaic,
    open_mosaic_group,
    shard_shape,
    write_array,
    write_mosaic,
    write_region,
)
from .store import is_remote, make_store, remove_store, store_exists

__all__ = [
    "DEFAULT_CHUNKS",
    "DEFAULT_SHARDS",
    "create_mosaic",
    "is_complete",
    "mark_complete",
    "open_mosaic",
    "open_mosaic_group",
    "shard_shape",
    "write_array",
    "write_mosaic",
    "write_region",
    "is_remote",
    "make_store",
    "remove_store",
    "store_exists",
]
