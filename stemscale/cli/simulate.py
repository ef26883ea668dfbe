"""``stemscale simulate``: write a synthetic ADF-STEM mosaic with ground truth."""

from __future__ import annotations

import argparse
import contextlib
import json
import time

from ..classes import DEFECT_CLASSES
from ..errors import InputError
from .storage import add_storage_option, storage_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="simulate a 2D-material ADF-STEM mosaic with ground-truth tables",
        description="Simulate a seamless HAADF-STEM mosaic of a monolayer TMD (WSe2 by default) "
        "with point defects, a displacement field around single vacancies, Poisson noise and "
        "scan distortions. Writes a zarr v3 / OME-NGFF store and the truth of every atom column "
        "as Parquet (<out>.truth/). The result does not depend on chunks, shards or workers.",
    )
    p.add_argument("out", help="output mosaic store (path or URL ending in .zarr)")
    g = p.add_argument_group("image")
    g.add_argument("--shape", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"), default=[4096, 4096],
                   help="mosaic size in pixels (default: 4096 4096)")
    g.add_argument("--seed", type=int, default=0, help="random seed; same seed, same mosaic (default: 0)")
    g.add_argument("--dose", type=float, default=7300.0, help="incident dose in e-/Å² (default: 7300)")
    g.add_argument("--chunks", type=int, nargs=2, default=[512, 512], metavar=("Y", "X"),
                   help="zarr chunk shape (default: 512 512)")
    g.add_argument("--shards", type=int, nargs=2, default=[2048, 2048], metavar=("Y", "X"),
                   help="zarr shard shape, one Dask task each (default: 2048 2048)")
    g.add_argument("--truth", default=None, help="truth Parquet folder (default: <out>.truth)")
    s = p.add_argument_group("sample")
    s.add_argument("--material", default="WSe2", help="WSe2, MoS2, WS2 or MoSe2 (default: WSe2)")
    s.add_argument("--structure", default=None,
                   help="an ASE-readable structure file to image instead of a random lattice")
    s.add_argument("--defect", action="append", default=None, metavar="CLASS=FRACTION",
                   help=f"defect concentration per site, repeatable; classes: {', '.join(DEFECT_CLASSES)} "
                   "(default: the built-in WSe2 mix; --defect none for a pristine lattice)")
    s.add_argument("--min-spacing", type=float, default=0.0, help="minimum distance between defects in Å (default: 0)")
    s.add_argument("--rotation", type=float, default=None, help="lattice rotation in degrees (default: random)")
    m = p.add_argument_group("microscope and scan")
    m.add_argument("--kv", type=float, default=80.0, help="high tension in kV (default: 80)")
    m.add_argument("--convergence", type=float, default=25.2, help="probe semi-angle in mrad (default: 25.2)")
    m.add_argument("--pixel-size", type=float, default=0.2074, help="pixel size in Å (default: 0.2074)")
    m.add_argument("--defocus", type=float, default=0.0, help="defocus C1 in nm, positive = overfocus (default: 0)")
    m.add_argument("--source-size", type=float, default=1.0, help="source size FWHM in Å (default: 1)")
    m.add_argument("--shear", type=float, default=0.0, help="drift shear in pixels per line (default: 0)")
    m.add_argument("--scale-y", type=float, default=0.0, help="relative slow-scan scale error (default: 0)")
    m.add_argument("--jitter", type=float, default=0.0, help="per-line jitter sigma in pixels (default: 0)")
    r = p.add_argument_group("run")
    r.add_argument("--workers", type=int, default=None,
                   help="start a local Dask cluster with this many worker processes "
                   "(default: Dask's threaded scheduler, or the cluster at --scheduler)")
    r.add_argument("--scheduler", default=None, help="address of a running Dask scheduler (tcp://...)")
    add_storage_option(r, "an s3:// OUT (and --truth)")
    r.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    r.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    r.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def _concentrations(items: list[str] | None) -> dict[str, float] | None:
    if items is None:
        return None
    out: dict[str, float] = {}
    for item in items:
        if item.strip().lower() == "none":
            continue
        name, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"--defect expects CLASS=FRACTION (e.g. SV=0.02), got {item!r}")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise InputError(f"--defect {item!r}: {value!r} is not a number") from None
    return out


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..simulate import Distortions, Microscope, Sample
    from ..parallel.simulate import simulate_mosaic
    from ..redact import redact, redact_text

    concentrations = _concentrations(args.defect)
    if args.structure:
        sample = Sample.from_file(args.structure, material=args.material,
                                  rotation_deg=args.rotation or 0.0)
    else:
        sample = Sample(material=args.material, min_defect_spacing_A=args.min_spacing,
                        rotation_deg=args.rotation)
        if concentrations is not None:
            sample = Sample(material=args.material, min_defect_spacing_A=args.min_spacing,
                            rotation_deg=args.rotation, concentrations=concentrations)
    microscope = Microscope(high_tension_kv=args.kv, convergence_mrad=args.convergence,
                            pixel_size_A=args.pixel_size, defocus_nm=args.defocus,
                            source_size_A=args.source_size)
    distortions = Distortions(shear=args.shear, scale_y=args.scale_y, jitter_px=args.jitter)
    if args.workers is not None and args.workers <= 0:
        raise InputError(f"--workers must be a positive integer, got {args.workers}")

    with contextlib.ExitStack() as stack:
        if args.workers or args.scheduler:
            from ..parallel.cluster import connect, make_cluster

            target = args.scheduler or stack.enter_context(make_cluster("local", n_workers=args.workers))
            stack.enter_context(connect(target))
        t0 = time.perf_counter()
        summary = simulate_mosaic(
            args.out, tuple(args.shape), chunks=tuple(args.chunks), shards=tuple(args.shards),
            seed=args.seed, sample=sample, microscope=microscope, dose_e_per_a2=args.dose,
            distortions=distortions, truth_url=args.truth, overwrite=args.overwrite,
            storage_options=storage_options(args.storage_option) or None,
            progress=not args.no_progress and not args.json,
        )
        elapsed = time.perf_counter() - t0
    ny, nx = summary["shape"]
    summary["mpx_per_s"] = round(ny * nx / elapsed / 1e6, 3)
    summary = redact(summary)  # a URL's user:password@ is never printed
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    table = Table(title=f"simulated {redact_text(args.out)}", show_header=False)
    table.add_row("shape (px)", f"{ny} x {nx}")
    table.add_row("truth", str(summary["truth_url"]))
    table.add_row("atom columns", f"{summary['columns']:,}")
    for name, n in summary["species"].items():
        table.add_row(f"  species {name or '(empty)'}", f"{n:,}")
    for name, n in summary["defects"].items():
        table.add_row(f"  defect {name}", f"{n:,}")
    table.add_row("time", f"{elapsed:.1f} s ({summary['mpx_per_s']:.2f} Mpx/s)")
    Console().print(table)
    return 0
