"""``stemscale find``: every atom column and defect of a mosaic, on a Dask cluster."""

from __future__ import annotations

import argparse
import logging

from rich.console import Console

from .storage import add_storage_option, storage_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "find",
        help="detect and Gaussian-refine every atom column and defect of a mosaic",
        description="Run the block pipeline (FCN detection, column refinement, owner-computes "
        "de-duplication) over a mosaic store on a Dask cluster. Writes atoms/ and defects/ "
        "Parquet datasets and a manifest to OUT; rerunning into OUT resumes where it stopped.",
    )
    p.add_argument("mosaic", help="mosaic store (path or s3:// URL)")
    p.add_argument("out", help="output folder")
    p.add_argument("--cluster", default="local",
                   help="local | cuda | slurm | kubernetes | tcp://host:port | scheduler.json "
                   "(default: local)")
    p.add_argument("--workers", type=int, default=None, help="local worker processes (default: cores)")
    p.add_argument("--detector", choices=["fcn", "peaks"], default="fcn",
                   help="fcn: the shipped network (columns + defect classes); "
                   "peaks: classical local maxima (columns only)")
    p.add_argument("--model", default=None, help="model name or manifest path (default: the shipped model for the mosaic's material)")
    p.add_argument("--no-tta", action="store_true", help="skip 8x test-time augmentation (faster)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--block", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="block core size in pixels (default: the store's shards)")
    p.add_argument("--labels", action="store_true",
                   help="also write the FCN's per-pixel class as an OME-NGFF label image "
                   "(labels/classes) into the mosaic's zarr")
    p.add_argument("--probabilities", action="store_true",
                   help="also write the class probabilities (uint8, value/255) as "
                   "labels/probabilities (implies --labels)")
    p.add_argument("--labels-store", default=None, metavar="ZARR",
                   help="write the label images to this separate zarr store instead "
                   "(for a read-only mosaic; implies --labels)")
    add_storage_option(p, "a remote mosaic (and --labels-store)")
    p.add_argument("--overwrite", action="store_true", help="replace a different run in OUT")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..detect.weights import model_for_material
    from ..io import MosaicInfo
    from ..parallel import connect
    from ..parallel.process import BlockConfig
    from ..parallel.run import run_mosaic
    from ..redact import redact_text

    console = Console()
    if args.workers is not None and args.workers <= 0:
        raise InputError(f"--workers must be a positive integer, got {args.workers}")
    if args.block is not None and min(args.block) <= 0:
        raise InputError(f"--block must be two positive integers, got {args.block}")
    storage = storage_options(args.storage_option) or None
    info = MosaicInfo.read(args.mosaic, storage_options=storage)
    model = args.model
    if model is None and args.detector == "fcn":
        model = model_for_material(info.material)
    config = BlockConfig.for_mosaic(info, model=model, detector=args.detector,
                                    tta=not args.no_tta, device=args.device)
    options = {"n_workers": args.workers} if args.cluster == "local" and args.workers else {}
    with connect(args.cluster, **options) as client:
        console.print(f"Dask dashboard: {client.dashboard_link}")
        result = run_mosaic(args.mosaic, args.out, config, block_shape=args.block,
                            storage_options=storage, progress=True,
                            overwrite=args.overwrite, labels=args.labels,
                            probabilities=args.probabilities, labels_store=args.labels_store)
        logging.getLogger("distributed.nanny").setLevel(logging.ERROR)
    console.print(
        f"{result.n_atoms:,} atom columns and {result.n_defects:,} defects in "
        f"{result.n_blocks} blocks ({result.skipped} already done) in {result.seconds:.1f} s"
    )
    console.print(f"tables: {result.atoms_path} and {result.defects_path}")
    if args.labels or args.probabilities or args.labels_store:
        console.print(f"label images: {redact_text(args.labels_store or args.mosaic + '/labels')}")
    return 0
