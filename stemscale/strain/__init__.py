"""Strain around defects from class averages: lattice, column fits, displacements, errors.

* :func:`fit_lattice` / :class:`HexLattice`: the 2H-MX2 reference lattice
  of an average and its ideal sites (from :mod:`stemscale.lattice`,
  re-exported here);
* :func:`fit_columns`: one Gaussian per column (batched LM of
  :mod:`stemscale.fit`) with modelled neighbour tails, refittable for
  bootstrap resamples;
* :class:`StrainGeometry`: spacings, displacements vs pristine, shells,
  bonds, strain of metal triangles, vectorised over bootstrap resamples;
* :func:`analyse_class`: the whole measurement of one class with bootstrap
  standard errors and a continuum (1/r) comparison
  (:func:`fit_centre_of_dilatation`);
* :func:`pair_coupling`: a defect pair's field minus the superposition of
  two single-defect fields, with errors;
* :func:`injected_displacements`: what a simulated class average should show;
* :func:`metal_spacings`: nearest-neighbour metal-metal spacings of the
  pristine part of a frame from its fitted columns (:class:`SpacingResult`).
"""

from __future__ import annotations

from .analysis import ClassStrain, MeasureConfig, analyse_class, bootstrap_positions, measure_average, single_crop_spread
from .columns import NEIGHBOUR_MODELS, ColumnFit, fit_columns
from .continuum import ContinuumFit, fit_centre_of_dilatation
from .coupling import pair_coupling, superposition
from .geometry import StrainGeometry, match_sites
from ..lattice import HexLattice, defect_site_shift, find_peaks, fit_lattice
from .spacing import SpacingResult, metal_spacings
from .truth import injected_displacements, mean_site_displacements

__all__ = [
    "ClassStrain", "MeasureConfig", "analyse_class", "bootstrap_positions", "measure_average",
    "single_crop_spread", "NEIGHBOUR_MODELS", "ColumnFit", "fit_columns", "ContinuumFit",
    "fit_centre_of_dilatation", "StrainGeometry", "match_sites", "HexLattice", "defect_site_shift",
    "find_peaks", "fit_lattice", "injected_displacements", "mean_site_displacements",
    "pair_coupling", "superposition", "SpacingResult", "metal_spacings",
]
