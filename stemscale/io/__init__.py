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
from .crop_stack import CropStack, create_stack, mark_stack_complete, write_part
from .mosaic_info import MosaicInfo
from .example_data import temul_mos2_frame_path
from .frames import Frame, read_frame
from .ingest import ingest, read_positions
from .store import is_remote, make_store, remove_store, store_exists
from .truth import read_truth, truth_url_for

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
    "CropStack",
    "MosaicInfo",
    "create_stack",
    "mark_stack_complete",
    "write_part",
    "read_truth",
    "truth_url_for",
]
