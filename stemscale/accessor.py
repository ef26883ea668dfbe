"""The ``.stem`` accessor on :class:`xarray.DataArray`: a stateless facade.

>>> mosaic = stemscale.open_mosaic("wse2.zarr")
>>> atoms = mosaic.stem.find_atoms()          # lazy dask DataFrame, one partition per block
>>> atoms.compute()                           # runs on whatever cluster is active

Accessors are re-created for every new xarray object, so nothing here holds
state: every method derives what it needs from the array's ``attrs`` and
passes it to the pure functions of :mod:`stemscale.parallel`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from .errors import InputError
from .parallel.blocks import BlockSpec, plan_blocks
from .parallel.process import BlockConfig, empty_atoms, empty_defects, process_block

__all__ = ["StemAccessor"]


def _block_tables(spec: BlockSpec, source: Any, config: BlockConfig, storage_options: dict | None):
    """Both tables of one block; ``source`` is a store URL or an in-memory array."""
    if isinstance(source, str):
        from .parallel.run import read_block_window

        window = read_block_window(source, spec, storage_options)
    else:
        window = np.asarray(source[spec.window_slices()])
    return process_block(window, spec, config)


def _atoms_of(spec, source, config, storage_options):
    return _block_tables(spec, source, config, storage_options)[0]


def _defects_of(spec, source, config, storage_options):
    return _block_tables(spec, source, config, storage_options)[1]


@xr.register_dataarray_accessor("stem")
class StemAccessor:
    """Atom finding and defect detection on a 2-D HAADF-STEM ``DataArray`` (dims y, x)."""

    def __init__(self, obj: xr.DataArray) -> None:
        self._obj = obj

    # ------------------------------------------------------------------ metadata
    @property
    def pixel_size(self) -> float:
        """Pixel size in Å (from ``attrs["pixel_size_angstrom"]`` or the coordinates)."""
        attrs = self._obj.attrs
        if "pixel_size_angstrom" in attrs:
            return float(attrs["pixel_size_angstrom"])
        if "x" in self._obj.coords and self._obj.sizes.get("x", 0) > 1:
            return float(self._obj["x"][1] - self._obj["x"][0])
        raise InputError(
            "this DataArray has no pixel size: set attrs['pixel_size_angstrom'] (Å per pixel) "
            "or give it an 'x' coordinate in Å"
        )

    def _check(self) -> None:
        if self._obj.dims != ("y", "x"):
            raise InputError(f"expected a 2-D DataArray with dims ('y', 'x'), got {self._obj.dims}")

    def config(self, **options: Any) -> BlockConfig:
        """The block configuration for this mosaic, with ``options`` overriding defaults."""
        self._check()
        translation = (float(self._obj["y"][0]), float(self._obj["x"][0])) if "x" in self._obj.coords else (0.0, 0.0)
        options.setdefault("translation_angstrom", translation)
        if "stats" not in options:
            source = self._obj.attrs.get("source_store")
            if source and self._obj.attrs.get("level", 0) == 0:
                from .parallel.run import mosaic_statistics

                options["stats"] = mosaic_statistics(source, storage_options=options.pop("storage_options", None))
            else:
                sample = self._obj.data[:: max(1, self._obj.shape[0] // 512), :: max(1, self._obj.shape[1] // 512)]
                sample = np.asarray(sample.compute() if hasattr(sample, "compute") else sample, dtype=float)
                options["stats"] = (float(sample.mean()), float(sample.std() or 1.0))
        options.pop("storage_options", None)
        return BlockConfig(pixel_size_angstrom=self.pixel_size, **options)

    def blocks(self, block_shape: Sequence[int] | None = None, halo: int | None = None) -> list[BlockSpec]:
        """The block plan: Dask chunks (or ``block_shape``) plus a halo."""
        self._check()
        chunks = block_shape or (self._obj.chunks if self._obj.chunks else self._obj.shape)
        return plan_blocks(self._obj.shape, chunks, BlockConfig(1.0).halo if halo is None else halo)

    def _source(self, storage_options):
        source = self._obj.attrs.get("source_store")
        if source and self._obj.attrs.get("level", 0) == 0 and self._obj.attrs.get("units") is not None \
                and self._obj.shape == self._full_shape(source, storage_options):
            return source
        data = self._obj.data
        if hasattr(data, "compute"):
            raise InputError(
                "find_atoms on a lazy array needs it to come straight from a mosaic store "
                "(stemscale.open_mosaic); write it with stemscale.io.write_mosaic first"
            )
        return np.asarray(data)

    @staticmethod
    def _full_shape(source, storage_options):
        from .io.mosaic import open_mosaic_group

        return tuple(open_mosaic_group(source, storage_options=storage_options)["0"].shape)

    def _frame(self, func, meta, block_shape, storage_options, options):
        import dask.dataframe as dd

        config = self.config(storage_options=storage_options, **options)
        specs = plan_blocks(self._obj.shape, block_shape or (self._obj.chunks or self._obj.shape), config.halo)
        source = self._source(storage_options)
        if not isinstance(source, str):
            # In-memory pixels: one shared graph node instead of a copy per block.
            pair = self.find(block_shape=block_shape, storage_options=storage_options, **options)
            return pair[0] if func is _atoms_of else pair[1]
        return dd.from_map(func, specs, source=source, config=config,
                           storage_options=storage_options, meta=meta,
                           divisions=None, enforce_metadata=False)

    def find_atoms(self, *, block_shape: Sequence[int] | None = None,
                   storage_options: dict | None = None, **options: Any):
        """Every atom column, detected and Gaussian-refined: a lazy dask DataFrame.

        Parameters
        ----------
        block_shape
            Core size of the blocks (default: the array's Dask chunks).
        storage_options
            fsspec options when the mosaic lives in object storage.
        **options
            :class:`~stemscale.parallel.BlockConfig` fields (``model``, ``tta``,
            ``device``, ``fit_window`` ...).
        """
        return self._frame(_atoms_of, empty_atoms(), block_shape, storage_options, options)

    def find_defects(self, *, block_shape: Sequence[int] | None = None,
                     storage_options: dict | None = None, **options: Any):
        """Every defect (class, position on its lattice site, score): a lazy dask DataFrame."""
        return self._frame(_defects_of, empty_defects(), block_shape, storage_options, options)

    def find(self, *, block_shape: Sequence[int] | None = None,
             storage_options: dict | None = None, **options: Any):
        """Atoms and defects as two lazy dask DataFrames sharing one detection pass per block.

        Compute them together (``dask.compute(atoms, defects)``) to run each block once.
        """
        import dask
        import dask.dataframe as dd

        config = self.config(storage_options=storage_options, **options)
        specs = plan_blocks(self._obj.shape, block_shape or (self._obj.chunks or self._obj.shape), config.halo)
        source = self._source(storage_options)
        if not isinstance(source, str):
            source = dask.delayed(source, pure=True)
        parts = [dask.delayed(_block_tables, pure=True)(spec, source, config, storage_options)
                 for spec in specs]
        atoms = dd.from_delayed([p[0] for p in parts], meta=empty_atoms(), verify_meta=False)
        defects = dd.from_delayed([p[1] for p in parts], meta=empty_defects(), verify_meta=False)
        return atoms, defects

    def to_tables(self, **kwargs: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Compute atoms and defects together (one detection pass per block)."""
        import dask

        return dask.compute(*self.find(**kwargs))
