"""Displacement fields around defects: radial functions of distance.

A field maps the distance ``d`` (Å) between a defect and an atom column to
a radial displacement (pm, positive = away from the defect).  Any callable
that accepts a NumPy array works; its range is read from a ``cutoff_A``
attribute (columns beyond it are not moved) and must be finite so that
tiles of a mosaic can be simulated independently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from ..errors import InputError

__all__ = ["RadialField", "OscillatingRadialField", "oscillating_radial_field", "field_cutoff"]


class RadialField(Protocol):
    """Radial displacement (pm) as a function of distance (Å); zero beyond ``cutoff_A``."""

    cutoff_A: float

    def __call__(self, distance_A: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class OscillatingRadialField:
    """u(d) = A cos(2π (d - d0) / λ) exp(-(d - d0) / ξ) · taper(d), in pm.

    Alternating rings of expansion (u > 0) and contraction (u < 0) whose
    amplitude decays over ξ, like those reported around Se vacancies in
    WSe2.  A raised-cosine taper over the last 20 % brings it smoothly to
    zero at ``cutoff_A``.
    """

    amplitude_pm: float = 3.0
    wavelength_A: float = 6.0
    decay_A: float = 10.0
    first_shell_A: float = 1.9
    cutoff_A: float = 30.0

    def __post_init__(self) -> None:
        for name in ("amplitude_pm", "wavelength_A", "decay_A", "first_shell_A", "cutoff_A"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputError(f"oscillating_radial_field: {name} must be a finite number, got {value!r}")
        if self.wavelength_A <= 0 or self.decay_A <= 0 or self.cutoff_A <= 0:
            raise InputError("oscillating_radial_field: wavelength_A, decay_A and cutoff_A must be > 0")

    def __call__(self, distance_A: np.ndarray) -> np.ndarray:
        d = np.asarray(distance_A, dtype=np.float64)
        x = d - self.first_shell_A
        u = self.amplitude_pm * np.cos(2 * np.pi * x / self.wavelength_A) * np.exp(-np.maximum(x, 0.0) / self.decay_A)
        t = np.clip((d - 0.8 * self.cutoff_A) / (0.2 * self.cutoff_A), 0.0, 1.0)
        return np.where(d < self.cutoff_A, u * 0.5 * (1 + np.cos(np.pi * t)), 0.0)


def oscillating_radial_field(
    amplitude_pm: float = 3.0,
    wavelength_A: float = 6.0,
    decay_A: float = 10.0,
    first_shell_A: float = 1.9,
    cutoff_A: float = 30.0,
) -> OscillatingRadialField:
    """The default SV field: oscillating expansion/contraction rings of a few pm.

    Parameters
    ----------
    amplitude_pm
        Displacement at the first shell (pm); positive = outward.
    wavelength_A
        Period of the alternation (Å).
    decay_A
        Exponential decay length (Å).
    first_shell_A
        Distance of the first neighbour shell (Å), where the phase starts.
    cutoff_A
        Range beyond which nothing moves (Å).
    """
    return OscillatingRadialField(amplitude_pm, wavelength_A, decay_A, first_shell_A, cutoff_A)


def field_cutoff(field: Callable[[np.ndarray], np.ndarray], cls: str) -> float:
    """The finite range (Å) of a displacement field, with a clear error if it has none."""
    cutoff = getattr(field, "cutoff_A", None)
    if cutoff is None or not isinstance(cutoff, (int, float)) or not math.isfinite(cutoff) or cutoff <= 0:
        raise InputError(
            f"displacement field for {cls!r} needs a finite positive 'cutoff_A' attribute (Å), got {cutoff!r}"
        )
    return float(cutoff)
