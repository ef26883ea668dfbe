"""Run the block pipeline over a whole mosaic, restartably, on any Dask cluster.

Output layout (a folder, local or on a shared file system)::

    OUT/manifest.json                what ran: mosaic, shape, blocks, config, versions, complete
    OUT/atoms/part-bYYYY_XXXX.parquet    one part per block (global coordinates)
    OUT/defects/part-bYYYY_XXXX.parquet
    OUT/blocks/bYYYY_XXXX.json       a block's done-marker, written last

Each block task reads its own haloed window from the zarr store (never ships
pixels from the client), runs :func:`process_block`, writes its two parts
under temporary names and renames them, then writes its done-marker.  A rerun
skips blocks with markers; a killed worker's task is retried by Dask; the
manifest's ``complete`` flag is set only when every block is done, so a
partial result never looks finished.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .._version import __version__
from ..errors import CorruptBlockError, InputError
from .blocks import BlockSpec, plan_blocks
from .process import BlockConfig, empty_atoms, empty_defects, process_block

__all__ = ["RunResult", "mosaic_statistics", "run_mosaic", "read_block_window", "load_tables"]

MANIFEST = "manifest.json"


@dataclass
class RunResult:
    """Summary of a finished run."""

    output: Path
    n_blocks: int
    skipped: int
    n_atoms: int
    n_defects: int
    seconds: float

    @property
    def atoms_path(self) -> Path:
        return self.output / "atoms"

    @property
    def defects_path(self) -> Path:
        return self.output / "defects"


def _reader(url: str, storage_options: dict | None):
    from ..io.mosaic import open_mosaic_group

    group = open_mosaic_group(url, storage_options=storage_options)
    return group, group["0"]


def mosaic_statistics(url: str, *, storage_options: dict | None = None,
                      max_chunks: int = 64) -> tuple[float, float]:
    """Mean and standard deviation of a mosaic from a fixed sample of its inner chunks.

    The sample depends only on the store's chunk grid, never on how a run is
    blocked, so every block of every run is standardised with the same numbers.
    """
    _, array = _reader(url, storage_options)
    ny, nx = array.shape
    cy, cx = array.chunks
    gy, gx = -(-ny // cy), -(-nx // cx)
    total = gy * gx
    picks = np.unique(np.linspace(0, total - 1, min(total, max_chunks)).round().astype(int))
    s = s2 = n = 0.0
    for k in picks:
        i, j = divmod(int(k), gx)
        tile = np.asarray(array[i * cy:(i + 1) * cy, j * cx:(j + 1) * cx], dtype=np.float64)
        s += tile.sum()
        s2 += np.square(tile).sum()
        n += tile.size
    mean = s / n
    std = float(np.sqrt(max(s2 / n - mean**2, 0.0)))
    return float(mean), std if std > 0 else 1.0


def read_block_window(url: str, spec: BlockSpec, storage_options: dict | None = None) -> np.ndarray:
    """Read a block's haloed window from the store, naming the block if it is damaged."""
    from ..io.blocks import ZarrBlockReader

    group, array = _reader(url, storage_options)
    reader = ZarrBlockReader(url, "0", array.shape, array.dtype,
                             getattr(array, "shards", None) or array.chunks, storage_options)
    try:
        return np.asarray(reader[spec.window_slices()])
    except CorruptBlockError as exc:
        raise CorruptBlockError(f"block {spec.key}: {exc}") from None


def _atomic_parquet(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def _limit_numba_threads() -> None:
    """Keep numba's parallel kernels to the worker's share of the cores."""
    wanted = os.environ.get("STEMSCALE_TORCH_THREADS")
    if not wanted:
        return
    try:
        import numba

        numba.set_num_threads(max(1, min(int(wanted), numba.config.NUMBA_NUM_THREADS)))
    except (ImportError, ValueError):
        pass


def _block_task(url: str, spec: BlockSpec, config: BlockConfig, out: str,
                storage_options: dict | None) -> dict[str, Any]:
    """Process one block and write its parts; returns a small status record."""
    t0 = time.perf_counter()
    _limit_numba_threads()
    window = read_block_window(url, spec, storage_options)
    atoms, defects = process_block(window, spec, config)
    root = Path(out)
    _atomic_parquet(atoms, root / "atoms" / f"part-{spec.key}.parquet")
    _atomic_parquet(defects, root / "defects" / f"part-{spec.key}.parquet")
    record = {"block": spec.key, "core": list(spec.core), "atoms": len(atoms),
              "defects": len(defects), "seconds": round(time.perf_counter() - t0, 3)}
    marker = root / "blocks" / f"{spec.key}.json"
    tmp = marker.with_name(f".{marker.name}.tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, marker)
    return record


def _manifest(url: str, shape, specs, config: BlockConfig, block_shape) -> dict[str, Any]:
    return {
        "software": "stemscale",
        "version": __version__,
        "mosaic": str(url),
        "mosaic_shape": list(shape),
        "block_shape": list(block_shape),
        "halo": config.halo,
        "n_blocks": len(specs),
        "config": config.to_dict(),
        "complete": False,
    }


def _same_run(old: dict, new: dict) -> bool:
    new = json.loads(json.dumps(new, default=str))  # tuples -> lists, as stored
    keys = ("mosaic", "mosaic_shape", "block_shape", "halo", "config")
    return all(old.get(k) == new.get(k) for k in keys)


def run_mosaic(
    url: str,
    output: str | os.PathLike[str],
    config: BlockConfig | None = None,
    *,
    block_shape: Sequence[int] | None = None,
    storage_options: dict | None = None,
    progress: bool = False,
    overwrite: bool = False,
    retries: int = 2,
) -> RunResult:
    """Find and refine every atom column and defect of a mosaic, block by block.

    Parameters
    ----------
    url
        Mosaic store (path or fsspec URL).
    output
        Output folder (created).  Rerunning into the same folder resumes.
    config
        Block settings; by default the shipped model with the mosaic's pixel size
        and mosaic-wide standardisation statistics.
    block_shape
        Core size of a block in pixels (default: the store's shard shape).
    storage_options
        fsspec options for a remote mosaic.
    progress
        Show a progress bar.
    overwrite
        Start afresh in a folder that holds a different run.
    retries
        Times Dask retries a failed block (a lost worker is always retried).

    Returns
    -------
    RunResult
    """
    t0 = time.perf_counter()
    group, array = _reader(url, storage_options)
    from ..io.ngff import pixel_size_from_attrs

    from ..io.ngff import translation_from_attrs

    pixel_size = pixel_size_from_attrs(dict(group.attrs), str(url))
    if config is None:
        config = BlockConfig(pixel_size_angstrom=pixel_size,
                             stats=mosaic_statistics(url, storage_options=storage_options),
                             translation_angstrom=translation_from_attrs(dict(group.attrs), str(url)))
    elif abs(config.pixel_size_angstrom - pixel_size) > 1e-9 * pixel_size:
        raise InputError(
            f"config pixel size {config.pixel_size_angstrom} Å differs from the mosaic's {pixel_size} Å"
        )
    block_shape = tuple(block_shape or (getattr(array, "shards", None) or array.chunks))
    specs = plan_blocks(array.shape, block_shape, config.halo)
    out = Path(output)
    manifest = _manifest(url, array.shape, specs, config, block_shape)
    old_path = out / MANIFEST
    if old_path.exists():
        old = json.loads(old_path.read_text())
        if not _same_run(old, manifest):
            if not overwrite:
                raise InputError(
                    f"'{out}' holds a different run (other mosaic, blocks or settings); "
                    "choose another output folder or pass overwrite=True"
                )
            import shutil

            shutil.rmtree(out)
    for sub in ("atoms", "defects", "blocks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    manifest["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    old_path.write_text(json.dumps(manifest, indent=2, default=str))

    todo = [s for s in specs if not (out / "blocks" / f"{s.key}.json").exists()]
    skipped = len(specs) - len(todo)
    _execute(todo, url, config, str(out), storage_options, progress, retries)
    n_atoms = n_defects = 0
    for spec in specs:
        rec = json.loads((out / "blocks" / f"{spec.key}.json").read_text())
        n_atoms += rec["atoms"]
        n_defects += rec["defects"]
    manifest.update(complete=True, n_atoms=n_atoms, n_defects=n_defects,
                    finished=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    old_path.write_text(json.dumps(manifest, indent=2, default=str))
    return RunResult(out, len(specs), skipped, n_atoms, n_defects, time.perf_counter() - t0)


def _execute(todo, url, config, out, storage_options, progress, retries) -> list[dict]:
    if not todo:
        return []
    try:
        from distributed import as_completed, get_client

        client = get_client()
    except (ImportError, ValueError):
        client = None
    if client is None:
        import dask

        tasks = [dask.delayed(_block_task, pure=False)(url, s, config, out, storage_options)
                 for s in todo]
        if progress:
            from dask.diagnostics import ProgressBar

            with ProgressBar():
                return list(dask.compute(*tasks))
        return list(dask.compute(*tasks))
    if config.detector == "fcn":
        # Every worker loads and verifies the network once, before its first block.
        from .plugins import warm_up_workers

        warm_up_workers(client, config.model, config.device)
    futures = [client.submit(_block_task, url, s, config, out, storage_options,
                             key=f"stemscale-block-{s.key}-{os.path.basename(out)}",
                             retries=retries, pure=False)
               for s in todo]
    records = []
    bar = _progress_bar(len(futures)) if progress else None
    try:
        for future in as_completed(futures):
            records.append(future.result())  # re-raises a block's error with its message
            if bar:
                bar[0].update(bar[1], advance=1)
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        if bar:
            bar[0].stop()
    return records


def _progress_bar(total: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    bar = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn())
    task = bar.add_task("blocks", total=total)
    bar.start()
    return bar, task


def load_tables(output: str | os.PathLike[str], *, require_complete: bool = True):
    """Read a run's atoms and defects tables (pandas), refusing an unfinished run."""
    out = Path(output)
    path = out / MANIFEST
    if not path.exists():
        raise InputError(f"'{out}' is not a stemscale run folder (no {MANIFEST})")
    manifest = json.loads(path.read_text())
    if require_complete and not manifest.get("complete"):
        raise InputError(f"the run in '{out}' did not finish; rerun it to complete the missing blocks")
    tables = []
    for name, empty in (("atoms", empty_atoms), ("defects", empty_defects)):
        parts = sorted((out / name).glob("part-*.parquet"))
        frames = [pd.read_parquet(p) for p in parts]
        frames = [f for f in frames if len(f)]
        tables.append(pd.concat(frames, ignore_index=True) if frames else empty())
    return tables[0], tables[1]
