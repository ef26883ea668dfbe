"""Adapters between the pipeline runner and library stages that may not exist yet.

Each adapter is the one place where the runner meets a library package's
public API.  When the package does not export what the adapter needs (an
older or partial installation, a stage still being built), the adapter
raises :class:`StageUnavailable` and the runner records the stage as
``skipped`` with the note "stage not available in this version", instead of
failing the whole run.  Errors *inside* an available stage are real errors
and stop the run.

Contracts (what must be importable for a stage to run):

``average``
    ``stemscale.average``: ``screen_defects``, ``select_pristine``,
    ``average_classes``, ``AveragingConfig``, ``ScreeningRules`` (and
    ``detections_from_truth`` for a demo without a defect detector).
``strain``
    ``stemscale.strain``: ``analyse_class`` (and optionally ``MeasureConfig``).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["StageUnavailable", "require", "average_stage", "strain_stage"]


class StageUnavailable(Exception):
    """A stage's library API is missing from this installation (the stage is skipped)."""


def require(module: str, *names: str) -> list[Any]:
    """Import ``names`` from ``module`` or raise :class:`StageUnavailable` saying what is missing."""
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise StageUnavailable(f"stage not available in this version ({module} cannot be "
                               f"imported: {exc})") from None
    missing = [n for n in names if not hasattr(mod, n)]
    if missing:
        raise StageUnavailable(f"stage not available in this version ({module} does not "
                               f"provide {', '.join(missing)})")
    return [getattr(mod, n) for n in names]


def average_stage(*, mosaic: Any, sites: pd.DataFrame, defects: pd.DataFrame, pixel_size: float,
                  shape: tuple[int, int], classes: list[str] | None, options: dict[str, Any],
                  out: Path) -> tuple[Any, pd.DataFrame, dict[str, Any]]:
    """Screen isolated defects and pristine references, then class-average their crops.

    Parameters
    ----------
    mosaic
        The lazy mosaic (:func:`stemscale.io.open_mosaic`).
    sites
        Candidate pristine reference sites (chalcogen columns: ``x_px``, ``y_px``).
    defects
        Detections (``class``, ``x_px``, ``y_px``, optional ``score``).
    pixel_size, shape
        Å per pixel and (height, width) in pixels.
    classes
        Defect classes to average (default: every class in ``defects``).
    options
        Fields of the library's ``AveragingConfig``.
    out
        Run folder; the crop stack goes to ``out / "crops.zarr"``.

    Returns
    -------
    (averaging result, the averaged rows with ``class``, ``cx_px``, ``cy_px``, summary dict)
    """
    screen_defects, select_pristine, average_classes, AveragingConfig, ScreeningRules = require(
        "stemscale.average", "screen_defects", "select_pristine", "average_classes",
        "AveragingConfig", "ScreeningRules")
    rules = ScreeningRules()
    screened = screen_defects(defects, pixel_size_A=pixel_size, mosaic_shape=shape,
                              classes=classes, rules=rules)
    if screened.kept.empty:
        raise StageUnavailable("no defect passed the isolation screening, so there is nothing "
                               f"to average (counts: {screened.counts})")
    pristine = select_pristine(sites, defects, pixel_size_A=pixel_size, mosaic_shape=shape,
                               rules=rules)
    kept = pd.concat([screened.kept.assign(**{"class": screened.kept["class"].astype(str)}),
                      pristine.kept.assign(**{"class": "pristine"})], ignore_index=True)
    result = average_classes(mosaic, kept, pixel_size_A=pixel_size,
                             config=AveragingConfig(**options), stack_url=str(out / "crops.zarr"),
                             screening=screened.counts)
    np.savez_compressed(out / "class_averages.npz", **{c: result.mean(c) for c in result.classes})
    summary = {"screening": screened.counts,
               "averaged": {c: result.count(c) for c in result.classes},
               "class_averages": "class_averages.npz", "crop_stack": "crops.zarr"}
    return result, kept, summary


def strain_stage(*, averages: Any, options: dict[str, Any], out: Path
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Measure every class average against the pristine average, with bootstrap errors.

    Parameters
    ----------
    averages
        The result of :func:`average_stage`.
    options
        Fields of the library's ``MeasureConfig``.
    out
        Run folder; per-class tables go to ``out / "strain"``.

    Returns
    -------
    (class -> the library's measurement object, summary dict)
    """
    (analyse_class,) = require("stemscale.strain", "analyse_class")
    if averages is None:
        raise StageUnavailable("no class averages (the average stage did not run)")
    config = None
    if options:
        (MeasureConfig,) = require("stemscale.strain", "MeasureConfig")
        config = MeasureConfig(**options)
    folder = out / "strain"
    folder.mkdir(exist_ok=True)
    summary: dict[str, Any] = {}
    measured: dict[str, Any] = {}
    if "pristine" not in averages.classes:
        raise StageUnavailable("no pristine reference average, so there is nothing to compare with")
    for cls in averages.classes:
        if cls == "pristine":
            continue
        m = analyse_class(averages, cls, config=config)
        measured[cls] = m
        summary[cls] = m.to_dict() if hasattr(m, "to_dict") else str(m)
        for name in ("table", "profile"):
            table = getattr(m, name, None)
            if isinstance(table, pd.DataFrame):
                table.to_csv(folder / f"{cls}_{name}.csv", index=False)
    return measured, summary
