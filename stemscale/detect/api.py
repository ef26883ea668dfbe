"""``detect``: one call from an image to defect and atom-column tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from ..errors import InputError
from .inference import check_image, check_pixel_size, predict_proba, resample_image
from .postprocess import MIN_DEFECT_AREA, find_columns, find_defects
from .weights import LoadedModel, ModelRef, get_model

__all__ = ["Detections", "detect"]


@dataclass
class Detections:
    """Result of :func:`detect`.

    Attributes
    ----------
    defects
        One row per defect: ``class``, ``x_px``, ``y_px``, ``x_A``, ``y_A``,
        ``score``, ``area`` (pixels of the input image).
    columns
        One row per atom column: ``x_px``, ``y_px``, ``x_A``, ``y_A``,
        ``site``, ``label``, ``score``, ``area``.
    proba
        Stitched class probabilities (n_classes, H, W) at the model's pixel
        size, when requested.
    classes
        Names of the probability channels.
    zoom
        Model pixels per input pixel (1.0 when not resampled).
    """

    defects: pd.DataFrame
    columns: pd.DataFrame
    classes: tuple[str, ...]
    pixel_size_angstrom: float
    zoom: float = 1.0
    proba: np.ndarray | None = None
    model: dict = field(default_factory=dict)


def detect(
    image: np.ndarray,
    pixel_size_angstrom: float,
    *,
    model: str | Path | ModelRef | LoadedModel | None = None,
    tta: bool = True,
    device: str | torch.device | None = "cpu",
    resample: bool = False,
    window: int = 256,
    overlap: int = 64,
    batch_size: int | None = None,
    amp: bool = False,
    min_area: int = MIN_DEFECT_AREA,
    stats: tuple[float, float] | None = None,
    return_proba: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Detections:
    """Find and classify defects and atom columns in a HAADF-STEM image.

    Parameters
    ----------
    image
        2-D array (any size), detector counts or any linear intensity.
    pixel_size_angstrom
        Pixel size of ``image`` in Å.
    model
        Shipped model name, manifest path, :class:`ModelRef` or loaded model
        (default: the shipped WSe2 model).
    tta
        8x dihedral test-time augmentation.
    device
        ``"cpu"`` or ``"cuda[:i]"``.
    resample
        Resample an image whose pixel size differs from the model's by more
        than 10 %; without it such an image is refused.
    window, overlap
        Sliding-window side and overlap in pixels (model pixels).
    batch_size
        Windows per forward pass (default: from free memory on CUDA).
    amp
        float16 autocast on CUDA.
    min_area
        Smallest defect region kept, in model pixels.  The default is half
        the area of a training label blob (38 px, as in the paper's labels):
        smaller regions are noise far more often than defects.  The paper
        used 10 px.
    stats
        ``(mean, std)`` for standardisation, e.g. mosaic-wide values so that
        every block of a mosaic is normalised alike.
    return_proba
        Keep the probability maps in the result.
    progress
        Called as ``progress(done, total)`` with the sliding windows classified so far and
        in all (see :func:`~stemscale.detect.inference.predict_proba`); the first call,
        ``done = 0``, comes after any resampling.
    """
    img = check_image(image)
    loaded = model if isinstance(model, LoadedModel) else get_model(model, device=device)
    zoom = check_pixel_size(pixel_size_angstrom, loaded.pixel_size_angstrom, resample=resample)
    work = resample_image(img, zoom) if zoom != 1.0 else img
    if min(work.shape) < 8:
        raise InputError(f"image too small after resampling: {work.shape}")
    proba = predict_proba(work, loaded, tta=tta, window=window, overlap=overlap,
                          batch_size=batch_size, amp=amp, stats=stats, progress=progress)
    defects = find_defects(proba, loaded.classes, min_area=min_area)
    columns = find_columns(proba, loaded.classes)
    # back to input pixels: output pixel centre j lies at input (j + 0.5) / z - 0.5
    zy, zx = work.shape[0] / img.shape[0], work.shape[1] / img.shape[1]
    for df in (defects, columns):
        if zoom != 1.0:
            df["x_px"] = (df["x_px"] + 0.5) / zx - 0.5
            df["y_px"] = (df["y_px"] + 0.5) / zy - 0.5
            df["area"] = np.round(df["area"] / (zx * zy)).astype(np.int64)
        df["x_A"] = df["x_px"] * pixel_size_angstrom
        df["y_A"] = df["y_px"] * pixel_size_angstrom
    defects = defects[["class", "x_px", "y_px", "x_A", "y_A", "score", "area"]]
    columns = columns[["x_px", "y_px", "x_A", "y_A", "site", "label", "score", "area"]]
    return Detections(
        defects=defects, columns=columns, classes=tuple(loaded.classes),
        pixel_size_angstrom=float(pixel_size_angstrom), zoom=float(zoom),
        proba=proba if return_proba else None,
        model={"name": loaded.manifest.name, "sha256": loaded.manifest.sha256},
    )
