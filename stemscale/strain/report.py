"""``summary.json``: every number of a class-averaging run with its standard error."""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping

import numpy as np
import pandas as pd

__all__ = ["summary", "write_summary"]


def _clean(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, np.ndarray):
        return _clean(v.tolist())
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return None if not math.isfinite(f) else f
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if isinstance(v, pd.DataFrame):
        return _clean(v.to_dict(orient="records"))
    return v


def summary(averages: Any, measured: Mapping[str, Any], *, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A JSON-ready record of a run.

    Parameters
    ----------
    averages
        :class:`~stemscale.average.AveragingResult`.
    measured
        Class name -> :class:`~stemscale.strain.analysis.ClassStrain`.
    extra
        Anything else to keep (precision vs N, error budget, truth comparison ...).
    """
    out: dict[str, Any] = {"units": {"lengths": "pm unless the key says A (angstrom) or px", "strain": "dimensionless"},
                           "averaging": averages.summary(), "classes": {}}
    for cls, cs in measured.items():
        out["classes"][cls] = {
            "n_class": cs.n_def, "n_pristine": cs.n_pri, "n_boot": cs.n_boot,
            "ww_spacing": cs.spacings(),
            "shells": cs.shells(),
            "columns": cs.columns()[["site", "n1", "n2", "x_A", "y_A", "r_A", "ux_pm", "ux_se_pm", "uy_pm", "uy_se_pm",
                                     "uxy_cov_pm2", "u_r_pm", "u_r_se_pm", "u_t_pm", "u_t_se_pm"]],
            "bonds": cs.bonds(),
            "strain": cs.strain(),
            "continuum": {k: v.to_dict() for k, v in cs.continuum.items()},
        }
    if extra:
        out.update(extra)
    return _clean(out)


def write_summary(path: str | os.PathLike[str], averages: Any, measured: Mapping[str, Any], *,
                  extra: Mapping[str, Any] | None = None) -> str:
    """Write :func:`summary` as JSON (atomically: a temporary file renamed into place)."""
    rec = summary(averages, measured, extra=extra)
    tmp = os.fspath(path) + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(rec, fh, indent=1, allow_nan=False)
    os.replace(tmp, path)
    return os.fspath(path)
