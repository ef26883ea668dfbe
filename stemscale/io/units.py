"""Length units found in microscope files, converted to Å."""

from __future__ import annotations

import math
from typing import Any

from ..errors import MetadataError

__all__ = ["ANGSTROM_PER_UNIT", "to_angstrom", "is_uncalibrated"]

# Å per unit; the keys are the spellings seen in TIFF (ImageJ/OME), DM, Velox and
# Berkeley EMD files after lower-casing.
ANGSTROM_PER_UNIT: dict[str, float] = {
    "pm": 0.01,
    "picometer": 0.01,
    "picometre": 0.01,
    "å": 1.0,
    "a": 1.0,
    "ang": 1.0,
    "angstrom": 1.0,
    "angstroms": 1.0,
    "nm": 10.0,
    "n_m": 10.0,
    "nanometer": 10.0,
    "nanometre": 10.0,
    "µm": 1e4,  # micro sign U+00B5
    "μm": 1e4,  # Greek mu U+03BC
    "um": 1e4,
    "u_m": 1e4,
    "micron": 1e4,
    "microns": 1e4,
    "micrometer": 1e4,
    "micrometre": 1e4,
    "mm": 1e7,
    "m": 1e10,
    "meter": 1e10,
    "metre": 1e10,
}

_UNCALIBRATED = {"", "px", "pixel", "pixels", "<undefined>", "undefined", "none", "a.u.", "au"}


def _clean(unit: Any) -> str:
    text = "" if unit is None else str(unit)
    text = text.strip().strip("[]").strip()
    # ImageJ writes "\u00B5m" literally; Python may already have decoded it.
    text = text.replace("\\u00B5", "µ").replace("\\u00b5", "µ")
    return text.lower()


def is_uncalibrated(unit: Any) -> bool:
    """True when ``unit`` says "pixels" or says nothing (no physical calibration)."""
    return _clean(unit) in _UNCALIBRATED


def to_angstrom(value: Any, unit: Any, what: str) -> float:
    """Convert a length ``value`` in ``unit`` to Å.

    Parameters
    ----------
    value
        The number (strings such as ``"2.5e-11"`` are accepted).
    unit
        Its unit as written in a file (``"nm"``, ``"µm"``, ``"[n_m]"``, ``"m"`` ...).
    what
        Description used in error messages (file and field).

    Raises
    ------
    MetadataError
        Unknown, reciprocal or missing unit; non-numeric or non-finite value.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise MetadataError(f"{what}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise MetadataError(f"{what}: {value!r} is not a finite number")
    key = _clean(unit)
    if key in ANGSTROM_PER_UNIT:
        return number * ANGSTROM_PER_UNIT[key]
    if "/" in key or key.endswith("^-1") or key.endswith("⁻¹"):
        raise MetadataError(
            f"{what} is in reciprocal units ({unit!r}): this is a diffraction pattern or an "
            "FFT, not a real-space image"
        )
    try:  # fall back on pint (a rosettasciio dependency) for unusual spellings
        import pint

        registry: pint.UnitRegistry[Any] = pint.UnitRegistry()
        quantity = number * registry.parse_units(str(unit).strip("[]"))
        return float(quantity.to("angstrom").magnitude)
    except Exception:
        raise MetadataError(
            f"{what}: unknown length unit {unit!r}; expected pm, Å, nm, µm, mm or m"
        ) from None
