"""Blocks, halos and the owner-computes rule.

A mosaic is cut into blocks equal to its Dask chunks (= zarr shards).  Each
block is processed with a halo of extra pixels on every side so detections
near its edges see their full neighbourhood, and it keeps only detections
whose centre lies in its *core*, using half-open intervals
``[start, stop)`` in global pixel coordinates.  With a halo at least as wide
as the detector's receptive margin plus the fit window, every atom column is
found identically by exactly one block.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate
from typing import Sequence, cast

import numpy as np
import pandas as pd

from ..errors import InputError

__all__ = ["BlockSpec", "plan_blocks", "owned_mask", "keep_owned", "required_halo"]


@dataclass(frozen=True)
class BlockSpec:
    """One block of a mosaic: its core and the haloed window to read.

    All coordinates are global pixel indices; slices are half-open.

    Attributes
    ----------
    index
        (row, column) of the block in the block grid.
    core
        ``(y0, y1, x0, x1)``: the pixels this block owns.
    window
        ``(y0, y1, x0, x1)``: the core plus halo, clipped to the mosaic.
    """

    index: tuple[int, int]
    core: tuple[int, int, int, int]
    window: tuple[int, int, int, int]

    @property
    def key(self) -> str:
        """A stable name for part files and logs, e.g. ``"b0003_0012"``."""
        return f"b{self.index[0]:04d}_{self.index[1]:04d}"

    @property
    def origin(self) -> tuple[int, int]:
        """Global (y, x) of the window's first pixel."""
        return self.window[0], self.window[2]

    def window_slices(self) -> tuple[slice, slice]:
        y0, y1, x0, x1 = self.window
        return slice(y0, y1), slice(x0, x1)

    def core_in_window(self) -> tuple[slice, slice]:
        """Slices selecting the core inside the window array."""
        wy, wx = self.origin
        y0, y1, x0, x1 = self.core
        return slice(y0 - wy, y1 - wy), slice(x0 - wx, x1 - wx)


def _edges(chunks: Sequence[int]) -> list[int]:
    return [0, *accumulate(int(c) for c in chunks)]


def plan_blocks(
    shape: Sequence[int],
    chunks: Sequence[Sequence[int]] | Sequence[int],
    halo: int,
) -> list[BlockSpec]:
    """Cut a mosaic of ``shape`` into blocks with a halo.

    Parameters
    ----------
    shape
        (height, width) of the mosaic in pixels.
    chunks
        Either Dask-style chunks ``((h0, h1, ...), (w0, w1, ...))`` or a
        regular block shape ``(bh, bw)``.
    halo
        Extra pixels read on every side of each core (clipped at mosaic edges).

    Returns
    -------
    list of BlockSpec
        Row-major order.
    """
    ny, nx = (int(n) for n in shape)
    if ny <= 0 or nx <= 0:
        raise InputError(f"mosaic shape must be positive, got {tuple(shape)}")
    if halo < 0:
        raise InputError(f"halo must be >= 0 pixels, got {halo}")
    if all(isinstance(c, (int, np.integer)) for c in chunks):
        bh, bw = (int(c) for c in cast(Sequence[int], chunks))
        if bh <= 0 or bw <= 0:
            raise InputError(f"block shape must be positive, got {tuple(chunks)}")
        ychunks = [bh] * (ny // bh) + ([ny % bh] if ny % bh else [])
        xchunks = [bw] * (nx // bw) + ([nx % bw] if nx % bw else [])
    else:
        ychunks, xchunks = (list(c) for c in cast(Sequence[Sequence[int]], chunks))
    yedges, xedges = _edges(ychunks), _edges(xchunks)
    if yedges[-1] != ny or xedges[-1] != nx:
        raise InputError(f"chunks {chunks} do not add up to the mosaic shape {(ny, nx)}")
    specs = []
    for i, (y0, y1) in enumerate(zip(yedges[:-1], yedges[1:])):
        for j, (x0, x1) in enumerate(zip(xedges[:-1], xedges[1:])):
            window = (max(0, y0 - halo), min(ny, y1 + halo), max(0, x0 - halo), min(nx, x1 + halo))
            specs.append(BlockSpec((i, j), (y0, y1, x0, x1), window))
    return specs


def owned_mask(y_px: np.ndarray, x_px: np.ndarray, core: tuple[int, int, int, int]) -> np.ndarray:
    """Which global positions fall in a core, with half-open intervals.

    Positions are pixel-centre coordinates, so pixel ``i`` spans ``[i - 0.5, i + 0.5)``
    and a core ``[y0, y1)`` of pixel indices spans ``[y0 - 0.5, y1 - 0.5)``.
    """
    y0, y1, x0, x1 = core
    y = np.asarray(y_px, dtype=float)
    x = np.asarray(x_px, dtype=float)
    return (y >= y0 - 0.5) & (y < y1 - 0.5) & (x >= x0 - 0.5) & (x < x1 - 0.5)


def keep_owned(table: pd.DataFrame, core: tuple[int, int, int, int]) -> pd.DataFrame:
    """Rows of ``table`` (global ``x_px``, ``y_px``) owned by a block's core."""
    if table.empty:
        return table
    return table.loc[owned_mask(table["y_px"].to_numpy(), table["x_px"].to_numpy(), core)]


def required_halo(detector_margin: int, fit_window: int, safety: int = 2) -> int:
    """Smallest halo that makes the owner-computes rule exact.

    Parameters
    ----------
    detector_margin
        Pixels of context the detector needs on each side of a detection.
    fit_window
        Edge of the square Gaussian-fit window in pixels.
    safety
        Extra pixels for sub-pixel shifts of fitted centres.
    """
    return int(detector_margin) + int(fit_window) // 2 + 1 + int(safety)
