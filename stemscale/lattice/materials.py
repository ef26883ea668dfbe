"""2H-MX2 monolayers: which atoms, which lattice constant, which column spacing.

The one home of lattice constants and the paper's sampling; every module
that needs ``a``, the projected column spacing ``a / sqrt(3)`` or the
reference pixel size takes them from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InputError

__all__ = [
    "DEFAULT_MATERIAL",
    "MATERIALS",
    "MaterialSpec",
    "PAPER_PIXEL_SIZE_A",
    "column_spacing",
    "get_material",
    "lattice_constant",
]

#: Pixel size (Å) of the reference paper's frames (20.74 pm); rules "in pixels" scale from it.
PAPER_PIXEL_SIZE_A = 0.2074

#: Material assumed when none is named (the reference paper's WSe2).
DEFAULT_MATERIAL = "WSe2"


@dataclass(frozen=True)
class MaterialSpec:
    """A 2H-MX2 monolayer: metal, chalcogen, lattice constant and default dopants.

    ``substituent`` replaces chalcogens for the classes "2Te" (both atoms of
    the column) and "TeSe" (one atom); ``metal_substituent`` replaces the
    metal for "MSub".  In WSe2 these are Te and Mo; in MoS2 they are Se and
    W, so there "2Te"/"TeSe" mean a double/single heavier-chalcogen
    substitution (Se2 / SeS columns), as in Se-implanted MoS2.
    """

    metal: str
    chalcogen: str
    a: float
    substituent: str
    metal_substituent: str

    @property
    def column_spacing(self) -> float:
        """Nearest projected column distance ``a / sqrt(3)`` (Å): metal to chalcogen column."""
        return float(self.a) / math.sqrt(3.0)


MATERIALS: dict[str, MaterialSpec] = {
    "WSe2": MaterialSpec("W", "Se", 3.297, "Te", "Mo"),
    "MoS2": MaterialSpec("Mo", "S", 3.16, "Se", "W"),
    "WS2": MaterialSpec("W", "S", 3.153, "Se", "Mo"),
    "MoSe2": MaterialSpec("Mo", "Se", 3.288, "Te", "W"),
}


def get_material(name: str | None = None) -> MaterialSpec:
    """The :class:`MaterialSpec` of ``name`` (default WSe2), with a clear error for unknown names."""
    key = DEFAULT_MATERIAL if name is None else str(name)
    if key in MATERIALS:
        return MATERIALS[key]
    folded = {k.lower(): k for k in MATERIALS}
    if key.lower() in folded:
        return MATERIALS[folded[key.lower()]]
    raise InputError(f"unknown material {name!r}; known materials: {', '.join(sorted(MATERIALS))}")


def lattice_constant(material: str | None = None) -> float:
    """In-plane lattice constant ``a`` (Å) of a material (default WSe2)."""
    return float(get_material(material).a)


def column_spacing(material: str | None = None) -> float:
    """Nearest projected column distance ``a / sqrt(3)`` (Å) of a material (default WSe2)."""
    return get_material(material).column_spacing
