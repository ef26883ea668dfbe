"""The calls from the pipeline runner into the averaging and strain libraries.

Each adapter is the one place where the runner meets a library package's
public API; the packages are dependencies, imported directly, so an API that
is missing is a programming error that stops the run.  A stage that has
nothing to work on (no defect passed the screening, no averages to measure)
raises :class:`StageUnavailable`: the runner records it as ``skipped`` with
the reason and goes on.  A missing third-party module is never a skip:
:func:`missing_dependency` turns it into an error naming the module and, for
an optional extra of stemscale, the ``pip install`` that provides it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import StemscaleError

if TYPE_CHECKING:
    from ..average import AveragingResult
    from ..strain import ClassStrain

__all__ = ["MissingDependencyError", "StageFailed", "StageUnavailable", "average_stage", "missing_dependency",
           "strain_stage"]

#: Top-level module -> the optional extra of stemscale that installs it (pyproject.toml).
OPTIONAL_EXTRAS = {
    "cupy": "cuda12", "cupyx": "cuda12", "dask_cuda": "gpu", "rmm": "gpu",
    "dask_jobqueue": "deploy", "dask_kubernetes": "deploy", "kubernetes": "deploy",
    "ase": "ase",
}


class StageUnavailable(Exception):
    """A stage has nothing to work on (e.g. no defects to average): it is recorded as skipped.

    Never raised for a missing module or API: those are errors.
    """


class StageFailed(StemscaleError, RuntimeError):
    """A stage of a pipeline failed; the report of the stages that did run was still written.

    The message is one line naming the stage, the reason and the report; the stage's own
    error is the ``__cause__``.
    """

    def __init__(self, message: str, *, stage: str, reason: str, folder: Path,
                 report: Path | None = None) -> None:
        super().__init__(message)
        self.stage, self.reason, self.folder, self.report = stage, reason, folder, report


class MissingDependencyError(StemscaleError, ImportError):
    """A stage needs a module that is not installed (the run fails, naming it)."""


def missing_dependency(exc: ModuleNotFoundError, stage: str) -> Exception:
    """The error to raise for ``exc`` escaping ``stage``.

    A third-party module becomes a :class:`MissingDependencyError` naming the
    module and the ``pip install`` that provides it; a missing stemscale module
    is a programming error and is returned unchanged.
    """
    name = exc.name or ""
    top = name.partition(".")[0]
    if not name or top == "stemscale":
        return exc
    extra = OPTIONAL_EXTRAS.get(top)
    how = ("pip install 'stemscale[cuda12]' (or 'stemscale[cuda13]' for CUDA 13)"
           if extra == "cuda12" else f"pip install 'stemscale[{extra}]'" if extra else
           f"it is a dependency of stemscale; reinstall it (pip install {top})")
    return MissingDependencyError(f"stage '{stage}' needs the module '{name}', which is not "
                                  f"installed: {how}", name=name)


def average_stage(*, mosaic: Any, sites: pd.DataFrame, defects: pd.DataFrame, pixel_size: float,
                  shape: tuple[int, int], classes: list[str] | None, options: dict[str, Any],
                  out: Path) -> tuple[AveragingResult, pd.DataFrame, dict[str, Any]]:
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
        Fields of :class:`stemscale.average.AveragingConfig` (checked when the pipeline
        file was read).
    out
        Run folder; the crop stack goes to ``out / "crops.zarr"``.

    Returns
    -------
    (averaging result, the averaged rows with ``class``, ``cx_px``, ``cy_px``, summary dict)
    """
    from ..average import AveragingConfig, ScreeningRules, screen_defects, select_pristine
    from ..parallel.averaging import average_classes

    rules = ScreeningRules()
    config = AveragingConfig(**options)
    margin = config.crop_margin_px  # crops that cannot be cut with their margin are screened out
    screened = screen_defects(defects, pixel_size_A=pixel_size, mosaic_shape=shape,
                              classes=classes, rules=rules, margin_px=margin)
    if screened.kept.empty:
        raise StageUnavailable("no defect passed the isolation screening, so there is nothing "
                               f"to average (counts: {screened.counts})")
    pristine = select_pristine(sites, defects, pixel_size_A=pixel_size, mosaic_shape=shape,
                               rules=rules, margin_px=margin)
    kept = pd.concat([screened.kept.assign(**{"class": screened.kept["class"].astype(str)}),
                      pristine.kept.assign(**{"class": "pristine"})], ignore_index=True)
    result = average_classes(mosaic, kept, pixel_size_A=pixel_size,
                             config=config, stack_url=str(out / "crops.zarr"),
                             screening=screened.counts)
    means: dict[str, Any] = {c: result.mean(c) for c in result.classes}
    np.savez_compressed(out / "class_averages.npz", **means)
    summary = {"screening": screened.counts,
               "averaged": {c: result.count(c) for c in result.classes},
               "class_averages": "class_averages.npz", "crop_stack": "crops.zarr"}
    return result, kept, summary


def strain_stage(*, averages: AveragingResult | None, options: dict[str, Any], out: Path
                 ) -> tuple[dict[str, ClassStrain], dict[str, Any]]:
    """Measure every class average against the pristine average, with bootstrap errors.

    Parameters
    ----------
    averages
        The result of :func:`average_stage`.
    options
        Fields of :class:`stemscale.strain.MeasureConfig` (checked when the pipeline file
        was read).
    out
        Run folder; per-class tables go to ``out / "strain"``.

    Returns
    -------
    (class -> the library's measurement object, summary dict)
    """
    from ..strain import MeasureConfig, analyse_class

    if averages is None:
        raise StageUnavailable("no class averages (the average stage did not run)")
    config = MeasureConfig(**options) if options else None
    folder = out / "strain"
    folder.mkdir(exist_ok=True)
    summary: dict[str, Any] = {}
    measured: dict[str, ClassStrain] = {}
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
