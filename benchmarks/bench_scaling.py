"""End-to-end block pipeline throughput against workers: strong and weak scaling, memory.

Runs ``stemscale.parallel.run_mosaic`` (detection + snapping + batched Gaussian
fits + owner-computes) on simulated WSe2 mosaics with a real
``distributed.LocalCluster`` of 1..N single-threaded worker processes (or
``--device cuda`` with one dask-cuda worker per GPU), and reports Mpx/s,
columns/s, speed-up T1/TN and efficiency T1/(N TN).  Warm-up (model load,
numba compilation) is excluded: every worker processes a small block first.
A separate run measures peak worker memory for a small and a large mosaic to
show it is bounded by the block size, not the mosaic size.

Usage::

    python benchmarks/bench_scaling.py                 # this machine, FCN with TTA
    python benchmarks/bench_scaling.py --detector peaks --memory-size 16384
    python benchmarks/bench_scaling.py --device cuda --workers 1   # GPU machine
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, target, write_results  # noqa: E402

from stemscale.parallel.process import BlockConfig  # noqa: E402
from stemscale.parallel.run import mosaic_statistics, run_mosaic  # noqa: E402
from stemscale.parallel.simulate import simulate_mosaic  # noqa: E402

PIXEL = 0.2074


class PeakRSS:
    """Sample the resident memory of a set of processes in a background thread."""

    def __init__(self, pids, interval=0.1):
        import psutil

        self.procs = [psutil.Process(p) for p in pids]
        self.peak = {p.pid: 0 for p in self.procs}
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for p in self.procs:
                try:
                    self.peak[p.pid] = max(self.peak[p.pid], p.memory_info().rss)
                except Exception:
                    pass
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def make_mosaic(root: Path, shape, shards, seed=7) -> str:
    url = root / f"mosaic-{shape[0]}x{shape[1]}.zarr"
    if not url.exists():
        simulate_mosaic(url, shape, shards=shards, chunks=(512, 512), seed=seed)
    return str(url)


def cluster(n_workers: int, device: str):
    from distributed import Client

    from stemscale.parallel import make_cluster

    if device == "cuda":
        c = make_cluster("cuda", n_workers=n_workers)
    else:
        c = make_cluster("local", n_workers=n_workers, threads_per_worker=1, memory_limit="8GiB")
    return c, Client(c)


def warm_up(url: str, config: BlockConfig, root: Path, client) -> None:
    """Load the model / compile kernels on every worker (excluded from timings)."""
    from stemscale.parallel.blocks import plan_blocks
    from stemscale.parallel.run import _block_task

    specs = plan_blocks((256, 256), (256, 256), config.halo)
    out = root / "warm"
    for sub in ("atoms", "defects", "blocks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    workers = list(client.scheduler_info()["workers"])
    futures = [client.submit(_block_task, url, specs[0], config, str(out), None, pure=False,
                             workers=[w], allow_other_workers=False) for w in workers]
    client.gather(futures)


def timed_run(url, config, root, tag, client):
    out = root / f"run-{tag}"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    result = run_mosaic(url, out, config)
    return time.perf_counter() - t0, result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, nargs="+", default=None,
                    help="worker counts (default: 1 .. cores)")
    ap.add_argument("--detector", choices=["fcn", "peaks"], default="fcn")
    ap.add_argument("--no-tta", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--block", type=int, default=1024, help="block (shard) edge in pixels")
    ap.add_argument("--blocks-per-worker", type=int, default=4,
                    help="weak scaling: blocks per worker; strong scaling uses the largest N's mosaic")
    ap.add_argument("--memory-size", type=int, default=8192,
                    help="edge of the large mosaic for the memory measurement (0 to skip)")
    ap.add_argument("--memory-no-tta", action="store_true",
                    help="memory runs without TTA (8x faster; per-block memory is set by the block "
                         "and halo, which TTA does not change between mosaic sizes)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--tmp", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--out", default="bench_scaling", help="results name")
    args = ap.parse_args()

    cores = os.cpu_count() or 1
    workers = args.workers or list(range(1, cores + 1))
    root = Path(args.tmp or tempfile.mkdtemp(prefix="stemscale-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    b = args.block
    n_max = max(workers)

    rows, weak_rows, memory_rows = [], [], []
    # Strong scaling: one fixed mosaic of blocks_per_worker * n_max blocks.
    cols = args.blocks_per_worker * n_max
    strong_shape = (b, b * cols)
    strong_url = make_mosaic(root, strong_shape, (b, b))
    stats = mosaic_statistics(strong_url)
    config = BlockConfig(PIXEL, detector=args.detector, tta=not args.no_tta, device=args.device,
                         stats=stats)
    t1 = None
    for n in workers:
        c, client = cluster(n, args.device)
        try:
            warm_up(strong_url, config, root, client)
            times = []
            for r in range(args.repeats):
                dt, result = timed_run(strong_url, config, root, f"strong-{n}-{r}", client)
                times.append(dt)
            dt = min(times)
            # Weak scaling: blocks_per_worker blocks per worker.
            weak_shape = (b, b * args.blocks_per_worker * n)
            weak_url = make_mosaic(root, weak_shape, (b, b))
            wdt, wres = timed_run(weak_url, config, root, f"weak-{n}", client)
        finally:
            client.close()
            c.close()
        mpx = strong_shape[0] * strong_shape[1] / 1e6
        t1 = dt if n == workers[0] and n == 1 else t1
        rows.append({
            "workers": n, "seconds": dt, "Mpx/s": mpx / dt, "columns/s": result.n_atoms / dt,
            "speed-up": (t1 / dt) if t1 else float("nan"),
            "efficiency": (t1 / (n * dt)) if t1 else float("nan"),
        })
        weak_rows.append({
            "workers": n, "Mpx": weak_shape[0] * weak_shape[1] / 1e6, "seconds": wdt,
            "Mpx/s": weak_shape[0] * weak_shape[1] / 1e6 / wdt, "columns/s": wres.n_atoms / wdt,
        })
    if weak_rows:
        w1 = weak_rows[0]["seconds"]
        for r in weak_rows:
            r["efficiency"] = w1 / r["seconds"]
    print_table(rows, f"strong scaling ({strong_shape[0]}x{strong_shape[1]} px, {args.detector}"
                      f"{'' if args.no_tta else ' + 8x TTA'}, {args.device})")
    print_table(weak_rows, f"weak scaling ({args.blocks_per_worker} blocks of {b}^2 per worker)")

    # Memory: peak RSS per worker for a small and a large mosaic, same block size.
    if args.memory_size:
        mem_config = replace(config, tta=False) if args.memory_no_tta else config
        for size in sorted({2 * b, args.memory_size}):
            url = make_mosaic(root, (size, size), (b, b))
            c, client = cluster(n_max, args.device)
            try:
                warm_up(url, mem_config, root, client)
                pids = list(client.run(os.getpid).values())
                with PeakRSS(pids) as sampler:
                    dt, result = timed_run(url, mem_config, root, f"mem-{size}", client)
            finally:
                client.close()
                c.close()
            memory_rows.append({
                "mosaic": f"{size}x{size}", "Mpx": size * size / 1e6, "blocks": result.n_blocks,
                "seconds": dt, "peak worker RSS (MiB)": max(sampler.peak.values()) / 2**20,
            })
        print_table(memory_rows, f"peak worker memory ({b}^2 blocks, {n_max} workers, "
                                 f"{'no TTA' if args.memory_no_tta else 'as above'})")

    eff = [r["efficiency"] for r in rows if r["workers"] > 1]
    strong_eff = min(eff) if eff else None
    targets = [target("strong-scaling efficiency up to the core count", 0.8, strong_eff, "T1/(N*TN)")]
    if args.device == "cuda":
        targets.append(target("H100 block pipeline (FCN+TTA+fit)", 10.0, rows[-1]["Mpx/s"], "Mpx/s"))
    else:
        targets.append(target("H100 block pipeline (FCN+TTA+fit)", 10.0, None, "Mpx/s",
                              note="not measured: no GPU in this session"))
    if len(memory_rows) == 2:
        small, large = memory_rows
        ratio = large["peak worker RSS (MiB)"] / small["peak worker RSS (MiB)"]
        targets.append(target("peak worker memory, large / small mosaic (independent of size)",
                              1.25, ratio, "ratio", higher_is_better=False,
                              note=f"{large['mosaic']} vs {small['mosaic']}"))
    path = write_results(
        args.out,
        parameters={"block": b, "blocks_per_worker": args.blocks_per_worker, "detector": args.detector,
                    "tta": not args.no_tta, "device": args.device, "workers": workers,
                    "threads_per_worker": 1, "pixel_size_angstrom": PIXEL, "repeats": args.repeats,
                    "storage": "local zarr v3 (sharded)",
                    "memory_tta": not args.memory_no_tta, "memory_size": args.memory_size},
        results={"strong": rows, "weak": weak_rows, "memory": memory_rows},
        targets=targets,
    )
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
