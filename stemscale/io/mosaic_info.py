"""One reader of what a mosaic store says about itself: :class:`MosaicInfo`.

Shape, pixel size, translation, pyramid levels, chunk and shard shapes,
acquisition metadata and completeness are parsed here once, instead of by
every command and stage that opens a mosaic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import MetadataError
from ..metadata import AcquisitionMetadata
from .store import PathLike, describe

__all__ = ["MosaicInfo"]


@dataclass(frozen=True)
class MosaicInfo:
    """What a mosaic's metadata says (no pixels are read).

    Attributes
    ----------
    url
        Where the mosaic lives (path or fsspec URL), as given.
    shape
        ``(height, width)`` of level 0 in pixels.
    dtype
        Pixel type of level 0.
    chunks, shards
        zarr chunk and shard shapes of level 0 (``shards == chunks`` when
        the array is not sharded).
    pixel_size_angstrom
        Å per pixel of level 0.
    translation_angstrom
        ``(y, x)`` position in Å of pixel ``(0, 0)``.
    level_paths
        Array paths of the pyramid levels, full resolution first.
    acquisition
        Acquisition metadata stored with the mosaic (``None`` if absent).
    complete
        Whether the writer finished the mosaic.
    storage_options
        fsspec options used to open it (never written anywhere).
    """

    url: str
    shape: tuple[int, int]
    dtype: str
    chunks: tuple[int, int]
    shards: tuple[int, int]
    pixel_size_angstrom: float
    translation_angstrom: tuple[float, float] = (0.0, 0.0)
    level_paths: tuple[str, ...] = ("0",)
    acquisition: AcquisitionMetadata | None = None
    complete: bool = True
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def array_path(self) -> str:
        """Path of the full-resolution array inside the group."""
        return self.level_paths[0]

    @property
    def material(self) -> str | None:
        """The material named in the acquisition metadata, if any."""
        return self.acquisition.material if self.acquisition is not None else None

    @property
    def levels(self) -> int:
        """Number of pyramid levels."""
        return len(self.level_paths)

    @property
    def where(self) -> str:
        """The URL as shown in messages (credentials stripped)."""
        return describe(self.url)

    @classmethod
    def read(cls, url: PathLike, *, storage_options: Mapping[str, Any] | None = None,
             group: Any = None) -> "MosaicInfo":
        """Read a mosaic's metadata.

        Parameters
        ----------
        url
            Mosaic store (path or URL).
        storage_options
            fsspec options for remote stores.
        group
            An already opened zarr group of the mosaic (skips opening it again).

        Raises
        ------
        MosaicNotFoundError, MetadataError
            Nothing at ``url``, not a mosaic, or metadata without a valid pixel size.
        """
        from .mosaic import is_complete, open_mosaic_group, shard_shape
        from .ngff import level_paths_from_attrs, pixel_size_from_attrs, translation_from_attrs

        options = dict(storage_options or {})
        if group is None:
            group = open_mosaic_group(url, storage_options=options or None)
        where = describe(url)
        attrs = dict(group.attrs)
        paths = tuple(level_paths_from_attrs(attrs, where))
        try:
            array = group[paths[0]]
        except KeyError:
            raise MetadataError(f"'{where}' names level array '{paths[0]}' in its metadata, "
                                "but the store has no such array") from None
        if array.ndim != 2:
            raise MetadataError(f"'{where}' holds a {array.ndim}-D array; a mosaic is 2-D (y, x)")
        acq = attrs.get("stemscale", {}).get("acquisition")
        acquisition = None
        if isinstance(acq, Mapping) and acq.get("pixel_size_angstrom") is not None:
            acquisition = AcquisitionMetadata.from_attrs(acq)
        shape = (int(array.shape[0]), int(array.shape[1]))
        chunks = (int(array.chunks[0]), int(array.chunks[1]))
        shards = tuple(int(n) for n in shard_shape(array))
        return cls(
            url=str(url), shape=shape, dtype=str(array.dtype), chunks=chunks,
            shards=(shards[0], shards[1]),
            pixel_size_angstrom=pixel_size_from_attrs(attrs, where),
            translation_angstrom=translation_from_attrs(attrs, where),
            level_paths=paths, acquisition=acquisition, complete=is_complete(group),
            storage_options=options,
        )

    @classmethod
    def from_dataarray(cls, data: Any, pixel_size_angstrom: float) -> "MosaicInfo":
        """Describe an in-memory or lazy ``DataArray`` (dims ``y, x``) that is not a store.

        Parameters
        ----------
        data
            The array; its ``y``/``x`` coordinates (Å) give the translation,
            its ``attrs`` the acquisition metadata when they hold a pixel size.
        pixel_size_angstrom
            Å per pixel.
        """
        translation = (0.0, 0.0)
        if "x" in data.coords and "y" in data.coords and data.sizes.get("x", 0) and data.sizes.get("y", 0):
            translation = (float(data["y"][0]), float(data["x"][0]))
        chunks = tuple(int(c[0]) for c in data.chunks) if data.chunks else tuple(data.shape)
        fields_ = AcquisitionMetadata.__dataclass_fields__
        acq = {k: v for k, v in data.attrs.items() if k in fields_}
        acq["pixel_size_angstrom"] = float(pixel_size_angstrom)
        return cls(
            url=str(data.attrs.get("source_store") or "<in memory>"),
            shape=(int(data.shape[0]), int(data.shape[1])), dtype=str(data.dtype),
            chunks=(chunks[0], chunks[1]), shards=(chunks[0], chunks[1]),
            pixel_size_angstrom=float(pixel_size_angstrom), translation_angstrom=translation,
            acquisition=AcquisitionMetadata.from_attrs(acq),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (no storage options)."""
        return {
            "url": self.where, "shape": list(self.shape), "dtype": self.dtype,
            "chunks": list(self.chunks), "shards": list(self.shards),
            "pixel_size_angstrom": self.pixel_size_angstrom,
            "translation_angstrom": list(self.translation_angstrom),
            "levels": self.levels, "material": self.material, "complete": self.complete,
        }
