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
from .example_data import temul_mos2_frame_path
from .frames import Frame, read_frame
from .ingest import ingest, read_positions
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
    "Frame",
    "read_frame",
    "ingest",
    "read_positions",
    "temul_mos2_frame_path",
    "is_remote",
    "make_store",
    "remove_store",
    "store_exists",
]
