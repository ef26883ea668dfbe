"""Seamless synthetic mosaics of any size: :func:`simulate_mosaic`.

One Dask task per zarr shard renders that shard and writes it, plus the
truth rows of the columns it owns (centre inside the shard, half-open in
pixel-centre coordinates) to one Parquet part file.  Inside a task the
image is rendered on a fixed *global* grid of render tiles, and every random
number is drawn from global indices, so the mosaic is bit-for-bit the same
whatever its chunks and shards, and a task's memory depends on the shard
size only.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import dask
import numpy as np

from ..errors import InputError
from ..io import create_mosaic, mark_complete
from ..io.mosaic import shard_shape, write_region
from ..io.store import PathLike, is_remote, make_store, remove_store, store_exists
from .frame import check_shape
from .probe import Microscope
from .sample import Distortions, Sample
from .scene import Scene

__all__ = ["simulate_mosaic", "truth_url_for", "read_truth", "shard_tasks"]

#: Side of the global render tiles (pixels).  Changing it changes pixels at float rounding only.
RENDER_TILE = 512


def truth_url_for(url: PathLike) -> str:
    """Default location of a mosaic's truth tables: ``<mosaic>.truth`` beside it."""
    return os.fspath(url).rstrip("/") + ".truth"


@dataclass(frozen=True)
class _Job:
    """Everything a shard task needs (small and picklable: no arrays, no open stores)."""

    sample: Sample
    microscope: Microscope
    distortions: Distortions
    dose: float
    seed: int
    url: str
    truth_url: str
    storage_options: tuple[tuple[str, Any], ...]
    shape: tuple[int, int]
    render_tile: int

    def scene(self) -> Scene:
        # Cheap to rebuild: the probe kernels are cached per process by microscope.
        return Scene(self.sample, self.microscope, self.distortions, self.dose, self.seed)


def render_region(scene: Scene, y0: int, x0: int, height: int, width: int, tile: int = RENDER_TILE):
    """Detected image (float32) of a pixel rectangle on the global tile grid, and its truth table."""
    rendered, columns = scene.render_region(y0, x0, height, width, tile=tile, return_columns=True)
    image = scene.detect(rendered["expected"], y0, x0)
    return image, scene.truth(y0, x0, height, width, columns=columns)


def _part_name(y0: int, x0: int) -> str:
    return f"part-y{y0:08d}-x{x0:08d}.parquet"


def _simulate_shard(job: _Job, y0: int, x0: int, height: int, width: int) -> dict[str, Any]:
    import zarr

    scene = job.scene()
    image, truth = render_region(scene, y0, x0, height, width, job.render_tile)
    options = dict(job.storage_options)
    array = zarr.open_array(store=make_store(job.url, storage_options=options), path="0", mode="r+", zarr_format=3)
    write_region(array, image, (y0, x0))
    total = float(image.sum(dtype=np.float64))
    del image
    _write_part(truth, job.truth_url, _part_name(y0, x0), options)
    return {
        "columns": len(truth),
        "species": {str(k): int(v) for k, v in truth["species"].value_counts().items()},
        "defects": {str(k): int(v) for k, v in truth["defect"].value_counts().items() if k},
        "pixels": int(height * width),
        "sum": total,
    }


def _write_part(table, truth_url: str, name: str, options: dict[str, Any]) -> None:
    path = truth_url.rstrip("/") + "/" + name
    if is_remote(truth_url):
        import fsspec

        with fsspec.open(path, "wb", **options) as fh:
            table.to_parquet(fh, index=False)
    else:
        os.makedirs(truth_url, exist_ok=True)
        tmp = path + ".tmp"
        table.to_parquet(tmp, index=False)
        os.replace(tmp, path)  # a part file is either whole or absent


def _write_marker(truth_url: str, summary: dict[str, Any], options: dict[str, Any]) -> None:
    path = truth_url.rstrip("/") + "/_complete.json"
    text = json.dumps(summary, indent=2, default=str)
    if is_remote(truth_url):
        import fsspec

        with fsspec.open(path, "w", **options) as fh:
            fh.write(text)
    else:
        os.makedirs(truth_url, exist_ok=True)
        with open(path, "w") as fh:
            fh.write(text)


def read_truth(truth_url: PathLike, storage_options: dict[str, Any] | None = None):
    """Read a simulated mosaic's truth tables (all part files) into one DataFrame."""
    import pandas as pd

    where = os.fspath(truth_url)
    if not store_exists(where, storage_options=storage_options):
        from ..errors import MosaicNotFoundError

        raise MosaicNotFoundError(f"no truth tables at '{where}'")
    return pd.read_parquet(where, storage_options=storage_options or None)


def shard_tasks(job: _Job, shards: tuple[int, int]) -> list[Any]:
    """One delayed task per shard of the mosaic."""
    ny, nx = job.shape
    task = dask.delayed(_simulate_shard, pure=False)
    return [
        task(job, y0, x0, min(shards[0], ny - y0), min(shards[1], nx - x0), dask_key_name=f"simulate-shard-{y0}-{x0}-{job.seed}-{id(job)}")
        for y0 in range(0, ny, shards[0])
        for x0 in range(0, nx, shards[1])
    ]


@contextlib.contextmanager
def _rich_progress(total: int, enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield lambda n=1: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("simulating shards"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
    ) as bar:
        task = bar.add_task("simulate", total=total)
        yield lambda n=1: bar.advance(task, n)


def _run(tasks: list[Any], progress: bool) -> list[dict[str, Any]]:
    """Compute the shard tasks on the active scheduler, with an optional progress bar."""
    try:
        from distributed import as_completed, default_client

        client = default_client()
    except (ImportError, ValueError):
        client = None
    with _rich_progress(len(tasks), progress) as advance:
        if client is not None:
            futures = client.compute(tasks)
            results = []
            try:
                for fut in as_completed(futures):
                    results.append(fut.result())
                    advance()
            finally:
                for fut in futures:
                    fut.release()
            return results
        from dask.callbacks import Callback

        class _Tick(Callback):
            def _posttask(self, key, result, dsk, state, worker_id):
                if isinstance(key, str) and key.startswith("simulate-shard-"):
                    advance()

        with _Tick():
            return list(dask.compute(*tasks))


def _merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    species: Counter = Counter()
    defects: Counter = Counter()
    for r in results:
        species.update(r["species"])
        defects.update(r["defects"])
    return {
        "columns": int(sum(r["columns"] for r in results)),
        "species": dict(sorted(species.items())),
        "defects": dict(sorted(defects.items())),
        "mean_counts": float(sum(r["sum"] for r in results) / max(1, sum(r["pixels"] for r in results))),
    }


def simulate_mosaic(
    url: PathLike,
    shape: Sequence[int] = (8192, 8192),
    *,
    chunks: Sequence[int] = (512, 512),
    shards: Sequence[int] = (2048, 2048),
    seed: int = 0,
    sample: Sample | None = None,
    microscope: Microscope | None = None,
    dose_e_per_a2: float = 7300.0,
    distortions: Distortions | None = None,
    truth_url: PathLike | None = None,
    overwrite: bool = False,
    progress: bool = False,
    storage_options: dict[str, Any] | None = None,
    name: str = "simulated",
    render_tile: int = RENDER_TILE,
) -> dict[str, Any]:
    """Write a simulated mosaic (zarr v3 + OME-NGFF) and its truth tables (Parquet).

    Parameters
    ----------
    url
        Output store (local path or fsspec URL).
    shape
        (height, width) in pixels; any size (memory per task is one shard).
    chunks, shards
        zarr inner chunk and shard shapes; one task renders one shard.
    seed
        Seed of everything random: the same seed gives the same mosaic for any chunking.
    sample, microscope, dose_e_per_a2, distortions
        As for :func:`~stemscale.simulate.simulate_frame`.
    truth_url
        Directory of the truth Parquet parts (default ``<url>.truth``), one
        part per shard; read it with :func:`read_truth` or ``pandas.read_parquet``.
    overwrite
        Replace existing outputs.
    progress
        Show a progress bar.
    storage_options
        fsspec options for remote URLs.
    name
        NGFF image name.
    render_tile
        Side of the global render tiles (keep it fixed to compare mosaics bit for bit).

    Returns
    -------
    dict
        shape, seed, truth_url, counts per species and defect class, seconds.

    Raises
    ------
    InputError
        Bad parameters (before anything is written), or existing outputs without ``overwrite``.
    """
    t0 = time.perf_counter()
    ny, nx = check_shape(shape)
    if not isinstance(render_tile, (int, np.integer)) or render_tile < 32:
        raise InputError(f"render_tile must be an integer >= 32 pixels, got {render_tile!r}")
    scene = Scene(sample, microscope, distortions, dose_e_per_a2, seed)  # validates everything first
    truth_where = os.fspath(truth_url) if truth_url is not None else truth_url_for(url)
    options = dict(storage_options or {})
    if store_exists(truth_where, storage_options=options):
        if not overwrite:
            raise InputError(
                f"truth tables '{truth_where}' already exist; choose another output or pass overwrite=True (--overwrite on the command line) to replace them"
            )
        remove_store(truth_where, storage_options=options)
    metadata = scene.metadata(shape=[ny, nx], truth_url=truth_where, render_tile=int(render_tile))
    group = create_mosaic(
        url, (ny, nx), metadata, dtype="float32", chunks=chunks, shards=shards, name=name,
        storage_options=options or None, overwrite=overwrite,
        details={"command": "simulate_mosaic", "seed": scene.seed, "truth_url": truth_where},
    )
    shard = shard_shape(group["0"])
    job = _Job(
        sample=scene.sample, microscope=scene.microscope, distortions=scene.distortions,
        dose=scene.dose_e_per_a2, seed=scene.seed, url=os.fspath(url), truth_url=truth_where,
        storage_options=tuple(sorted(options.items())), shape=(ny, nx), render_tile=int(render_tile),
    )
    results = _run(shard_tasks(job, (int(shard[0]), int(shard[1]))), progress)
    summary = {
        "shape": [ny, nx],
        "seed": scene.seed,
        "shards": [int(shard[0]), int(shard[1])],
        "truth_url": truth_where,
        **_merge(results),
    }
    _write_marker(truth_where, summary, options)
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    mark_complete(group, **summary)  # last: only now does the store count as finished
    return summary
