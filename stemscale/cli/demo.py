"""``stemscale demo``: the main job, runnable with no arguments.

Today it simulates a WSe2 mosaic with defects and a known displacement field
on a local Dask cluster, writes it to an OME-NGFF zarr store with Parquet
truth tables, reopens it lazily and prints what it made.  Later stages
(detection, fitting, averaging, strain) join as they land.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="simulate a WSe2 mosaic with defects and run the pipeline on it (no arguments needed)",
        description="Simulate a WSe2 mosaic with single-atom defects and a known strain field on a "
        "local Dask cluster, write it to zarr (OME-NGFF) with ground-truth tables, and print a "
        "summary. Prints the output folder at the end.",
    )
    p.add_argument(
        "--out", default=None,
        help="output folder (default: ./stemscale-output/demo-<date-time>)",
    )
    p.add_argument("--size", type=int, default=4096, help="mosaic edge in pixels (default 4096)")
    p.add_argument("--seed", type=int, default=2020, help="random seed (default 2020)")
    p.add_argument(
        "--workers", type=int, default=None,
        help="local Dask worker processes (default: one per core)",
    )
    p.set_defaults(func=run)


def _positive(value: int, name: str) -> int:
    from ..errors import InputError

    if value is None or value <= 0:
        raise InputError(f"--{name} must be a positive integer, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    import logging

    from distributed import Client, LocalCluster

    from ..io import open_mosaic
    from ..simulate import simulate_mosaic

    console = Console()
    size = _positive(args.size, "size")
    workers = _positive(args.workers or os.cpu_count() or 1, "workers")
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out or Path("stemscale-output") / f"demo-{stamp}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    mosaic_url = out / "mosaic.zarr"

    console.print(f"[bold]stemscale demo[/bold]: {size} x {size} px WSe2 mosaic, seed {args.seed}")
    with LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster, Client(cluster) as client:
        console.print(f"Dask dashboard: {client.dashboard_link}")
        t0 = time.perf_counter()
        summary = simulate_mosaic(
            mosaic_url, (size, size), seed=args.seed, progress=True, overwrite=True
        )
        elapsed = time.perf_counter() - t0
        # Workers busy in native threads can take a moment to stop; that is not a problem.
        logging.getLogger("distributed.nanny").setLevel(logging.ERROR)

    mosaic = open_mosaic(mosaic_url)
    table = Table(title="what the demo made")
    table.add_column("item")
    table.add_column("value", justify="right")
    table.add_row("mosaic", str(mosaic_url))
    table.add_row("shape (px)", f"{mosaic.shape[0]} x {mosaic.shape[1]}")
    ps = mosaic.attrs["pixel_size_angstrom"]
    table.add_row("pixel size", f"{ps * 100:.2f} pm")
    table.add_row("field of view", f"{mosaic.shape[0] * ps / 10:.1f} x {mosaic.shape[1] * ps / 10:.1f} nm")
    dose = mosaic.attrs.get("dose_e_per_a2")
    if dose is not None:
        table.add_row("dose", f"{dose:,.0f} e-/Å²")
    table.add_row("simulation time", f"{elapsed:.1f} s ({size * size / elapsed / 1e6:.2f} Mpx/s)")
    for key, value in _flatten_counts(summary).items():
        table.add_row(key, f"{value:,}")
    console.print(table)
    console.print(f"output folder: [bold]{out}[/bold]")
    return 0


def _flatten_counts(summary) -> dict[str, int]:
    """Turn the simulator's summary into 'columns: W' style rows."""
    rows: dict[str, int] = {}
    if not isinstance(summary, dict):
        return rows
    for group, counts in summary.items():
        if isinstance(counts, dict):
            blank = "(empty column)" if group == "species" else "pristine"
            for name, n in counts.items():
                if isinstance(n, (int,)) or hasattr(n, "__int__"):
                    rows[f"{group}: {name or blank}"] = int(n)
        elif isinstance(counts, int):
            rows[group] = counts
    return rows
