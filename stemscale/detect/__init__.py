"""Defect and atom-column detection with a fully convolutional network (ResUNet).

Public API
----------
detect
    Image (any size) + pixel size -> defect table and atom-column table.
get_model, model_ref, available_models
    Shipped, digest-verified weights with a per-process cache.
predict_proba
    Tiled, optionally 8x test-time-augmented class probabilities.
find_defects, find_columns
    Probability maps -> tables (connected components, centroids).
detection_scores, confusion_matrix, column_scores, match_points
    One-to-one matching within 7.5 px and per-class precision/recall/F1.
ResUNet, ModelConfig
    The network.
train, TrainConfig, load_train_config
    Training on simulated frames.
"""

from __future__ import annotations

from .api import Detections, detect
from .config import TrainConfig, load_train_config
from .inference import check_pixel_size, predict_proba, resample_image, standardise
from .metrics import column_scores, confusion_matrix, detection_scores, match_points, sum_scores
from .model import OUTPUT_CLASSES, ModelConfig, ResUNet, count_parameters
from .postprocess import DEFECT_SITE, find_columns, find_defects
from .weights import (
    DEFAULT_MODEL,
    LoadedModel,
    ModelManifest,
    ModelRef,
    WeightsIntegrityError,
    available_models,
    clear_cache,
    get_model,
    model_for_material,
    model_ref,
    write_model,
)


def train(*args, **kwargs):
    """Train a detection model; see :func:`stemscale.detect.training.train`."""
    from .training import train as _train

    return _train(*args, **kwargs)


__all__ = [
    "Detections", "detect", "TrainConfig", "load_train_config", "check_pixel_size",
    "predict_proba", "resample_image", "standardise", "column_scores", "confusion_matrix",
    "detection_scores", "match_points", "sum_scores", "OUTPUT_CLASSES", "ModelConfig", "ResUNet",
    "count_parameters", "DEFECT_SITE", "find_columns", "find_defects", "DEFAULT_MODEL",
    "LoadedModel", "ModelManifest", "ModelRef", "WeightsIntegrityError", "available_models",
    "clear_cache", "get_model", "model_for_material", "model_ref", "write_model", "train",
]
