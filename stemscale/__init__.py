"""stemscale: picometre strain maps around single-atom defects in 2D materials.

From one HAADF-STEM frame on a laptop to terabyte mosaics on a GPU cluster:
lazy zarr mosaics, FCN defect detection, batched Gaussian fitting, class
averaging with sub-picometre error bars, on Dask.

The package is layered (``docs/architecture.md``): the numeric core
(:mod:`stemscale.simulate`, :mod:`stemscale.lattice`, :mod:`stemscale.detect`,
:mod:`stemscale.fit`, :mod:`stemscale.average`, :mod:`stemscale.strain`) needs
no Dask, zarr or xarray; :mod:`stemscale.io` reads and writes stores;
:mod:`stemscale.parallel` runs both on Dask.  Importing this root package is
cheap: the names below that need the I/O or Dask layers load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    CorruptBlockError,
    IncompleteMosaicError,
    InputError,
    MetadataError,
    MosaicNotFoundError,
    StemscaleError,
)
from .metadata import AcquisitionMetadata

if TYPE_CHECKING:  # pragma: no cover
    from .io import MosaicInfo, open_mosaic
    from .parallel import average_classes, simulate_mosaic

#: Names loaded on first access: (module, attribute).
_LAZY = {
    "open_mosaic": ("stemscale.io", "open_mosaic"),
    "MosaicInfo": ("stemscale.io", "MosaicInfo"),
    "simulate_mosaic": ("stemscale.parallel", "simulate_mosaic"),
    "average_classes": ("stemscale.parallel", "average_classes"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        # Whoever reaches for a mosaic wants DataArray.stem registered too.
        importlib.import_module("stemscale.accessor")
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'stemscale' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "__version__",
    "open_mosaic",
    "MosaicInfo",
    "simulate_mosaic",
    "average_classes",
    "AcquisitionMetadata",
    "StemscaleError",
    "InputError",
    "MetadataError",
    "MosaicNotFoundError",
    "IncompleteMosaicError",
    "CorruptBlockError",
]
