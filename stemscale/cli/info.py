"""``stemscale info``: describe a mosaic store without loading its pixels."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from ..redact import redact
from .storage import add_storage_option, storage_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="describe a mosaic store (shape, pixel size, metadata)",
        description="Print a mosaic's shape, chunking, pixel size, acquisition metadata and "
        "whether its writer finished. Reads metadata only.",
    )
    p.add_argument("mosaic", help="path or URL of a mosaic .zarr store")
    p.add_argument("--level", type=int, default=0, help="resolution level (default 0)")
    add_storage_option(p, "a remote mosaic")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io import MosaicInfo, open_mosaic, open_mosaic_group
    options = storage_options(args.storage_option) or None
    mosaic = open_mosaic(args.mosaic, storage_options=options, level=args.level,
                         allow_incomplete=True)
    group = open_mosaic_group(args.mosaic, storage_options=options)
    described = MosaicInfo.read(args.mosaic, storage_options=options, group=group)
    ny, nx = mosaic.shape
    ps = mosaic.attrs["pixel_size_angstrom"]
    info = {
        "store": args.mosaic,
        "complete": described.complete,
        "shape_px": [ny, nx],
        "size_nm": [round(ny * ps / 10, 3), round(nx * ps / 10, 3)],
        "origin_angstrom": [float(mosaic.y[0]), float(mosaic.x[0])],
        "dtype": str(mosaic.dtype),
        "levels": described.levels,
        "dask_chunks": [list(c[:1]) for c in mosaic.data.chunks],
        **{k: v for k, v in mosaic.attrs.items() if k not in {"provenance", "frames"}},
        "frames": len(mosaic.attrs.get("frames", [])) or None,
        "provenance": mosaic.attrs.get("provenance", {}),
    }
    info = redact(info)  # no user:password@ of a URL, no secret in provenance
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    table = Table(title=f"mosaic {info['store']}", show_header=False)
    for key, value in info.items():
        if value is None:
            continue
        if key == "complete" and not value:
            value = "NO: the writer did not finish; rerun the command that made it"
        table.add_row(key, str(value))
    Console().print(table)
    return 0
