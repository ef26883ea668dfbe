"""OME-NGFF 0.5 ``multiscales`` metadata for 2-D mosaics in Å.

Pure functions that build and parse plain dictionaries, so they are trivially
testable.  Conventions (see ``DESIGN.md``):

* axes ``y`` then ``x``, both of type ``space`` with unit ``angstrom``;
* level ``k`` is level 0 averaged over ``2**k x 2**k`` pixels, stored at path
  ``str(k)``;
* the ``translation`` of a level is the position, in Å, of the *centre* of its
  pixel (0, 0).  Level 0's translation is the mosaic's position (e.g. a stage
  position); a coarser level's first pixel averages level-0 pixels
  ``0 .. 2**k - 1``, so its centre sits ``(2**k - 1) / 2`` level-0 pixels further.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from ..errors import MetadataError

NGFF_VERSION = "0.5"
SPACE_UNIT = "angstrom"
IMAGE_PATH = "0"

__all__ = [
    "NGFF_VERSION",
    "SPACE_UNIT",
    "IMAGE_PATH",
    "level_path",
    "level_transform",
    "multiscales_metadata",
    "pixel_size_from_attrs",
    "translation_from_attrs",
    "level_paths_from_attrs",
]


def level_path(level: int) -> str:
    """zarr path of resolution level ``level`` inside a mosaic group."""
    return str(int(level))


def level_transform(
    pixel_size: float, translation: tuple[float, float], level: int
) -> tuple[float, tuple[float, float]]:
    """Pixel size (Å) and pixel-(0, 0)-centre translation (Å, (y, x)) of a level.

    Parameters
    ----------
    pixel_size
        Level-0 pixel size in Å.
    translation
        Level-0 translation in Å as (y, x).
    level
        Resolution level (0 = full resolution, ``k`` = binned by ``2**k``).
    """
    factor = 2**level
    shift = pixel_size * (factor - 1) / 2.0
    return pixel_size * factor, (float(translation[0]) + shift, float(translation[1]) + shift)


def multiscales_metadata(
    pixel_size: float,
    *,
    name: str = "mosaic",
    translation: tuple[float, float] = (0.0, 0.0),
    levels: int = 1,
) -> dict[str, Any]:
    """Build the NGFF 0.5 ``ome`` attribute block for a 2-D mosaic.

    Parameters
    ----------
    pixel_size
        Pixel size in Å of level 0.
    name
        Name of the image.
    translation
        Position of pixel (0, 0)'s centre in Å, as (y, x).
    levels
        Number of resolution levels; level ``k`` has pixel size ``pixel_size * 2**k``.

    Returns
    -------
    dict
        The value to store under the group's ``ome`` attribute.
    """
    pixel_size = _check_pixel_size(pixel_size, "pixel_size")
    if int(levels) < 1:
        raise MetadataError(f"levels must be >= 1, got {levels!r}")
    ty, tx = (float(t) for t in translation)
    if not (math.isfinite(ty) and math.isfinite(tx)):
        raise MetadataError(f"translation must be two finite numbers of Å, got {translation!r}")
    datasets = []
    for level in range(int(levels)):
        scale, (ly, lx) = level_transform(pixel_size, (ty, tx), level)
        datasets.append(
            {
                "path": level_path(level),
                "coordinateTransformations": [
                    {"type": "scale", "scale": [scale, scale]},
                    {"type": "translation", "translation": [ly, lx]},
                ],
            }
        )
    return {
        "version": NGFF_VERSION,
        "multiscales": [
            {
                "name": name,
                "axes": [
                    {"name": "y", "type": "space", "unit": SPACE_UNIT},
                    {"name": "x", "type": "space", "unit": SPACE_UNIT},
                ],
                "datasets": datasets,
                "type": "mean (2x2 binning)" if levels > 1 else "none",
            }
        ],
    }


def _check_pixel_size(value: Any, what: str) -> float:
    try:
        size = float(value)
    except (TypeError, ValueError):
        raise MetadataError(f"{what} must be a number of Å per pixel, got {value!r}") from None
    if not math.isfinite(size) or size <= 0:
        raise MetadataError(
            f"{what} must be a positive, finite number of Å per pixel, got {value!r}"
        )
    return size


def _multiscale(attrs: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    ome = attrs.get("ome")
    if not isinstance(ome, Mapping) or "multiscales" not in ome:
        raise MetadataError(
            f"{where} has no OME-NGFF 'multiscales' metadata, so its pixel size is unknown; "
            "write it with stemscale.io.write_mosaic / create_mosaic or ingest the raw file "
            "with 'stemscale ingest'"
        )
    try:
        multiscale = ome["multiscales"][0]
        axes = [axis["name"] for axis in multiscale["axes"]]
        multiscale["datasets"][0]
    except (KeyError, IndexError, TypeError) as exc:
        raise MetadataError(
            f"{where} has malformed OME-NGFF multiscales metadata ({exc!r})"
        ) from None
    if axes[-2:] != ["y", "x"]:
        raise MetadataError(f"{where}: expected NGFF axes ending in ['y', 'x'], found {axes}")
    _unit_factor(multiscale, where)
    return multiscale


# NGFF (UDUNITS-2) length units stemscale converts to Å.
_NGFF_ANGSTROM = {"angstrom": 1.0, "picometer": 0.01, "nanometer": 10.0, "micrometer": 1e4,
                  "millimeter": 1e7, "meter": 1e10}


def _unit_factor(multiscale: Mapping[str, Any], where: str) -> float:
    """Å per unit of the spatial axes (stemscale writes 'angstrom'; others are converted)."""
    units = [axis.get("unit") for axis in multiscale["axes"][-2:]]
    if units[0] != units[1] or units[0] not in _NGFF_ANGSTROM:
        raise MetadataError(
            f"{where}: expected both spatial axes in one length unit ({SPACE_UNIT}, nanometer, "
            f"picometer, ...), found units {units}"
        )
    return _NGFF_ANGSTROM[units[0]]


def _dataset(attrs: Mapping[str, Any], where: str, level: int) -> Mapping[str, Any]:
    datasets = _multiscale(attrs, where)["datasets"]
    if not 0 <= level < len(datasets):
        raise MetadataError(
            f"{where} has {len(datasets)} resolution level(s) (0..{len(datasets) - 1}); "
            f"level {level} does not exist"
        )
    return datasets[level]


def level_paths_from_attrs(attrs: Mapping[str, Any], where: str = "store") -> list[str]:
    """zarr paths of every resolution level, finest first."""
    return [str(d["path"]) for d in _multiscale(attrs, where)["datasets"]]


def pixel_size_from_attrs(attrs: Mapping[str, Any], where: str = "store", level: int = 0) -> float:
    """Read a level's pixel size (Å) from a group's NGFF attributes.

    Axes in another NGFF length unit (``nanometer``, ``picometer`` ...) are
    converted to Å, so NGFF images written by other tools open too.

    Raises
    ------
    MetadataError
        When the metadata is missing or malformed, naming ``where``.
    """
    dataset = _dataset(attrs, where, level)
    factor = _unit_factor(_multiscale(attrs, where), where)
    for transform in dataset.get("coordinateTransformations", []):
        if transform.get("type") == "scale":
            scale = transform["scale"][-2:]
            if not math.isclose(scale[0], scale[1], rel_tol=1e-6):
                raise MetadataError(f"{where}: non-square pixels {scale} are not supported")
            return _check_pixel_size(scale[-1], f"{where} pixel size") * factor
    raise MetadataError(f"{where}: NGFF dataset '{dataset.get('path')}' has no 'scale' transform")


def translation_from_attrs(
    attrs: Mapping[str, Any], where: str = "store", level: int = 0
) -> tuple[float, float]:
    """Read a level's translation (Å, as (y, x)); zero when absent."""
    dataset = _dataset(attrs, where, level)
    factor = _unit_factor(_multiscale(attrs, where), where)
    for transform in dataset.get("coordinateTransformations", []):
        if transform.get("type") == "translation":
            ty, tx = transform["translation"][-2:]
            return float(ty) * factor, float(tx) * factor
    return 0.0, 0.0
