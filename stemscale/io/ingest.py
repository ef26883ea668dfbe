"""Ingest raw frames (TIFF, DM3/DM4, EMD) into one mosaic zarr store.

One frame becomes a one-frame mosaic; several frames are placed by their
stage positions (from the files, or from a CSV of positions in Å) into one
mosaic.  Placement is rigid and rounded to whole pixels: frame ``k`` lands
at pixel offset ``round((position_k - origin) / pixel_size)``, where
``origin`` is the smallest position over all frames; the mosaic's NGFF
translation is ``origin`` (so mosaic coordinates are stage coordinates) and
the exact positions and rounding residuals are kept in the ``frames`` list of
the store's ``stemscale`` attributes.  No registration or blending is done.

Overlaps
--------
``overlap="last"`` (default): where frames overlap, the frame given later
wins (keeps the original counts and noise statistics of one frame).
``overlap="mean"``: overlapping pixels are averaged (stored as float32).
Pixels no frame covers are 0.

Every frame is checked before anything is written (existence, format,
2-D-ness, pixel size, consistent pixel sizes); NaN/Inf pixels are found while
writing, and then the half-written output is removed, so an output store
either is complete or does not exist.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any, Callable, Sequence

import dask
import dask.array as da
import numpy as np
import pandas as pd

from ..errors import InputError, MetadataError, MosaicNotFoundError
from ..metadata import AcquisitionMetadata
from ..redact import redact_text
from .frames import Frame, read_frame, with_position
from .mosaic import DEFAULT_CHUNKS, DEFAULT_SHARDS, _normalise_blocks, open_mosaic, write_mosaic
from .store import PathLike, describe, remove_store, store_exists

__all__ = ["ingest", "read_positions", "plan_placement", "Placement", "OVERLAP_POLICIES"]

log = logging.getLogger(__name__)

OVERLAP_POLICIES = ("last", "mean")
# A mosaic whose area exceeds the frames' total area this many times is almost
# certainly a units mistake (stage positions in µm read as Å, ...).
MAX_SPARSITY = 16.0


class Placement:
    """Where each frame goes in the mosaic.

    Attributes
    ----------
    offsets
        Pixel offset (row, col) of each frame's pixel (0, 0) in the mosaic.
    shape
        Mosaic shape (rows, cols).
    origin
        Å position (y, x) of the mosaic's pixel (0, 0) centre (its NGFF translation).
    residuals
        Rounding residual (y, x) in pixels of each frame's placement.
    """

    def __init__(self, offsets, shape, origin, residuals):
        self.offsets: list[tuple[int, int]] = offsets
        self.shape: tuple[int, int] = shape
        self.origin: tuple[float, float] = origin
        self.residuals: list[tuple[float, float]] = residuals


def read_positions(csv: str | os.PathLike[str], files: Sequence[str]) -> list[tuple[float, float]]:
    """Read frame positions (Å) from a CSV file.

    The CSV has columns ``y_A`` and ``x_A`` (position of each frame's pixel
    (0, 0) centre, in Å) and optionally ``file``.  With ``file``, rows are
    matched to ``files`` by path or by file name; without it, rows are taken in
    the order of ``files``.

    Raises
    ------
    MosaicNotFoundError
        The CSV does not exist.
    InputError
        Missing columns, non-finite values, or rows that do not match ``files``.
    """
    where = os.fspath(csv)
    if not os.path.exists(where):
        raise MosaicNotFoundError(f"positions file '{where}' does not exist")
    try:
        table = pd.read_csv(where, skipinitialspace=True)
    except Exception as exc:
        raise InputError(f"cannot read positions file '{where}' as CSV ({exc})") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = {"y_A", "x_A"} - set(table.columns)
    if missing:
        raise InputError(
            f"positions file '{where}' lacks column(s) {sorted(missing)}; expected columns "
            "'file,y_A,x_A' (or 'y_A,x_A' in the order of the input files), positions in Å"
        )
    values = table[["y_A", "x_A"]].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        raise InputError(
            f"positions file '{where}' row {row + 2}: y_A/x_A must be finite numbers of Å, "
            f"got {table.iloc[row][['y_A', 'x_A']].tolist()}"
        )
    if "file" not in table.columns:
        if len(table) != len(files):
            raise InputError(
                f"positions file '{where}' has {len(table)} rows for {len(files)} input files; "
                "give one row per file, in the same order, or add a 'file' column"
            )
        return [(float(y), float(x)) for y, x in values]
    names = [str(f).strip() for f in table["file"]]
    out = []
    for path in files:
        hits = [i for i, name in enumerate(names)
                if name == path or os.path.basename(name) == os.path.basename(path)]
        if len(hits) != 1:
            raise InputError(
                f"positions file '{where}' has {len(hits)} rows for '{path}'; expected exactly one "
                "(match by the file column: a path or a file name)"
            )
        out.append((float(values[hits[0], 0]), float(values[hits[0], 1])))
    return out


def plan_placement(
    shapes: Sequence[tuple[int, int]],
    positions: Sequence[tuple[float, float]],
    pixel_size: float,
    *,
    max_sparsity: float = MAX_SPARSITY,
) -> Placement:
    """Rigid placement of frames by their positions, rounded to whole pixels.

    Parameters
    ----------
    shapes
        (rows, cols) of each frame.
    positions
        Å position (y, x) of each frame's pixel (0, 0) centre.
    pixel_size
        Common pixel size in Å.
    max_sparsity
        Refuse layouts whose bounding box exceeds the frames' total area this
        many times (a sign of positions in the wrong unit).

    Returns
    -------
    Placement
    """
    pos = np.asarray(positions, dtype=float).reshape(-1, 2)
    origin = pos.min(axis=0)
    exact = (pos - origin) / pixel_size
    offsets = np.rint(exact).astype(np.int64)
    residuals = exact - offsets
    sizes = np.asarray(shapes, dtype=np.int64).reshape(-1, 2)
    shape = tuple(int(n) for n in (offsets + sizes).max(axis=0))
    area = float(shape[0]) * float(shape[1])
    covered = float((sizes[:, 0] * sizes[:, 1]).sum())
    if area > max_sparsity * covered:
        raise InputError(
            f"the frame positions spread {len(sizes)} frame(s) over {shape[0]} x {shape[1]} px, "
            f"{area / covered:.0f} times their total area; check that the positions are in Å "
            f"(stage positions in µm must be multiplied by 10,000)"
        )
    return Placement(
        [(int(a), int(b)) for a, b in offsets],
        (int(shape[0]), int(shape[1])),
        (float(origin[0]), float(origin[1])),
        [(float(a), float(b)) for a, b in residuals],
    )


def _load(path: str, options: dict[str, Any], dtype: np.dtype) -> np.ndarray:
    """Read one frame fully (in whatever process runs the task) and check it."""
    data = np.asarray(read_frame(path, lazy=False, **options).data)
    if data.dtype.kind == "f":
        finite = np.isfinite(data)
        if not finite.all():
            bad = int(data.size - np.count_nonzero(finite))
            iy, ix = np.argwhere(~finite)[0]
            raise InputError(
                f"'{path}' contains {bad} NaN or Inf pixel(s) (first at row {iy}, column {ix}); "
                "expected finite intensities"
            )
    return data.astype(dtype, copy=False)


def _compose(
    bounds: tuple[int, int, int, int],
    datas: Sequence[np.ndarray],
    offsets: Sequence[tuple[int, int]],
    policy: str,
    dtype: np.dtype,
) -> np.ndarray:
    """One mosaic block from the frames overlapping it (later frames win, or mean)."""
    y0, y1, x0, x1 = bounds
    if policy == "mean":
        total = np.zeros((y1 - y0, x1 - x0), dtype=np.float64)
        count = np.zeros((y1 - y0, x1 - x0), dtype=np.int32)
    else:
        out = np.zeros((y1 - y0, x1 - x0), dtype=dtype)
    for data, (oy, ox) in zip(datas, offsets):
        ty0, ty1 = max(y0, oy), min(y1, oy + data.shape[0])
        tx0, tx1 = max(x0, ox), min(x1, ox + data.shape[1])
        if ty0 >= ty1 or tx0 >= tx1:
            continue
        src = data[ty0 - oy:ty1 - oy, tx0 - ox:tx1 - ox]
        dst = (slice(ty0 - y0, ty1 - y0), slice(tx0 - x0, tx1 - x0))
        if policy == "mean":
            total[dst] += src
            count[dst] += 1
        else:
            out[dst] = src
    if policy == "mean":
        return np.divide(total, np.maximum(count, 1)).astype(dtype)
    return out


def assemble(
    frames: Sequence[Frame],
    placement: Placement,
    options: Sequence[dict[str, Any]],
    block_shape: tuple[int, int],
    policy: str = "last",
) -> da.Array:
    """The lazy mosaic: one Dask task per output block, each reading only its frames."""
    if policy not in OVERLAP_POLICIES:
        raise InputError(f"overlap must be one of {OVERLAP_POLICIES}, got {policy!r}")
    dtypes = [np.dtype(f.data.dtype) for f in frames]
    dtype = np.result_type(*dtypes)
    if policy == "mean":
        dtype = np.result_type(dtype, np.float32) if dtype.kind == "f" else np.dtype(np.float32)
    load = dask.delayed(_load, pure=True)
    loads = [load(f.source, opts, dtype) for f, opts in zip(frames, options)]
    ny, nx = placement.shape
    by, bx = block_shape
    rows = []
    for y0 in range(0, ny, by):
        y1 = min(ny, y0 + by)
        row = []
        for x0 in range(0, nx, bx):
            x1 = min(nx, x0 + bx)
            hits = [
                k for k, (f, (oy, ox)) in enumerate(zip(frames, placement.offsets))
                if oy < y1 and oy + f.shape[0] > y0 and ox < x1 and ox + f.shape[1] > x0
            ]
            if hits:
                block = dask.delayed(_compose, pure=True)(
                    (y0, y1, x0, x1), [loads[k] for k in hits],
                    [placement.offsets[k] for k in hits], policy, dtype,
                )
                row.append(da.from_delayed(block, shape=(y1 - y0, x1 - x0), dtype=dtype))
            else:
                row.append(da.zeros((y1 - y0, x1 - x0), dtype=dtype, chunks=(y1 - y0, x1 - x0)))
        rows.append(row)
    return da.block(rows)


def ingest(
    files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: PathLike,
    *,
    pixel_size: float | None = None,
    positions: str | os.PathLike[str] | Sequence[tuple[float, float]] | None = None,
    frame: int | None = None,
    reduce: str | None = None,
    signal: str | None = None,
    overlap: str = "last",
    high_tension_kv: float | None = None,
    convergence_mrad: float | None = None,
    dose_e_per_a2: float | None = None,
    material: str | None = None,
    chunks: Sequence[int] = DEFAULT_CHUNKS,
    shards: Sequence[int] | None = DEFAULT_SHARDS,
    levels: int = 1,
    storage_options: dict[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = False,
    on_frame: Callable[[int, Frame], None] | None = None,
):
    """Ingest one or more raw frames into a mosaic zarr store.

    Parameters
    ----------
    files
        One path or a sequence of paths (TIFF, DM3/DM4, EMD).
    out
        Output store: local path or fsspec URL (``s3://...``).
    pixel_size
        Pixel size in Å; required for files without calibration, and overrides
        the files' calibration when given.
    positions
        Frame positions in Å: a CSV path (see :func:`read_positions`) or a
        sequence of (y, x).  Default: for one frame (0, 0); for several, the
        stage positions in the files.
    frame, reduce
        For stacks: pick frame ``frame`` or combine the frames (``"sum"`` / ``"mean"``).
    signal
        Title (substring) of the image to take from multi-image files.
    overlap
        ``"last"`` (later frame wins) or ``"mean"`` (average) where frames overlap.
    high_tension_kv, convergence_mrad, dose_e_per_a2, material
        Override or complete the metadata read from the files.
    chunks, shards, levels
        Store layout (see :func:`~stemscale.io.write_mosaic`).
    storage_options
        fsspec options for a remote ``out``.
    overwrite
        Replace an existing output.
    progress
        Show a progress bar while writing.
    on_frame
        Called as ``on_frame(index, frame)`` after each file's header is read.

    Returns
    -------
    xarray.DataArray
        The new mosaic, opened lazily with :func:`~stemscale.io.open_mosaic`.

    Raises
    ------
    MosaicNotFoundError, InputError, MetadataError
        Problems with the inputs, found before anything is written.
    """
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    paths = [os.fspath(f) for f in files]
    if not paths:
        raise InputError("no input files given")
    if overlap not in OVERLAP_POLICIES:
        raise InputError(f"overlap must be one of {OVERLAP_POLICIES}, got {overlap!r}")
    options: dict[str, Any] = dict(pixel_size=pixel_size, frame=frame, reduce=reduce, signal=signal)
    frames: list[Frame] = []
    for k, path in enumerate(paths):
        frame_k = read_frame(path, lazy=True, **options)
        frames.append(frame_k)
        if on_frame is not None:
            on_frame(k, frame_k)
    sizes = [f.pixel_size_angstrom for f in frames]
    if not all(math.isclose(s, sizes[0], rel_tol=1e-4) for s in sizes):
        listing = ", ".join(f"{os.path.basename(f.source)}: {f.pixel_size_angstrom:.5g} Å"
                            for f in frames)
        raise InputError(
            f"the frames have different pixel sizes ({listing}); stemscale places frames without "
            "resampling, so ingest frames of one magnification together"
        )
    given = _positions(positions, paths, frames)
    frames = [with_position(f, p) for f, p in zip(frames, given)]
    pixel = sizes[0]
    placement = plan_placement([f.shape for f in frames], given, pixel)
    first = frames[0]
    metadata = first.metadata(
        high_tension_kv=high_tension_kv, convergence_mrad=convergence_mrad,
        dose_e_per_a2=dose_e_per_a2, material=material,
    )
    if len(frames) > 1:
        metadata = AcquisitionMetadata.from_attrs(
            {**metadata.to_attrs(), "source": f"{len(frames)} frames"}
        )
    chunks_n, shards_n = _normalise_blocks(placement.shape, chunks, shards)
    block = shards_n or chunks_n
    mosaic = assemble(frames, placement, [options] * len(frames), block, overlap)
    records = [
        {
            "source": redact_text(str(f.source)),
            "offset_px": list(off),
            "shape_px": list(f.shape),
            "position_angstrom": list(pos),
            "rounding_residual_px": [round(r, 4) for r in res],
            "pixel_size_origin": f.pixel_size_origin,
            **({"title": f.title} if f.title else {}),
        }
        for f, off, pos, res in zip(frames, placement.offsets, given, placement.residuals)
    ]
    details = {
        "command": "ingest",
        "inputs": paths,
        "overlap": overlap,
        "placement": "rigid, rounded to whole pixels, by position",
        **({"frame": frame} if frame is not None else {}),
        **({"reduce": reduce} if reduce else {}),
    }
    if not overwrite and store_exists(out, storage_options=storage_options):
        raise InputError(
            f"'{describe(out)}' already exists; choose another output or pass --overwrite "
            "(overwrite=True) to replace it"
        )
    try:
        write_mosaic(
            out, mosaic, metadata, translation=placement.origin, chunks=chunks, shards=shards,
            levels=levels, storage_options=storage_options, overwrite=overwrite, details=details,
            frames=records, progress=progress,
            name=os.path.splitext(os.path.basename(paths[0]))[0] if len(paths) == 1 else "mosaic",
        )
    except BaseException:
        _cleanup(out, storage_options)
        raise
    return open_mosaic(out, storage_options=storage_options)


def _cleanup(out: PathLike, storage_options: dict[str, Any] | None) -> None:
    try:
        remove_store(out, storage_options=storage_options)
        log.info("removed the half-written '%s'", describe(out))
    except Exception:  # the original error matters more than a failed cleanup
        log.warning("could not remove the half-written '%s'", describe(out))


def _positions(
    positions: Any, paths: Sequence[str], frames: Sequence[Frame]
) -> list[tuple[float, float]]:
    if positions is None:
        if len(frames) == 1:
            return [(0.0, 0.0)]
        known = [f.position_angstrom for f in frames]
        missing = [f.source for f, p in zip(frames, known) if p is None]
        if missing:
            raise MetadataError(
                f"{len(missing)} of {len(frames)} frames have no stage position in their "
                f"metadata (first: '{missing[0]}'); supply positions with --positions CSV "
                "(columns file,y_A,x_A in Å)"
            )
        return [(p[0], p[1]) for p in known if p is not None]
    if isinstance(positions, (str, os.PathLike)):
        return read_positions(positions, paths)
    values = np.asarray(positions, dtype=float)
    if values.shape != (len(paths), 2) or not np.isfinite(values).all():
        raise InputError(
            f"positions must be {len(paths)} finite (y, x) pairs in Å, got shape {values.shape}"
        )
    return [(float(y), float(x)) for y, x in values]
