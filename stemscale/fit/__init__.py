"""Batched Gaussian fitting of atom columns (Levenberg-Marquardt, LSE and Poisson MLE)."""

from __future__ import annotations

from .api import FitResult, available_backends, fit_batch
from .models import MODELS, GaussianModel, evaluate, get_model
from .states import FitState, state_names

__all__ = [
    "FitResult", "fit_batch", "available_backends", "MODELS", "GaussianModel", "evaluate",
    "get_model", "FitState", "state_names",
]
