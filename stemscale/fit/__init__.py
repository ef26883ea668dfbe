"""Batched Gaussian fitting of atom columns: Levenberg-Marquardt for millions of small windows.

The engine mirrors Gpufit's contract (data ``(n_fits, n_pixels)``, start
values, weights, box constraints, a mask of parameters to fit; outputs
parameters, per-fit states, chi-square and iteration counts) and runs

* compiled on the CPU (numba, one small LM per fit, threads over fits),
* on any array-API library (NumPy, torch CPU/CUDA, CuPy) through one portable
  implementation, which is also the reference the others are tested against,
* fused on NVIDIA GPUs (one thread per fit, CuPy RawKernel).

On top: vectorised window extraction, moment start values, covariance and
the Poisson Cramér-Rao bound, neighbour-aware refits for overlapping columns,
and :func:`refine_positions`, which returns a table.
"""

from __future__ import annotations

from .api import FitResult, available_backends, fit_batch
from .initial import estimate_initial
from .models import MODELS, GaussianModel, evaluate, get_model
from .neighbours import WindowFit, fit_windows, fit_with_neighbours, render_peaks, window_bounds
from .refine import refine_positions
from .states import (
    RELIABLE_STATES,
    USABLE_STATES,
    FitState,
    grade_positions,
    is_reliable,
    is_usable,
    state_names,
)
from .uncertainty import covariance, crlb, fisher_information, standard_errors
from .windows import extract_windows, window_origins

__all__ = [
    "FitResult", "fit_batch", "available_backends", "estimate_initial", "MODELS",
    "GaussianModel", "evaluate", "get_model", "WindowFit", "fit_windows", "fit_with_neighbours",
    "render_peaks", "window_bounds", "refine_positions", "FitState", "USABLE_STATES", "is_usable", "RELIABLE_STATES",
    "is_reliable", "grade_positions", "state_names", "covariance", "crlb",
    "fisher_information", "standard_errors", "extract_windows", "window_origins",
]
