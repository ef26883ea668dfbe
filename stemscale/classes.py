"""Canonical names of atom-column species and defect classes.

Every module (simulator labels, FCN heads, tables, screening) uses these
strings, so a defect class means the same thing everywhere.
"""

from __future__ import annotations

__all__ = ["DEFECT_CLASSES", "DEFECT_DESCRIPTIONS", "SITE_METAL", "SITE_CHALCOGEN", "check_defect_class"]

#: Site kinds of a 2H-MX2 monolayer seen in projection along c.
SITE_METAL = "M"
SITE_CHALCOGEN = "X"

#: Defect classes, in the order of FCN output channels (after background).
DEFECT_CLASSES: tuple[str, ...] = ("SV", "DV", "2Te", "TeSe", "MV", "MSub")

DEFECT_DESCRIPTIONS: dict[str, str] = {
    "SV": "single chalcogen vacancy (one chalcogen left in the X2 column)",
    "DV": "double chalcogen vacancy (empty X2 column)",
    "2Te": "both chalcogens of the column replaced by Te (Te2)",
    "TeSe": "one chalcogen of the column replaced by Te",
    "MV": "metal vacancy",
    "MSub": "metal substitution (e.g. Mo on a W site)",
}


def check_defect_class(name: str) -> str:
    """Return ``name`` if it is a known defect class, else raise a clear error."""
    from .errors import InputError

    if name not in DEFECT_CLASSES:
        raise InputError(
            f"unknown defect class {name!r}; expected one of {', '.join(DEFECT_CLASSES)}"
        )
    return name
