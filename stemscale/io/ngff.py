"""OME-NGFF 0.5 metadata for 2-D STEM mosaics.

The mosaic is a zarr v3 group whose ``zarr.json`` attributes hold the NGFF
``ome`` block (axes ``y``, ``x`` in ``angstrom``; one ``scale`` transform per
level) and a ``stemscale`` block with microscope parameters and provenance.
These are plain functions of dictionaries so they are trivially testable.
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
    "multiscales_metadata",
    "pixel_size_from_attrs",
    "translation_from_attrs",
]


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
    _check_pixel_size(pixel_size, "pixel_size")
    datasets = []
    for level in range(levels):
        scale = pixel_size * 2**level
        datasets.append(
            {
                "path": str(level),
                "coordinateTransformations": [
                    {"type": "scale", "scale": [scale, scale]},
                    {"type": "translation", "translation": [float(translation[0]), float(translation[1])]},
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
            }
        ],
    }


def _check_pixel_size(value: Any, what: str) -> float:
    try:
        size = float(value)
    except (TypeError, ValueError):
        raise MetadataError(f"{what} must be a number of Å per pixel, got {value!r}") from None
    if not math.isfinite(size) or size <= 0:
        raise MetadataError(f"{what} must be a positive, finite number of Å per pixel, got {value!r}")
    return size


def _level0(attrs: Mapping[str, Any], where: str) -> dict[str, Any]:
    ome = attrs.get("ome")
    if not isinstance(ome, Mapping) or "multiscales" not in ome:
        raise MetadataError(
            f"{where} has no OME-NGFF 'multiscales' metadata, so its pixel size is unknown; "
            "write it with stemscale.io.create_mosaic or ingest the raw file with "
            "'stemscale ingest'"
        )
    try:
        multiscale = ome["multiscales"][0]
        axes = [axis["name"] for axis in multiscale["axes"]]
        dataset = multiscale["datasets"][0]
    except (KeyError, IndexError, TypeError) as exc:
        raise MetadataError(f"{where} has malformed OME-NGFF multiscales metadata ({exc!r})") from None
    if axes[-2:] != ["y", "x"]:
        raise MetadataError(f"{where}: expected NGFF axes ending in ['y', 'x'], found {axes}")
    units = [axis.get("unit") for axis in multiscale["axes"][-2:]]
    if any(unit != SPACE_UNIT for unit in units):
        raise MetadataError(f"{where}: expected spatial axes in '{SPACE_UNIT}', found units {units}")
    return dataset


def pixel_size_from_attrs(attrs: Mapping[str, Any], where: str = "store") -> float:
    """Read level 0's pixel size (Å) from a group's NGFF attributes.

    Raises
    ------
    MetadataError
        When the metadata is missing or malformed, naming ``where``.
    """
    dataset = _level0(attrs, where)
    for transform in dataset.get("coordinateTransformations", []):
        if transform.get("type") == "scale":
            scale = transform["scale"][-2:]
            if not math.isclose(scale[0], scale[1], rel_tol=1e-6):
                raise MetadataError(f"{where}: non-square pixels {scale} are not supported")
            return _check_pixel_size(scale[-1], f"{where} pixel size")
    raise MetadataError(f"{where}: NGFF dataset '{dataset.get('path')}' has no 'scale' transform")


def translation_from_attrs(attrs: Mapping[str, Any], where: str = "store") -> tuple[float, float]:
    """Read level 0's translation (Å, as (y, x)); zero when absent."""
    dataset = _level0(attrs, where)
    for transform in dataset.get("coordinateTransformations", []):
        if transform.get("type") == "translation":
            ty, tx = transform["translation"][-2:]
            return float(ty), float(tx)
    return 0.0, 0.0
