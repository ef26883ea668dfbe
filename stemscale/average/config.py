"""Settings and result of the class averaging (pure data, no Dask)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import InputError
from ..lattice import DEFAULT_MATERIAL, lattice_constant
from .accumulator import ClassAccumulator

__all__ = ["AveragingConfig", "AveragingResult"]


@dataclass(frozen=True)
class AveragingConfig:
    """Settings of the class averaging (distances in Å where physical).

    Attributes
    ----------
    crop_px
        Crop edge (even); ``None`` takes the screening's crop (128 px at 20.74 pm).
    margin_px
        Extra pixels cut around each crop for sub-pixel shifting; raised to what the
        registration settings can shift (:attr:`crop_margin_px`) when smaller.
    lattice_constant_A
        Nominal lattice constant (orientation checks, lattice fits); default:
        the default material's (WSe2, :func:`stemscale.lattice.lattice_constant`).
    mask_radius_A
        Radius of the central disc hidden during registration (the defect's
        own field and contrast), 0 to register on the whole crop.
    upsample, register_iterations, max_shift_px
        Registration settings (:func:`~stemscale.average.registration.register`).
    shift_method
        ``"fourier"`` or ``"spline"`` sub-pixel shifting.
    orientation
        ``"map"``: rotate inverted-domain crops by 180 degrees and reject
        rotated grains; ``"reject"``: reject both; ``"off"``: no check.
    angle_tolerance_deg
        Largest lattice-angle difference of a kept crop.
    min_correlation
        Reject crops whose registered correlation with the reference is
        lower (wrong detections, contamination); ``None`` keeps all.
    n_reference, reference_iterations
        Crops sampled per class to build the reference, and its refinement rounds.
    recentre
        Put the defect's lattice site on the reference's centre pixel.
    reference_symmetry
        ``"C3v"``, ``"C3"`` or ``None``: symmetrise the reference (not the data).
    passes
        Distributed registration passes; pass ``k > 1`` uses the average of
        pass ``k - 1`` as its reference.
    split_every
        Fan-in of the tree reduction.
    seed
        Seed of the reference sample.
    """

    crop_px: int | None = None
    margin_px: int = 8
    lattice_constant_A: float = lattice_constant(DEFAULT_MATERIAL)
    mask_radius_A: float = 4.0
    upsample: int = 20
    register_iterations: int = 2
    max_shift_px: float = 4.0
    shift_method: str = "fourier"
    orientation: str = "map"
    angle_tolerance_deg: float = 3.0
    min_correlation: float | None = None
    n_reference: int = 256
    reference_iterations: int = 3
    recentre: bool = True
    reference_symmetry: str | None = "C3v"
    passes: int = 1
    split_every: int = 4
    seed: int = 0

    @property
    def largest_shift_px(self) -> float:
        """The largest shift (px, per axis) :func:`~stemscale.average.registration.register`
        can return with these settings.

        The first pass takes the integer correlation peak within ``max_shift_px`` and
        refines it by at most 0.75 px (upsampled grid) plus half a grid step (parabola);
        every further pass adds a residual searched within 1 px, refined the same way.
        """
        refine = 0.75 + 0.5 / self.upsample
        return math.ceil(self.max_shift_px) + refine + (self.register_iterations - 1) * (1.0 + refine)

    @property
    def crop_margin_px(self) -> int:
        """Margin (px) cut around every crop: ``margin_px``, or more when the registration
        settings can shift a crop further (so no registered shift ever exceeds it)."""
        return max(int(self.margin_px), math.ceil(self.largest_shift_px) + 1)

    def __post_init__(self) -> None:
        if self.orientation not in ("map", "reject", "off"):
            raise InputError(f"AveragingConfig.orientation must be 'map', 'reject' or 'off', got {self.orientation!r}")
        if self.shift_method not in ("fourier", "spline"):
            raise InputError(f"AveragingConfig.shift_method must be 'fourier' or 'spline', got {self.shift_method!r}")
        if self.margin_px < 2:
            raise InputError(f"AveragingConfig.margin_px must be >= 2 (sub-pixel shifts need room), got {self.margin_px}")
        if self.crop_px is not None and (self.crop_px < 16 or self.crop_px % 2):
            raise InputError(f"AveragingConfig.crop_px must be an even number >= 16, got {self.crop_px}")
        if self.split_every < 2:
            raise InputError(f"AveragingConfig.split_every must be >= 2, got {self.split_every}")
        if self.passes < 1:
            raise InputError(f"AveragingConfig.passes must be >= 1, got {self.passes}")
        if self.reference_symmetry not in (None, "C3", "C3v"):
            raise InputError(f"AveragingConfig.reference_symmetry must be None, 'C3' or 'C3v', got {self.reference_symmetry!r}")


@dataclass
class AveragingResult:
    """Class averages and everything needed to measure and bootstrap them.

    Attributes
    ----------
    accumulator
        Combined :class:`~stemscale.average.accumulator.ClassAccumulator`.
    references
        Class -> the reference the crops were registered to.
    pixel_size_A, crop_px
        Sampling and crop edge.
    stack_url
        Where the registered crops were written (``None`` if not kept).
    config
        The settings used.
    screening
        Screening counts, when known.
    stack_opener
        ``opener(stack_url, cls)`` returns the class's crop stack (set by the
        code that wrote it, e.g. :class:`stemscale.io.CropStack.open`).
    """

    accumulator: ClassAccumulator
    references: dict[str, np.ndarray]
    pixel_size_A: float
    crop_px: int
    stack_url: str | None
    config: AveragingConfig
    screening: dict[str, Any] = field(default_factory=dict)
    stack_opener: Callable[[str, str], Any] | None = field(default=None, repr=False, compare=False)

    @property
    def classes(self) -> list[str]:
        return self.accumulator.classes

    def mean(self, cls: str) -> np.ndarray:
        return self.accumulator.mean(cls)

    def count(self, cls: str) -> int:
        m = self.accumulator.moments.get(cls)
        return int(m.count) if m else 0

    def stack(self, cls: str) -> Any:
        """The registered crops of class ``cls`` (for the bootstrap)."""
        if self.stack_url is None or self.stack_opener is None:
            raise InputError("bootstrap errors need the crop stack: average with stack_url=..., "
                             "or pass bootstrap=False")
        return self.stack_opener(self.stack_url, cls)

    def summary(self) -> dict[str, Any]:
        return {
            "pixel_size_A": self.pixel_size_A,
            "crop_px": self.crop_px,
            "stack_url": self.stack_url,
            "config": asdict(self.config),
            "screening": self.screening,
            "classes": self.accumulator.summary(),
        }
