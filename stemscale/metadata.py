"""Acquisition metadata carried with every mosaic.

Stored in the zarr group attributes under ``stemscale`` and exposed as the
``attrs`` of the lazy :class:`xarray.DataArray` returned by
:func:`stemscale.open_mosaic`.  Units are in the field names.
"""

from __future__ import annotations

import datetime as _dt
import math
import platform
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from ._version import __version__
from .errors import InputError

__all__ = ["AcquisitionMetadata", "provenance"]


@dataclass(frozen=True)
class AcquisitionMetadata:
    """What a microscopist knows about how a frame or mosaic was recorded.

    Parameters
    ----------
    pixel_size_angstrom
        Size of one pixel in Å (required, > 0).
    high_tension_kv
        Accelerating voltage in kV.
    convergence_mrad
        Probe convergence semi-angle in mrad.
    detector_inner_mrad, detector_outer_mrad
        Annular detector collection angles in mrad.
    dose_e_per_a2
        Incident electron dose per frame in e⁻/Å² (``None`` when unknown).
    material
        Free text, e.g. ``"WSe2"``.
    source
        Where the data came from: a file path, a URL or ``"simulation"``.
    extra
        Anything else worth keeping (JSON-serialisable).
    """

    pixel_size_angstrom: float
    high_tension_kv: float | None = None
    convergence_mrad: float | None = None
    detector_inner_mrad: float | None = None
    detector_outer_mrad: float | None = None
    dose_e_per_a2: float | None = None
    material: str | None = None
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ps = self.pixel_size_angstrom
        if ps is None or not isinstance(ps, (int, float)) or not math.isfinite(ps) or ps <= 0:
            raise InputError(
                f"pixel_size_angstrom must be a positive number of Å per pixel, got {ps!r}"
            )
        if self.dose_e_per_a2 is not None and not (self.dose_e_per_a2 >= 0):
            raise InputError(f"dose_e_per_a2 must be >= 0 e-/Å², got {self.dose_e_per_a2!r}")

    def to_attrs(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (``None`` entries dropped)."""
        return {k: v for k, v in asdict(self).items() if v is not None and v != {}}

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> "AcquisitionMetadata":
        """Inverse of :meth:`to_attrs`; unknown keys go to ``extra``."""
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in attrs.items() if k in known}
        extra = dict(kwargs.pop("extra", {}) or {})
        extra.update({k: v for k, v in attrs.items() if k not in known})
        return cls(**kwargs, extra=extra)


def provenance(**details: Any) -> dict[str, Any]:
    """A provenance record: package version, time, host, plus ``details``.

    ``details`` are recorded without credentials (:func:`stemscale.redact.redact`):
    a URL loses its ``user:password@``, a ``secret`` or ``token`` its value.
    """
    from .redact import redact

    return {
        "software": "stemscale",
        "version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        **redact(details),
    }
