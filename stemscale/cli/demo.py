"""``stemscale demo``: the main job, runnable with no arguments.

It runs the packaged demo pipeline (``stemscale/pipeline/presets/demo.yaml``,
identical to ``pipelines/demo.yaml``): a simulated WSe2 mosaic with defects and
a known displacement field, every column detected and fitted on a local Dask
cluster, scored against the simulation's truth, then screening, class
averaging and strain, with a report whose folder it prints.
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path


def preset_path() -> Path:
    """The packaged demo configuration."""
    return Path(str(resources.files("stemscale.pipeline") / "presets" / "demo.yaml"))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="simulate a WSe2 mosaic with defects and run the whole pipeline on it "
        "(no arguments needed)",
        description="Simulate a WSe2 mosaic with single-atom defects and a known strain field, "
        "detect and fit every atom column on a local Dask cluster, score against the truth, "
        "class-average isolated defects and measure their strain fields. Prints a results "
        "table and the folder of the report.",
    )
    p.add_argument("--out", default=None,
                   help="output folder (default: ./stemscale-output/demo-<date-time>)")
    p.add_argument("--size", type=int, default=None,
                   help="mosaic edge in pixels (default: the preset's, 3072)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default 2020)")
    p.add_argument("--workers", type=int, default=None,
                   help="local Dask worker processes (default: one per core)")
    p.add_argument("--no-tta", action="store_true", help="skip 8x test-time augmentation")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from . import run as run_cli

    overrides = []
    if args.size is not None:
        if args.size < 256:
            raise InputError(f"--size must be at least 256 pixels, got {args.size}")
        overrides.append(f"simulate.shape=[{args.size},{args.size}]")
    if args.seed is not None:
        if args.seed < 0:
            raise InputError(f"--seed must be >= 0, got {args.seed}")
        overrides.append(f"simulate.seed={args.seed}")
    if args.workers is not None:
        if args.workers <= 0:
            raise InputError(f"--workers must be a positive integer, got {args.workers}")
        overrides.append(f"cluster.workers={args.workers}")
    if args.no_tta:
        overrides.append("detect.tta=false")
    ns = argparse.Namespace(
        pipeline=str(preset_path()), cluster=None, out=args.out, overrides=overrides,
        overwrite=False, check=False, no_progress=False, command="demo", debug=args.debug,
    )
    return run_cli.run(ns)
