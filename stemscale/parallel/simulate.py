"""Seamless synthetic mosaics of any size: :func:`simulate_mosaic`.

One Dask task per zarr shard renders that shard
(:func:`stemscale.simulate.region.render_region`) and writes it, plus the
truth rows of the columns it owns (centre inside the shard, half-open in
pixel-centre coordinates) to one Parquet part file.  Inside a task the
image is rendered on a fixed *global* grid of render tiles, and every random
number is drawn from global indices, so the mosaic is bit-for-bit the same
whatever its chunks and shards, and a task's memory depends on the shard
size only.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import dask
import numpy as np

from ..errors import InputError
from ..executor import compute
from ..io import create_mosaic, mark_complete
from ..io.mosaic import shard_shape, write_region
from ..io.store import make_store, remove_store, store_exists
from ..io.truth import truth_part_name, truth_url_for, write_truth_marker, write_truth_part
from ..io.zarr_nodes import array_at
from ..simulate.frame import check_shape
from ..simulate.probe import Microscope
from ..simulate.region import RENDER_TILE, render_region
from ..simulate.sample import Distortions, Sample
from ..simulate.scene import Scene

__all__ = ["simulate_mosaic", "shard_tasks"]


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


def _simulate_shard(job: _Job, y0: int, x0: int, height: int, width: int) -> dict[str, Any]:
    import zarr

    scene = job.scene()
    image, truth = render_region(scene, y0, x0, height, width, job.render_tile)
    options = dict(job.storage_options)
    array = zarr.open_array(store=make_store(job.url, storage_options=options), path="0", mode="r+", zarr_format=3)
    write_region(array, image, (y0, x0))
    total = float(image.sum(dtype=np.float64))
    del image
    write_truth_part(truth, job.truth_url, truth_part_name(y0, x0), options)
    return {
        "columns": len(truth),
        "species": {str(k): int(v) for k, v in truth["species"].value_counts().items()},
        "defects": {str(k): int(v) for k, v in truth["defect"].value_counts().items() if k},
        "pixels": int(height * width),
        "sum": total,
    }


def shard_tasks(job: "_Job", shards: tuple[int, int]) -> list[Any]:
    """One delayed task per shard of the mosaic."""
    ny, nx = job.shape
    task = dask.delayed(_simulate_shard, pure=False)
    return [
        task(job, y0, x0, min(shards[0], ny - y0), min(shards[1], nx - x0), dask_key_name=f"simulate-shard-{y0}-{x0}-{job.seed}-{id(job)}")
        for y0 in range(0, ny, shards[0])
        for x0 in range(0, nx, shards[1])
    ]


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
    url: str | os.PathLike[str],
    shape: Sequence[int] = (8192, 8192),
    *,
    chunks: Sequence[int] = (512, 512),
    shards: Sequence[int] = (2048, 2048),
    seed: int = 0,
    sample: Sample | None = None,
    microscope: Microscope | None = None,
    dose_e_per_a2: float = 7300.0,
    distortions: Distortions | None = None,
    truth_url: str | os.PathLike[str] | None = None,
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
        part per shard; read it with :func:`stemscale.io.read_truth` or ``pandas.read_parquet``.
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
    scene = Scene(  # validates everything first; None means the default
        sample if sample is not None else Sample(),
        microscope if microscope is not None else Microscope(),
        distortions if distortions is not None else Distortions(),
        dose_e_per_a2, seed,
    )
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
    shard = shard_shape(array_at(group, "0", os.fspath(url)))
    job = _Job(
        sample=scene.sample, microscope=scene.microscope, distortions=scene.distortions,
        dose=scene.dose_e_per_a2, seed=scene.seed, url=os.fspath(url), truth_url=truth_where,
        storage_options=tuple(sorted(options.items())), shape=(ny, nx), render_tile=int(render_tile),
    )
    tasks = shard_tasks(job, (int(shard[0]), int(shard[1])))
    results = compute(tasks, description="simulating shards", progress=progress)
    summary = {
        "shape": [ny, nx],
        "seed": scene.seed,
        "shards": [int(shard[0]), int(shard[1])],
        "truth_url": truth_where,
        **_merge(results),
    }
    write_truth_marker(truth_where, summary, options)
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    mark_complete(group, **summary)  # last: only now does the store count as finished
    return summary
