"""Typed access to the nodes and JSON attributes of zarr stores.

zarr's API returns unions: ``group[path]`` is an ``Array`` or a ``Group``, and
an attribute is any JSON value.  These helpers check that a stemscale store
holds what it must hold there and raise a :class:`~stemscale.errors.MetadataError`
naming the store otherwise, so callers get precise types and clear messages.
"""

from __future__ import annotations

from typing import Any, Mapping

import zarr

from ..errors import MetadataError

__all__ = ["array_at", "group_at", "json_object"]


def array_at(group: zarr.Group, path: str, where: str) -> zarr.Array:
    """The array at ``path`` inside ``group`` (of the store ``where``)."""
    node = group[path]
    if not isinstance(node, zarr.Array):
        raise MetadataError(f"'{where}' has a zarr group at '{path}' where an array was expected")
    return node


def group_at(group: zarr.Group, path: str, where: str) -> zarr.Group:
    """The group at ``path`` inside ``group`` (of the store ``where``)."""
    node = group[path]
    if not isinstance(node, zarr.Group):
        raise MetadataError(f"'{where}' has a zarr array at '{path}' where a group was expected")
    return node


def json_object(value: object, what: str) -> dict[str, Any]:
    """A copy of an attribute that must be a JSON object (``what`` names it for messages)."""
    if not isinstance(value, Mapping):
        raise MetadataError(f"{what} is a {type(value).__name__}; expected a JSON object")
    return dict(value)
