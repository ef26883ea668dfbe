"""The 2H-MX2 lattice: materials and their constants, orientation, reference lattice, sublattices.

The bottom of the science packages: :mod:`stemscale.simulate`,
:mod:`stemscale.detect`, :mod:`stemscale.average`, :mod:`stemscale.strain`
and the orchestration layers take lattice constants, pixel sizes and
lattice geometry from here.  It depends on NumPy, SciPy, pandas and
scikit-image, on :mod:`stemscale.errors`, and (for the Gaussian refinement
in :func:`fit_lattice`, imported lazily) on :mod:`stemscale.fit`.

Public API
----------
MaterialSpec, MATERIALS, get_material, DEFAULT_MATERIAL
    Metal, chalcogen, lattice constant ``a`` and default dopants of each
    2H-MX2 monolayer (:mod:`stemscale.lattice.materials`).
lattice_constant, column_spacing
    ``a`` and the projected column spacing ``a / sqrt(3)`` (Å) of a material.
PAPER_PIXEL_SIZE_A
    Pixel size (Å) of the reference paper's frames (20.74 pm).
lattice_angle, angle_from_spectrum
    Lattice orientation (modulo 60 degrees) from the sixfold symmetry of
    the power spectrum (:mod:`stemscale.lattice.angle`).
HexLattice, fit_lattice, defect_site_shift, find_peaks
    The reference lattice of a crop and its ideal M and X sites
    (:mod:`stemscale.lattice.hexagonal`).
classify_sublattices, lattice_constant_px, robust_z, neighbour_pairs
    Metal / chalcogen labels of fitted columns from their neighbours'
    brightness (:mod:`stemscale.lattice.sublattice`).
"""

from __future__ import annotations

from .angle import angle_from_spectrum, lattice_angle
from .hexagonal import HexLattice, defect_site_shift, find_peaks, fit_lattice
from .materials import (
    DEFAULT_MATERIAL,
    MATERIALS,
    PAPER_PIXEL_SIZE_A,
    MaterialSpec,
    column_spacing,
    get_material,
    lattice_constant,
)
from .sublattice import classify_sublattices, lattice_constant_px, neighbour_pairs, robust_z

__all__ = [
    "DEFAULT_MATERIAL",
    "MATERIALS",
    "PAPER_PIXEL_SIZE_A",
    "MaterialSpec",
    "column_spacing",
    "get_material",
    "lattice_constant",
    "angle_from_spectrum",
    "lattice_angle",
    "HexLattice",
    "defect_site_shift",
    "find_peaks",
    "fit_lattice",
    "classify_sublattices",
    "lattice_constant_px",
    "neighbour_pairs",
    "robust_z",
]
