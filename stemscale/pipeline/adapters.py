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
    ``average_classes``, ``AveragingConfig``, ``ScreeningRules``.
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


def average_stage(*, mosaic: Any, atoms: pd.DataFrame, defects: pd.DataFrame, pixel_size: float,
                  shape: tuple[int, int], classes: list[str] | None, options: dict[str, Any],
                  out: Path) -> tuple[Any, dict[str, Any]]:
    """Screen isolated defects and pristine references, then class-average their crops.

    Parameters
    ----------
    mosaic
        The lazy mosaic (:func:`stemscale.io.open_mosaic`).
    atoms, defects
        The run's tables.
    pixel_size, shape
        Å per pixel and (height, width) in pixels.
    classes
        Defect classes to average (default: every detected class).
    options
        Fields of the library's ``AveragingConfig``.
    out
        Run folder; the crop stack goes to ``out / "crops.zarr"``.

    Returns
    -------
    (averaging result, summary dict)
    """
    screen_defects, select_pristine, average_classes, AveragingConfig, ScreeningRules = require(
        "stemscale.average", "screen_defects", "select_pristine", "average_classes",
        "AveragingConfig", "ScreeningRules")
    if defects.empty:
        raise StageUnavailable("no defects were detected (the peaks detector finds columns only), "
                               "so there is nothing to average")
    rules = ScreeningRules()
    screened = screen_defects(defects, pixel_size_A=pixel_size, mosaic_shape=shape,
                              classes=classes, rules=rules)
    chalcogen = atoms[atoms["site"] == "X"] if "site" in atoms else atoms
    pristine = select_pristine(chalcogen, defects, pixel_size_A=pixel_size, mosaic_shape=shape,
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
    return result, summary


def strain_stage(*, averages: Any, options: dict[str, Any], out: Path) -> dict[str, Any]:
    """Measure every class average against the pristine average, with bootstrap errors.

    Parameters
    ----------
    averages
        The result of :func:`average_stage`.
    options
        Fields of the library's ``MeasureConfig``.
    out
        Run folder; per-class tables go to ``out / "strain"``.
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
    for cls in averages.classes:
        if cls == "pristine":
            continue
        measured = analyse_class(averages, cls, config=config)
        summary[cls] = measured.to_dict() if hasattr(measured, "to_dict") else str(measured)
        for name in ("table", "sites", "shells", "profile"):
            table = getattr(measured, name, None)
            if isinstance(table, pd.DataFrame):
                table.to_csv(folder / f"{cls}_{name}.csv", index=False)
    return summary
