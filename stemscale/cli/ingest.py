"""``stemscale ingest``: raw frames (TIFF, DM3/DM4, EMD) into one mosaic zarr store."""

from __future__ import annotations

import argparse
import os
from typing import Any

from rich.console import Console
from ..executor import dask_progress
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..redact import redact_text
from .storage import add_storage_option, storage_options

EPILOG = """\
examples:
  stemscale ingest frame.dm4 frame.zarr
  stemscale ingest scan.tif scan.zarr --pixel-size 0.2074
  stemscale ingest stack.tif stack.zarr --pixel-size 0.2074 --sum
  stemscale ingest tile_*.emd mosaic.zarr --positions positions.csv --overlap mean
  stemscale ingest frame.dm3 s3://bucket/frame.zarr --storage-option endpoint_url=URL

Positions CSV: columns file,y_A,x_A (or y_A,x_A in the order of the files): the position in Å
of each frame's first pixel. Without --positions, several frames are placed by the stage
positions in their metadata. Placement is rigid and rounded to whole pixels; where frames
overlap the later frame wins (--overlap last) or pixels are averaged (--overlap mean).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest",
        help="convert TIFF / DM3 / DM4 / EMD frames into a mosaic zarr store",
        description="Read one frame, or a grid of frames with stage positions, and write them "
        "as one mosaic: zarr v3, OME-NGFF 0.5 metadata in Å, sharded. The output is marked "
        "complete only when everything is written; on an error nothing is left behind.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="FILE",
                   help="input frames (.tif, .dm3, .dm4, .emd)")
    p.add_argument("out", metavar="OUT.zarr", help="output store: a path or URL (s3://...)")
    p.add_argument("--pixel-size", type=float, metavar="A",
                   help="pixel size in Å (required when the files carry no calibration; "
                   "overrides it otherwise)")
    p.add_argument("--positions", metavar="CSV",
                   help="frame positions in Å (columns file,y_A,x_A)")
    stack = p.add_mutually_exclusive_group()
    stack.add_argument("--frame", type=int, metavar="N", help="take frame N of a 3-D stack")
    stack.add_argument("--sum", dest="reduce", action="store_const", const="sum",
                       help="add up the frames of a 3-D stack")
    stack.add_argument("--mean", dest="reduce", action="store_const", const="mean",
                       help="average the frames of a 3-D stack")
    p.add_argument("--signal", metavar="TITLE",
                   help="which image of a multi-image file (default: the only one, or HAADF)")
    p.add_argument("--overlap", choices=["last", "mean"], default="last",
                   help="where frames overlap: the later frame wins (default) or the mean")
    p.add_argument("--high-tension", type=float, metavar="KV", help="high tension in kV")
    p.add_argument("--convergence", type=float, metavar="MRAD",
                   help="probe convergence semi-angle in mrad")
    p.add_argument("--dose", type=float, metavar="E_PER_A2", help="dose in e-/Å²")
    p.add_argument("--material", help="material, e.g. WSe2")
    p.add_argument("--levels", type=int, default=1,
                   help="resolution levels incl. full resolution (default 1: no pyramid)")
    p.add_argument("--chunk", type=int, default=512, metavar="PX",
                   help="inner chunk edge in pixels (default 512)")
    p.add_argument("--shard", type=int, default=2048, metavar="PX",
                   help="shard edge in pixels, a multiple of --chunk (default 2048)")
    add_storage_option(p, "a remote OUT")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.add_argument("--quiet", action="store_true", help="no progress or summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..io.frames import SUPPORTED_SUFFIXES
    from ..io.ingest import ingest

    out = args.out
    if os.path.splitext(out)[1].lower() in SUPPORTED_SUFFIXES:
        raise InputError(
            f"the last argument is the output store (e.g. out.zarr), but '{out}' looks like an "
            "input frame; add an output path"
        )
    if args.shard % args.chunk:
        raise InputError(f"--shard {args.shard} must be a multiple of --chunk {args.chunk}")
    console = Console(stderr=True, quiet=args.quiet)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, disable=args.quiet) as progress:
        reading = progress.add_task("reading headers", total=len(args.inputs))

        def on_frame(index: int, frame: Any) -> None:
            progress.update(reading, advance=1,
                            description=f"read {os.path.basename(frame.source)}")

        with dask_progress(progress, "writing shards"):
            mosaic = ingest(
                args.inputs,
                out,
                pixel_size=args.pixel_size,
                positions=args.positions,
                frame=args.frame,
                reduce=args.reduce,
                signal=args.signal,
                overlap=args.overlap,
                high_tension_kv=args.high_tension,
                convergence_mrad=args.convergence,
                dose_e_per_a2=args.dose,
                material=args.material,
                chunks=(args.chunk, args.chunk),
                shards=(args.shard, args.shard),
                levels=args.levels,
                storage_options=storage_options(args.storage_option) or None,
                overwrite=args.overwrite,
                on_frame=on_frame,
            )
    if not args.quiet:
        _summary(Console(), mosaic, redact_text(out), len(args.inputs))
    return 0


def _summary(console: Console, mosaic: Any, out: str, n_files: int) -> None:
    ps = mosaic.attrs["pixel_size_angstrom"]
    table = Table(title=f"ingested {n_files} file(s) into {out}", show_header=False)
    ny, nx = mosaic.shape
    table.add_row("shape (px)", f"{ny} x {nx}")
    table.add_row("pixel size", f"{ps:.5g} Å ({ps * 100:.4g} pm)")
    table.add_row("field of view", f"{ny * ps / 10:.1f} x {nx * ps / 10:.1f} nm")
    table.add_row("origin (y, x)", f"{float(mosaic.y[0]):.1f}, {float(mosaic.x[0]):.1f} Å")
    table.add_row("dtype", str(mosaic.dtype))
    for key, label in (("high_tension_kv", "high tension (kV)"),
                       ("convergence_mrad", "convergence (mrad)"),
                       ("dose_e_per_a2", "dose (e-/Å²)")):
        if mosaic.attrs.get(key) is not None:
            table.add_row(label, f"{mosaic.attrs[key]:.4g}")
    console.print(table)
