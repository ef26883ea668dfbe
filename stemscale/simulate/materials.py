"""Materials, species and the detected cross-section of each atom.

Image model: a pixel at ``p`` records

    counts(p) = dose * pixel_area * sum_a sigma_a * PSF(p - r_a)

with the PSF normalised to unit integral (Å⁻²), so ``sigma_a`` (Å²) is the
cross-section of atom ``a`` for scattering into the annular detector, and
``sigma_a * PSF(0)`` is the fraction of a pixel's incident electrons that an
isolated atom detects when the probe sits on it.

Calibration.  80 kV multislice of WSe2 into a 63-200 mrad detector puts
about 3 % of a pixel's incident electrons on a W column centre, 2 % on Se2,
1 % on a single Se and 4.5 % on Te2.  The cross-sections are set once from
the peak of the *default* probe (:class:`~stemscale.simulate.probe.Microscope`
with its defaults, no scan distortion):

    sigma_W  = 0.030 / PSF0,   sigma_Se = 0.010 / PSF0,   sigma_Te = 0.0225 / PSF0,

(PSF0 ≈ 0.49 Å⁻², hence sigma_W ≈ 0.061 Å²).  Other elements follow the
Z^n law through Se and W, n = ln 3 / ln(74/34) ≈ 1.41 (Mo ≈ 1.35 %, S ≈ 0.35 %
per atom).  Because the cross-sections stay fixed when aberrations change,
a blurred probe lowers the peaks while conserving the total signal, as in a
real microscope.  Columns in a lattice read slightly more than the
isolated-column numbers because neighbouring probe tails add up.  The same
cross-sections are used at other voltages and detector angles (an
approximation: pass ``Sample(cross_sections_A2=...)`` to recalibrate).
"""

from __future__ import annotations

import math
from functools import lru_cache

from ..errors import InputError
from ..lattice.materials import MATERIALS, MaterialSpec

__all__ = [
    "MaterialSpec",
    "MATERIALS",
    "ATOMIC_NUMBER",
    "PEAK_FRACTION",
    "Z_EXPONENT",
    "cross_section",
    "column_species",
    "METALS",
]

#: Detected fraction at an isolated atom's centre with the default probe (the calibration points).
PEAK_FRACTION: dict[str, float] = {"W": 0.030, "Se": 0.010, "Te": 0.0225}

#: Exponent of the Z^n law used for other elements (fixed by W and Se).
Z_EXPONENT = math.log(0.030 / 0.010) / math.log(74 / 34)

ATOMIC_NUMBER: dict[str, int] = {
    "H": 1, "B": 5, "C": 6, "N": 7, "O": 8, "F": 9, "Si": 14, "P": 15, "S": 16, "Cl": 17,
    "Ti": 22, "V": 23, "Cr": 24, "Mn": 25, "Fe": 26, "Co": 27, "Ni": 28, "Cu": 29, "Zn": 30,
    "Ga": 31, "Ge": 32, "As": 33, "Se": 34, "Nb": 41, "Mo": 42, "Ru": 44, "Rh": 45, "Pd": 46,
    "Ag": 47, "In": 49, "Sn": 50, "Sb": 51, "Te": 52, "I": 53, "Hf": 72, "Ta": 73, "W": 74,
    "Re": 75, "Os": 76, "Ir": 77, "Pt": 78, "Au": 79, "Pb": 82, "Bi": 83,
}

#: Elements treated as metal sites when a user structure is projected into columns.
METALS = frozenset(
    {"Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Nb", "Mo", "Ru", "Rh", "Pd", "Ag",
     "Hf", "Ta", "W", "Re", "Os", "Ir", "Pt", "Au", "Sn", "Ga", "In"}
)


@lru_cache(maxsize=1)
def _default_peak() -> float:
    from .probe import Microscope, probe_kernel

    return probe_kernel(Microscope()).peak


def atomic_number(species: str) -> int:
    """Atomic number of an element symbol (ASE's table when a symbol is not built in)."""
    if species in ATOMIC_NUMBER:
        return ATOMIC_NUMBER[species]
    try:
        from ase.data import atomic_numbers
    except ImportError:  # pragma: no cover - ase is optional
        atomic_numbers = {}
    if species in atomic_numbers:
        return int(atomic_numbers[species])
    raise InputError(f"unknown chemical element {species!r} in the structure")


def cross_section(species: str, overrides: dict[str, float] | None = None) -> float:
    """Detected cross-section (Å²) of one atom of ``species`` (see the module docstring)."""
    if overrides and species in overrides:
        return float(overrides[species])
    peak = _default_peak()
    if species in PEAK_FRACTION:
        return PEAK_FRACTION[species] / peak
    z = atomic_number(species)
    return PEAK_FRACTION["Se"] / peak * (z / 34.0) ** Z_EXPONENT


def column_species(atoms: list[str] | tuple[str, ...]) -> str:
    """Name of a column from its atoms: heavier first, counts as suffix ("Se2", "TeSe", "W", "")."""
    if not atoms:
        return ""
    counts: dict[str, int] = {}
    for a in atoms:
        counts[a] = counts.get(a, 0) + 1
    order = sorted(counts, key=lambda s: (-atomic_number(s), s))
    return "".join(s + (str(counts[s]) if counts[s] > 1 else "") for s in order)
