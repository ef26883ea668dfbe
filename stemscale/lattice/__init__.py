"""The 2H-MX2 lattice: materials and their constants (more to come in this package)."""

from __future__ import annotations

from .materials import (
    DEFAULT_MATERIAL,
    MATERIALS,
    PAPER_PIXEL_SIZE_A,
    MaterialSpec,
    column_spacing,
    get_material,
    lattice_constant,
)

__all__ = [
    "DEFAULT_MATERIAL",
    "MATERIALS",
    "PAPER_PIXEL_SIZE_A",
    "MaterialSpec",
    "column_spacing",
    "get_material",
    "lattice_constant",
]
