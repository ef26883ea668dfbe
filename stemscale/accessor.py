"""The ``.stem`` accessor on :class:`xarray.DataArray`: a stateless facade.

>>> mosaic = stemscale.open_mosaic("wse2.zarr")
>>> atoms = mosaic.stem.find_atoms()          # lazy dask DataFrame, one partition per block
>>> atoms.compute()                           # runs on whatever cluster is active

Accessors are re-created for every new xarray object, so nothing here holds
state: every method derives what it needs from the array's ``attrs`` and
composes calls to :mod:`stemscale.io` and :mod:`stemscale.parallel`, which
are imported inside the methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from .errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from .parallel.blocks import BlockSpec
    from .parallel.process import BlockConfig

__all__ = ["StemAccessor"]


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

    def _from_store(self) -> bool:
        return bool(self._obj.attrs.get("source_store")) and self._obj.attrs.get("level", 0) == 0

    def config(self, **options: Any) -> "BlockConfig":
        """The block configuration for this mosaic, with ``options`` overriding defaults."""
        from .io import MosaicInfo
        from .parallel.process import BlockConfig

        self._check()
        storage_options = options.pop("storage_options", None)
        info = MosaicInfo.from_dataarray(self._obj, self.pixel_size)
        if "stats" not in options:
            if self._from_store():
                from .parallel.run import mosaic_statistics

                options["stats"] = mosaic_statistics(self._obj.attrs["source_store"],
                                                     storage_options=storage_options)
            else:
                step = (max(1, self._obj.shape[0] // 512), max(1, self._obj.shape[1] // 512))
                sample = self._obj.data[::step[0], ::step[1]]
                sample = np.asarray(sample.compute() if hasattr(sample, "compute") else sample,
                                    dtype=float)
                options["stats"] = (float(sample.mean()), float(sample.std() or 1.0))
        return BlockConfig.for_mosaic(info, **options)

    def blocks(self, block_shape: Sequence[int] | None = None,
               halo: int | None = None) -> list["BlockSpec"]:
        """The block plan: Dask chunks (or ``block_shape``) plus a halo."""
        from .parallel.blocks import plan_blocks
        from .parallel.process import BlockConfig

        self._check()
        chunks = block_shape or (self._obj.chunks if self._obj.chunks else self._obj.shape)
        return plan_blocks(self._obj.shape, chunks, BlockConfig(1.0).halo if halo is None else halo)

    def _source(self, storage_options: dict[str, Any] | None) -> Any:
        source = self._obj.attrs.get("source_store")
        if source and self._from_store() and self._obj.attrs.get("units") is not None \
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
    def _full_shape(source: str, storage_options: dict[str, Any] | None) -> tuple[int, ...]:
        from .io import MosaicInfo

        return MosaicInfo.read(source, storage_options=storage_options).shape

    def _plan(self, block_shape: Sequence[int] | None, storage_options: dict[str, Any] | None,
              options: dict[str, Any]) -> tuple[Any, list["BlockSpec"], "BlockConfig"]:
        from .parallel.blocks import plan_blocks

        config = self.config(storage_options=storage_options, **options)
        chunks = block_shape or (self._obj.chunks or self._obj.shape)
        specs = plan_blocks(self._obj.shape, chunks, config.halo)
        return self._source(storage_options), specs, config

    def find_atoms(self, *, block_shape: Sequence[int] | None = None,
                   storage_options: dict | None = None, **options: Any) -> Any:
        """Every atom column, detected and Gaussian-refined: a lazy dask DataFrame.

        Parameters
        ----------
        block_shape
            Core size of the blocks (default: the array's Dask chunks).
        storage_options
            fsspec options when the mosaic lives in object storage.
        **options
            :class:`~stemscale.parallel.process.BlockConfig` fields (``model``,
            ``tta``, ``device``, ``fit_window`` ...).
        """
        from .parallel.lazy import lazy_table

        source, specs, config = self._plan(block_shape, storage_options, options)
        return lazy_table("atoms", source, specs, config, storage_options)

    def find_defects(self, *, block_shape: Sequence[int] | None = None,
                     storage_options: dict | None = None, **options: Any) -> Any:
        """Every defect (class, position on its lattice site, score): a lazy dask DataFrame."""
        from .parallel.lazy import lazy_table

        source, specs, config = self._plan(block_shape, storage_options, options)
        return lazy_table("defects", source, specs, config, storage_options)

    def find(self, *, block_shape: Sequence[int] | None = None,
             storage_options: dict | None = None, **options: Any) -> tuple[Any, Any]:
        """Atoms and defects as two lazy dask DataFrames sharing one detection pass per block.

        Compute them together (``dask.compute(atoms, defects)``) to run each block once.
        """
        from .parallel.lazy import lazy_tables

        source, specs, config = self._plan(block_shape, storage_options, options)
        return lazy_tables(source, specs, config, storage_options)

    def to_tables(self, **kwargs: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Compute atoms and defects together (one detection pass per block)."""
        import dask

        atoms, defects = dask.compute(*self.find(**kwargs))
        return atoms, defects
