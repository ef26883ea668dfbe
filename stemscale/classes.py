"""Canonical names of atom-column species and defect classes.

Every module (simulator labels, FCN heads, tables, screening) uses these
strings, so a defect class means the same thing everywhere.
"""

from __future__ import annotations

__all__ = ["DEFECT_CLASSES", "DEFECT_DESCRIPTIONS", "DEFECT_SITES", "SITE_METAL", "SITE_CHALCOGEN",
           "check_defect_class", "defect_site"]

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

#: The lattice site each defect class sits on (the site a class average is centred on).
DEFECT_SITES: dict[str, str] = {
    "SV": SITE_CHALCOGEN, "DV": SITE_CHALCOGEN, "2Te": SITE_CHALCOGEN, "TeSe": SITE_CHALCOGEN,
    "MV": SITE_METAL, "MSub": SITE_METAL,
}


def defect_site(name: str) -> str:
    """The lattice site (``"M"`` or ``"X"``) a class average of ``name`` is centred on.

    A pair configuration (``"MV+MV(1,0)"``) is centred on one of its defects; anything
    else (the pristine references, chalcogen columns) on a chalcogen site.
    """
    return DEFECT_SITES.get(str(name).split("+", 1)[0], SITE_CHALCOGEN)


def check_defect_class(name: str) -> str:
    """Return ``name`` if it is a known defect class, else raise a clear error."""
    from .errors import InputError

    if name not in DEFECT_CLASSES:
        raise InputError(
            f"unknown defect class {name!r}; expected one of {', '.join(DEFECT_CLASSES)}"
        )
    return name
