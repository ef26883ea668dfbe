"""Class averaging of isolated defects: screening, crops, registration, Dask reduction, bootstrap.

The numerics are pure functions of arrays and tables:

* :func:`screen_defects`, :func:`select_pristine`: which defects are
  isolated and which chalcogen sites are pristine references (rules in Å,
  defaults from the reference paper), with counts of every rejection reason;
* :func:`extract_crops`, :func:`register`, :func:`apply_shifts`: crops,
  sub-pixel registration to a class reference (upsampled cross-correlation,
  iterated, optionally masking the defect), sub-pixel shifting;
* :func:`check_orientation`, :func:`map_orientation`: inverted
  (60-degree / mirror) domains mapped by an exact 180-degree rotation,
  rotated grains rejected; :func:`symmetrise` (C3 / C3v);
* :class:`Moments`, :class:`ClassAccumulator`, :func:`combine`: the monoid
  of per-class sums that makes the averaging a tree reduction;
* :func:`resample_counts`, :func:`bootstrap_means`: vectorised bootstrap;
* :func:`find_pairs`: defect pairs grouped by separation vector up to the
  point group, each crop mapped onto its configuration's orientation.

:func:`stemscale.parallel.average_classes` orchestrates them on Dask (one
task per mosaic block running :func:`register_block`, partial accumulators
combined pairwise, registered crops written to a zarr crop stack per block
for the bootstrap).
"""

from __future__ import annotations

from .accumulator import ClassAccumulator, Moments, combine, combine_all
from .bootstrap import bootstrap_means, precision_slope, resample_counts, standard_error
from .crops import central, extract_crops, rot180
from .pairs import PairsResult, canonical_vector, find_pairs, pair_class_name, transform_crops
from .orientation import OrientationCheck, check_orientation, lattice_angle, map_orientation
from .config import AveragingConfig, AveragingResult
from .reference import RegisteredPart, build_reference, finish_reference, gather_crops, register_block
from .registration import apply_shifts, cross_correlation_shifts, refine_reference, register
from .screening import (
    PAPER_PIXEL_SIZE_A,
    REJECTION_REASONS,
    ScreeningResult,
    ScreeningRules,
    detections_from_truth,
    screen_defects,
    select_pristine,
)
from .symmetry import symmetrise, symmetry_operations

__all__ = [
    "ClassAccumulator", "Moments", "combine", "combine_all",
    "bootstrap_means", "precision_slope", "resample_counts", "standard_error",
    "central", "extract_crops", "rot180",
    "OrientationCheck", "check_orientation", "lattice_angle", "map_orientation",
    "AveragingConfig", "AveragingResult", "RegisteredPart", "build_reference", "finish_reference",
    "gather_crops", "register_block",
    "apply_shifts", "cross_correlation_shifts", "refine_reference", "register",
    "PAPER_PIXEL_SIZE_A", "REJECTION_REASONS", "ScreeningResult", "ScreeningRules",
    "detections_from_truth", "screen_defects", "select_pristine",
    "symmetrise", "symmetry_operations",
    "PairsResult", "canonical_vector", "find_pairs", "pair_class_name", "transform_crops",
]
