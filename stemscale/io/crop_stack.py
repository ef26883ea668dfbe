"""Registered crop stacks on zarr, one array per (class, block), for the bootstrap.

Layout of a stack store::

    <url>/                      zarr v3 group; attrs["stemscale_stack"] = {crop, complete, ...}
    <url>/<class>/<block_key>   float32 (n, crop, crop), one shard per block part
                                attrs: row ids, shifts, orientation verdicts

Each Dask task writes only its own block's arrays, so there are no
concurrent writes to one shard (the data-loss trap of parallel zarr
writes); the group is marked complete by the client after the reduction
has finished, and :class:`CropStack` refuses a stack that is not.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from ..errors import IncompleteMosaicError, InputError, MosaicNotFoundError

if TYPE_CHECKING:
    import zarr

__all__ = ["create_stack", "write_part", "mark_stack_complete", "CropStack"]

_ATTR = "stemscale_stack"


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(name))


def create_stack(url: str | os.PathLike[str], *, crop: int, classes: Sequence[str], overwrite: bool = True,
                 details: dict[str, Any] | None = None) -> None:
    """Create (or reset) an empty stack store for the given classes."""
    import zarr

    root = zarr.open_group(os.fspath(url), mode="w" if overwrite else "w-", zarr_format=3)
    root.attrs[_ATTR] = {"crop": int(crop), "complete": False, "classes": [str(c) for c in classes],
                         **(details or {})}
    for cls in classes:
        root.create_group(_safe(cls))


def write_part(url: str | os.PathLike[str], cls: str, block_key: str, crops: np.ndarray, *,
               row_ids: np.ndarray, shifts: np.ndarray,
               orientation: Sequence[str] | np.ndarray | None = None) -> int:
    """Write one block's registered crops of one class; returns the number written."""
    import zarr

    crops = np.asarray(crops, dtype=np.float32)
    n = len(crops)
    if n == 0:
        return 0
    root = zarr.open_group(os.fspath(url), mode="r+", zarr_format=3)
    group = root.require_group(_safe(cls))
    c = crops.shape[-1]
    chunk = (min(n, 16), c, c)
    arr = group.create_array(
        _safe(block_key), shape=crops.shape, dtype="float32", chunks=chunk,
        shards=(int(np.ceil(n / chunk[0])) * chunk[0], c, c), overwrite=True,
    )
    arr[...] = crops
    arr.attrs["row_ids"] = [int(v) for v in np.asarray(row_ids)]
    arr.attrs["shifts"] = np.asarray(shifts, dtype=float).round(6).tolist()
    if orientation is not None:
        arr.attrs["orientation"] = [str(s) for s in orientation]
    arr.attrs["complete"] = True  # last: a part is whole or flagged
    return n


def mark_stack_complete(url: str | os.PathLike[str], **summary: Any) -> None:
    import zarr

    from .zarr_nodes import json_object

    root = zarr.open_group(os.fspath(url), mode="r+", zarr_format=3)
    attrs = json_object(root.attrs[_ATTR], f"the '{_ATTR}' attribute of '{os.fspath(url)}'")
    attrs.update(summary, complete=True)
    root.attrs[_ATTR] = attrs


@dataclass
class CropStack:
    """Read access to the registered crops of one class, part by part.

    Parts are ordered by block key, so the crop order (and hence any
    bootstrap with a given seed) does not depend on how the reduction ran.
    """

    url: str
    cls: str
    parts: list[str]
    sizes: list[int]
    crop: int

    @classmethod
    def open(cls, url: str | os.PathLike[str], name: str, *, allow_incomplete: bool = False) -> "CropStack":
        import zarr

        from .zarr_nodes import array_at, group_at, json_object

        where = os.fspath(url)
        try:
            root = zarr.open_group(where, mode="r", zarr_format=3)
        except Exception:
            raise MosaicNotFoundError(f"no crop stack at '{where}'") from None
        meta = json_object(root.attrs.get(_ATTR, {}), f"the '{_ATTR}' attribute of '{where}'")
        if not meta:
            raise InputError(f"'{where}' is not a stemscale crop stack (no '{_ATTR}' attributes)")
        if not meta.get("complete") and not allow_incomplete:
            raise IncompleteMosaicError(
                f"crop stack '{where}' was not completed (the averaging run stopped early); rerun it")
        key = _safe(name)
        if key not in root:
            raise InputError(f"crop stack '{where}' has no class {name!r}; it has {meta.get('classes')}")
        group = group_at(root, key, where)
        parts, sizes = [], []
        for part in sorted(group.array_keys()):
            arr = array_at(group, part, where)
            if not arr.attrs.get("complete"):
                raise IncompleteMosaicError(f"crop stack part '{where}/{key}/{part}' is incomplete")
            parts.append(part)
            sizes.append(int(arr.shape[0]))
        return cls(where, name, parts, sizes, int(meta["crop"]))

    def __len__(self) -> int:
        return int(sum(self.sizes))

    def _array(self, part: str) -> zarr.Array:
        import zarr

        return zarr.open_array(os.fspath(self.url), path=f"{_safe(self.cls)}/{part}", mode="r", zarr_format=3)

    def iter_parts(self, pixels: np.ndarray | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_row, crops)`` part by part; ``pixels`` selects flat pixel indices."""
        start = 0
        for part, n in zip(self.parts, self.sizes):
            data = np.asarray(self._array(part)[...], dtype=np.float64)
            data = data.reshape(n, -1) if pixels is None else data.reshape(n, -1)[:, pixels]
            yield start, data
            start += n

    def read(self, pixels: np.ndarray | None = None) -> np.ndarray:
        """All crops as ``(n, n_pixels)`` float64 (selected pixels only, if given)."""
        return np.concatenate([d for _, d in self.iter_parts(pixels)], axis=0) if self.parts else np.zeros((0, 0))

    def row_ids(self) -> np.ndarray:
        return np.concatenate([np.asarray(self._array(p).attrs["row_ids"], dtype=np.int64) for p in self.parts]) \
            if self.parts else np.zeros(0, np.int64)

    def shifts(self) -> np.ndarray:
        return np.concatenate([np.asarray(self._array(p).attrs["shifts"], dtype=float).reshape(-1, 2)
                               for p in self.parts]) if self.parts else np.zeros((0, 2))
