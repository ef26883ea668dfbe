"""``stemscale info``: describe a mosaic store without loading its pixels."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from ..io import open_mosaic


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="describe a mosaic store (shape, pixel size, metadata)",
        description="Print a mosaic's shape, chunking, pixel size and acquisition metadata. "
        "Reads metadata only.",
    )
    p.add_argument("mosaic", help="path or URL of a mosaic .zarr store")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    mosaic = open_mosaic(args.mosaic, allow_incomplete=True)
    ny, nx = mosaic.shape
    ps = mosaic.attrs["pixel_size_angstrom"]
    info = {
        "store": args.mosaic,
        "shape_px": [ny, nx],
        "size_nm": [round(ny * ps / 10, 3), round(nx * ps / 10, 3)],
        "dtype": str(mosaic.dtype),
        "dask_chunks": [list(c[:1]) for c in mosaic.data.chunks],
        **{k: v for k, v in mosaic.attrs.items() if k not in {"provenance"}},
        "provenance": mosaic.attrs.get("provenance", {}),
    }
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    table = Table(title=f"mosaic {args.mosaic}", show_header=False)
    for key, value in info.items():
        table.add_row(key, str(value))
    Console().print(table)
    return 0
