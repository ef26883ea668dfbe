"""Lazy atoms / defects tables of a mosaic: Dask DataFrames, one partition per block.

What :class:`stemscale.accessor.StemAccessor` returns; the graph is built here
so the accessor only composes.  A *source* is a mosaic store URL (each block
reads its own haloed window) or an in-memory array (one shared graph node).
"""

from __future__ import annotations

from typing import Any, Sequence

import dask
import numpy as np
import pandas as pd

from .blocks import BlockSpec
from .process import BlockConfig, empty_atoms, empty_defects, process_block

__all__ = ["block_tables", "lazy_table", "lazy_tables"]


def block_tables(spec: BlockSpec, source: Any, config: BlockConfig,
                 storage_options: dict[str, Any] | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Atoms and defects of one block; ``source`` is a store URL or an in-memory array."""
    if isinstance(source, str):
        from .run import read_block_window

        window = read_block_window(source, spec, storage_options)
    else:
        window = np.asarray(source[spec.window_slices()])
    return process_block(window, spec, config)


def _atoms_of(spec: BlockSpec, source: Any, config: BlockConfig,
              storage_options: dict[str, Any] | None) -> pd.DataFrame:
    return block_tables(spec, source, config, storage_options)[0]


def _defects_of(spec: BlockSpec, source: Any, config: BlockConfig,
                storage_options: dict[str, Any] | None) -> pd.DataFrame:
    return block_tables(spec, source, config, storage_options)[1]


def lazy_tables(source: Any, specs: Sequence[BlockSpec], config: BlockConfig,
                storage_options: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """Atoms and defects as two Dask DataFrames sharing one detection pass per block.

    Compute them together (``dask.compute(atoms, defects)``) to run each block once.
    """
    import dask.dataframe as dd

    if not isinstance(source, str):
        source = dask.delayed(source, pure=True)
    parts = [dask.delayed(block_tables, pure=True)(spec, source, config, storage_options)
             for spec in specs]
    atoms = dd.from_delayed([p[0] for p in parts], meta=empty_atoms(), verify_meta=False)
    defects = dd.from_delayed([p[1] for p in parts], meta=empty_defects(), verify_meta=False)
    return atoms, defects


def lazy_table(which: str, source: Any, specs: Sequence[BlockSpec], config: BlockConfig,
               storage_options: dict[str, Any] | None = None) -> Any:
    """One table (``"atoms"`` or ``"defects"``) as a Dask DataFrame.

    From a store each partition reads its own window; in-memory pixels go
    through :func:`lazy_tables` so the array is one graph node, not a copy
    per block.
    """
    import dask.dataframe as dd

    if which not in ("atoms", "defects"):
        raise ValueError(f"which must be 'atoms' or 'defects', got {which!r}")
    if not isinstance(source, str):
        pair = lazy_tables(source, specs, config, storage_options)
        return pair[0] if which == "atoms" else pair[1]
    func, meta = (_atoms_of, empty_atoms()) if which == "atoms" else (_defects_of, empty_defects())
    return dd.from_map(func, list(specs), source=source, config=config,
                       storage_options=storage_options, meta=meta,
                       divisions=None, enforce_metadata=False)
