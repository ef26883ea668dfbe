"""stemscale: picometre strain maps around single-atom defects in 2D materials.

From one HAADF-STEM frame on a laptop to terabyte mosaics on a GPU cluster:
lazy zarr mosaics, FCN defect detection, batched Gaussian fitting, class
averaging with sub-picometre error bars, on Dask.
"""

from ._version import __version__
from .errors import (
    CorruptBlockError,
    IncompleteMosaicError,
    InputError,
    MetadataError,
    MosaicNotFoundError,
    StemscaleError,
)
from . import accessor as _accessor  # noqa: F401  (registers DataArray.stem)
from .io import open_mosaic
from .metadata import AcquisitionMetadata

__all__ = [
    "__version__",
    "open_mosaic",
    "AcquisitionMetadata",
    "StemscaleError",
    "InputError",
    "MetadataError",
    "MosaicNotFoundError",
    "IncompleteMosaicError",
    "CorruptBlockError",
]
