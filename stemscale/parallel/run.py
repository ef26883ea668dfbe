"""Run the block pipeline over a whole mosaic, restartably, on any Dask cluster.

Output layout (a folder, local or on a shared file system)::

    OUT/manifest.json                what ran: mosaic, shape, blocks, config, versions, complete
    OUT/atoms/part-bYYYY_XXXX.parquet    one part per block (global coordinates)
    OUT/defects/part-bYYYY_XXXX.parquet
    OUT/blocks/bYYYY_XXXX.json       a block's done-marker, written last

With ``labels=True`` (FCN detector) each block also writes its core of the
argmax class image and, with ``probabilities=True``, of the quantised class
probabilities, as OME-NGFF label images in the mosaic's zarr (``labels/``) or
in a separate store (``labels_store=``); see :mod:`stemscale.io.labels`.

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
from ..redact import redact, redact_text
from .blocks import BlockSpec, plan_blocks
from ..io.labels import LabelsTarget, finish_labels, new_run_id, prepare_labels, write_block_labels
from .process import BlockConfig, empty_atoms, empty_defects, process_block

__all__ = ["RunResult", "mosaic_statistics", "run_mosaic", "read_block_window", "load_tables"]

MANIFEST = "manifest.json"
#: Marker in a table folder while its run is unfinished.
INCOMPLETE = "RUN-NOT-FINISHED.txt"


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


def _reader(url: str, storage_options: dict | None) -> tuple[Any, Any]:
    """The mosaic's group and its full-resolution array (the path its metadata names)."""
    from ..io.mosaic import open_mosaic_group
    from ..io.ngff import level_paths_from_attrs

    group = open_mosaic_group(url, storage_options=storage_options)
    return group, group[level_paths_from_attrs(dict(group.attrs), str(url))[0]]


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
        try:
            tile = np.asarray(array[i * cy:(i + 1) * cy, j * cx:(j + 1) * cx], dtype=np.float64)
        except (ValueError, RuntimeError, OSError) as exc:  # checksum / codec / truncated object
            if isinstance(exc, (InputError, FileNotFoundError)):
                raise
            raise CorruptBlockError(
                f"mosaic '{url}': the chunk at pixels y {i * cy}:{min((i + 1) * cy, ny)}, "
                f"x {j * cx}:{min((j + 1) * cx, nx)} cannot be read ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); its shard object is damaged: "
                "restore or re-ingest it"
            ) from exc
        s += tile.sum()
        s2 += np.square(tile).sum()
        n += tile.size
    mean = s / n
    std = float(np.sqrt(max(s2 / n - mean**2, 0.0)))
    if std == 0:
        raise InputError(
            f"mosaic '{url}' is constant (every sampled pixel is {mean:g}): there is nothing to "
            "find; check the acquisition, or the ingest that wrote it"
        )
    return float(mean), std


def read_block_window(url: str, spec: BlockSpec, storage_options: dict | None = None) -> np.ndarray:
    """Read a block's haloed window from the store, naming the block if it is damaged."""
    from ..io.blocks import ZarrBlockReader

    group, array = _reader(url, storage_options)
    path = str(getattr(array, "path", "") or "0")
    reader = ZarrBlockReader(url, path, array.shape, array.dtype,
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

        # NUMBA_NUM_THREADS is set from the environment at import, so numba's stubs lack it
        limit = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
        numba.set_num_threads(max(1, min(int(wanted), limit)))
    except (ImportError, ValueError):
        pass


def _block_task(url: str, spec: BlockSpec, config: BlockConfig, out: str,
                storage_options: dict | None,
                labels: LabelsTarget | None = None) -> dict[str, Any]:
    """Process one block and write its labels and parts; returns a small status record."""
    t0 = time.perf_counter()
    _limit_numba_threads()
    window = read_block_window(url, spec, storage_options)
    if labels is None:
        atoms, defects = process_block(window, spec, config)
    else:
        atoms, defects, proba = process_block(window, spec, config, return_proba=True)
        core = None if proba is None else np.asarray(proba)[(slice(None), *spec.core_in_window())]
        # before the marker: a resumed run redoes it
        write_block_labels(labels, spec.core, core, spec.key)
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


def _manifest(url: str, shape, specs, config: BlockConfig, block_shape,
              labels: LabelsTarget | None = None) -> dict[str, Any]:
    # No credentials in the manifest: URLs lose user:password@, options never appear.
    return redact({
        "software": "stemscale",
        "version": __version__,
        "mosaic": str(url),
        "mosaic_shape": list(shape),
        "block_shape": list(block_shape),
        "halo": config.halo,
        "n_blocks": len(specs),
        "config": config.to_dict(),
        "labels": labels.to_dict() if labels is not None else None,
        "complete": False,
    })


def _same_run(old: dict, new: dict) -> bool:
    new = json.loads(json.dumps(new, default=str))  # tuples -> lists, as stored
    keys = ("mosaic", "mosaic_shape", "block_shape", "halo", "config", "labels")
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
    labels: bool = False,
    probabilities: bool = False,
    labels_store: str | os.PathLike[str] | None = None,
    labels_storage_options: dict | None = None,
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
    labels
        Also write the FCN's per-pixel argmax class of every block's core as an
        OME-NGFF label image ``labels/classes`` (needs the ``"fcn"`` detector).
    probabilities
        Also write ``labels/probabilities`` (implies ``labels``): the class
        probabilities as uint8 (value / 255) with a channel axis.
    labels_store
        Write the label images to this separate zarr store (path or URL; its
        root becomes the labels group) instead of into the mosaic's zarr, e.g.
        for a read-only mosaic.  Implies ``labels``.
    labels_storage_options
        fsspec options of ``labels_store`` (default: ``storage_options``).

    Returns
    -------
    RunResult
    """
    t0 = time.perf_counter()
    group, array = _reader(url, storage_options)
    from ..io import MosaicInfo

    info = MosaicInfo.read(url, storage_options=storage_options, group=group)
    pixel_size = info.pixel_size_angstrom
    if config is None:
        config = BlockConfig.for_mosaic(info)
    elif abs(config.pixel_size_angstrom - pixel_size) > 1e-9 * pixel_size:
        raise InputError(
            f"config pixel size {config.pixel_size_angstrom} Å differs from the mosaic's {pixel_size} Å"
        )
    block_shape = tuple(block_shape or (getattr(array, "shards", None) or array.chunks))
    specs = plan_blocks(array.shape, block_shape, config.halo)
    target = _labels_target(url, group, config, block_shape,
                            bool(labels or probabilities or labels_store is not None),
                            probabilities, labels_store, storage_options, labels_storage_options)
    from ..io.store import is_remote

    if is_remote(str(output)):
        raise InputError(
            f"the output '{output}' is a URL; block tables are written to a local or shared "
            "file-system folder (the mosaic itself may live in object storage)"
        )
    out = Path(output)
    manifest = _manifest(url, array.shape, specs, config, block_shape, target)
    old_path = out / MANIFEST
    run_id = new_run_id()
    if old_path.exists():
        old = json.loads(old_path.read_text())
        if _same_run(old, manifest):
            run_id = old.get("run_id") or run_id
        else:
            if not overwrite:
                raise InputError(
                    f"'{out}' holds a different run (other mosaic, blocks or settings); "
                    "choose another output folder or pass overwrite=True"
                )
            import shutil

            shutil.rmtree(out)
    for sub in ("atoms", "defects", "blocks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
        for stale in (out / sub).glob(".*.tmp"):  # parts of a killed run's unfinished writes
            stale.unlink(missing_ok=True)
    for sub in ("atoms", "defects"):
        # Not Parquet on purpose: pandas.read_parquet of an unfinished table fails loudly.
        (out / sub / INCOMPLETE).write_text(
            "this run has not finished; rerun it to complete the missing blocks\n")
    manifest["run_id"] = run_id
    manifest["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    old_path.write_text(json.dumps(manifest, indent=2, default=str))

    if target is not None:
        made = prepare_labels(
            target, shape=array.shape, block_shape=block_shape, chunks=array.chunks,
            pixel_size=pixel_size, translation=info.translation_angstrom,
            source="../../" if target.path else redact_text(str(url)), run_id=run_id,
        )
        if made:  # fresh label arrays: blocks finished earlier must write theirs too
            for marker in (out / "blocks").glob("*.json"):
                marker.unlink()
    todo = [s for s in specs if not (out / "blocks" / f"{s.key}.json").exists()]
    skipped = len(specs) - len(todo)
    _execute(todo, url, config, str(out), storage_options, progress, retries, target)
    if target is not None:
        finish_labels(target)
    n_atoms = n_defects = 0
    for spec in specs:
        rec = json.loads((out / "blocks" / f"{spec.key}.json").read_text())
        n_atoms += rec["atoms"]
        n_defects += rec["defects"]
    for sub in ("atoms", "defects"):
        (out / sub / INCOMPLETE).unlink(missing_ok=True)
    manifest.update(complete=True, n_atoms=n_atoms, n_defects=n_defects,
                    finished=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    old_path.write_text(json.dumps(manifest, indent=2, default=str))
    return RunResult(out, len(specs), skipped, n_atoms, n_defects, time.perf_counter() - t0)


def _labels_target(url, group, config: BlockConfig, block_shape, wanted: bool,
                   probabilities: bool, store, storage_options,
                   store_options) -> LabelsTarget | None:
    """Where and what a run writes as label images (None: no labels), checked before any write."""
    if not wanted:
        return None
    if config.detector != "fcn":
        raise InputError(
            f"label images hold the FCN's class probabilities; the {config.detector!r} "
            "detector has none (use detector='fcn' or drop labels)"
        )
    from ..detect.weights import model_ref
    from ..io.ngff import level_paths_from_attrs

    classes = tuple(model_ref(config.model).manifest.classes)
    levels = len(level_paths_from_attrs(dict(group.attrs), str(url)))
    if levels > 1 and any(int(b) % 2 ** (levels - 1) for b in block_shape):
        raise InputError(
            f"labels of a mosaic with {levels} resolution levels need a block shape divisible "
            f"by {2 ** (levels - 1)}, got {tuple(block_shape)}; use the store's shards "
            "(the default) or a multiple of them"
        )
    if store is None:
        if not isinstance(url, (str, os.PathLike)):
            raise InputError("labels inside the mosaic need a mosaic path or URL; "
                             "pass labels_store=... for other stores")
        return LabelsTarget(os.fspath(url), "labels", classes, bool(probabilities), levels,
                            dict(storage_options or {}))
    options = store_options if store_options is not None else storage_options
    return LabelsTarget(os.fspath(store), "", classes, bool(probabilities), levels,
                        dict(options or {}))


def _execute(todo: list[BlockSpec], url: str, config: BlockConfig, out: str,
             storage_options: dict | None, progress: bool, retries: int,
             labels: Any = None) -> list[dict]:
    """Run the blocks on the active cluster (or local threads); progress in pixels, not blocks."""
    from ..executor import current_client, progress_bar

    if not todo:
        return []
    # Blocks differ in size (edges), so the bar advances by core pixels: a steady ETA.
    mpx = [(s.core[1] - s.core[0]) * (s.core[3] - s.core[2]) / 1e6 for s in todo]
    client = current_client()
    if client is None:
        import dask

        tasks = [dask.delayed(_block_task, pure=False)(url, s, config, out, storage_options,
                                                       labels, dask_key_name=f"block-{s.key}")
                 for s in todo]
        from ..executor import compute

        return compute(tasks, description="blocks", progress=progress, weights=mpx, unit="Mpx")
    if config.detector == "fcn":
        # Every worker loads and verifies the network once, before its first block.
        from .plugins import warm_up_workers

        warm_up_workers(client, config.model, config.device)
    from distributed import as_completed

    futures = [client.submit(_block_task, url, s, config, out, storage_options, labels,
                             key=f"stemscale-block-{s.key}-{os.path.basename(out)}",
                             retries=retries, pure=False)
               for s in todo]
    size = {f.key: w for f, w in zip(futures, mpx)}
    records = []
    with progress_bar(sum(mpx), "blocks", enabled=progress, unit="Mpx") as advance:
        try:
            for future in as_completed(futures):
                records.append(future.result())  # re-raises a block's error with its message
                advance(size[future.key])
        except BaseException:
            client.cancel(futures)
            raise
    return records


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
