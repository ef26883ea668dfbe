"""Scoring a detection model on held-out simulated frames.

Evaluation frames come from their own seed stream, so their seeds, random
microscopes (aberrations, source size), distortions, rotations and backgrounds
were never seen in training.  Defect concentrations default to the
simulator's standard WSe2 sample.  Scores follow the paper: per-class
one-to-one matching within 7.5 px, precision, recall and F1, plus a
class-agnostic confusion matrix and counts of missed and spurious columns.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from ..classes import DEFECT_CLASSES
from ..lattice import PAPER_PIXEL_SIZE_A
from .api import detect
from .config import DataSection
from .data import SimulatedFrames, seed_for
from .metrics import column_scores, confusion_matrix, detection_scores, sum_scores
from .weights import LoadedModel, ModelRef, get_model

__all__ = ["EVAL_SEED", "eval_data_section", "simulate_eval_frame", "evaluate_frames",
           "dose_curve"]

#: Seed stream of evaluation frames (training uses 1, validation 2 by default).
EVAL_SEED = 7_300_001


def eval_data_section(
    material: str = "WSe2", pixel_size_angstrom: float = PAPER_PIXEL_SIZE_A,
    concentrations: dict[str, float] | None = None, **overrides: Any,
) -> DataSection:
    """Frame parameters for evaluation: random microscope, distortions, rotation, background.

    ``concentrations`` (fractions of sites) default to the simulator's
    standard sample.
    """
    from ..simulate import DEFAULT_CONCENTRATIONS

    conc = dict(DEFAULT_CONCENTRATIONS if concentrations is None else concentrations)
    settings: dict[str, Any] = {
        "material": material, "pixel_size_angstrom": pixel_size_angstrom,
        "concentrations": {k: [float(v), float(v)] for k, v in conc.items()},
        "background_fraction": [0.0, 0.006], "background_variation": [0.0, 0.5]}
    return DataSection(**(settings | overrides))


def simulate_eval_frame(index: int, *, shape=(1024, 1024), dose: float = 7300.0,
                        data: DataSection | None = None, seed_base: int = EVAL_SEED):
    """Held-out frame ``index`` (a :class:`~stemscale.simulate.Frame`)."""
    src = SimulatedFrames(data or eval_data_section())
    return src.simulate(seed_for(seed_base, index), shape=tuple(shape), dose=dose)


def _true_defects(truth: pd.DataFrame) -> pd.DataFrame:
    t = truth[truth["defect"].astype(str) != ""]
    return pd.DataFrame({"class": t["defect"].astype(str).to_numpy(),
                         "x_px": t["x_px"].to_numpy(), "y_px": t["y_px"].to_numpy()})


def evaluate_frames(
    model: str | ModelRef | LoadedModel | None,
    frames: Iterable,
    *,
    tta: bool = True,
    device: str = "cpu",
    radius: float = 7.5,
    border: float = 8.0,
    classes: Sequence[str] = DEFECT_CLASSES,
    min_area: int | None = None,
    progress: Callable[[int], None] | None = None,
    window_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Detect on each frame and pool the scores.

    Parameters
    ----------
    frames
        Simulated frames (``image``, ``truth``, ``metadata.pixel_size_angstrom``).
    border
        Objects closer than this (px) to the frame edge are not scored (a
        column cut by the edge is only partly visible).
    min_area
        Smallest defect region kept (default: :func:`~stemscale.detect.detect`'s).
    progress
        Called with the number of frames scored so far, after each frame.
    window_progress
        Passed to :func:`~stemscale.detect.detect` for each frame: called as
        ``window_progress(done, total)`` with the frame's sliding windows.

    Returns
    -------
    dict with ``scores`` (per-class DataFrame), ``confusion`` (DataFrame),
    ``columns`` (missed / spurious counts, summed), ``frames``, ``megapixels``,
    ``seconds``.
    """
    loaded = model if isinstance(model, LoadedModel) else get_model(model, device=device)
    per_class, cms, cols = [], [], []
    mpx, seconds, n = 0.0, 0.0, 0
    for fr in frames:
        t0 = time.perf_counter()
        extra: dict[str, Any] = {} if min_area is None else {"min_area": min_area}
        found = detect(fr.image, fr.metadata.pixel_size_angstrom, model=loaded, tta=tta,
                       resample=True, progress=window_progress, **extra)
        seconds += time.perf_counter() - t0
        mpx += fr.image.size / 1e6
        n += 1
        true = _true_defects(fr.truth)
        kw = dict(radius=radius, shape=fr.image.shape, border=border)
        per_class.append(detection_scores(found.defects, true, classes=classes, **kw))
        cms.append(confusion_matrix(found.defects, true, classes=classes, **kw))
        cols.append(column_scores(found.columns, fr.truth, **kw))
        if progress is not None:
            progress(n)
    if n == 0:
        raise ValueError("no frames to evaluate")
    colsum: dict[str, Any] = {k: int(sum(c[k] for c in cols))
                              for k in ("n_true", "n_pred", "matched", "missed", "spurious")}
    colsum["site_accuracy"] = float(np.average([c["site_accuracy"] for c in cols],
                                               weights=[c["matched"] for c in cols]))
    colsum["rms_position_error_px"] = float(np.sqrt(np.average(
        [c["rms_position_error_px"] ** 2 for c in cols], weights=[c["matched"] for c in cols])))
    return {"scores": sum_scores(per_class), "confusion": sum(cms), "columns": colsum,
            "frames": n, "megapixels": mpx, "seconds": seconds}


def dose_curve(
    model: str | ModelRef | LoadedModel | None,
    doses: Sequence[float],
    *,
    n_frames: int = 4,
    shape=(1024, 1024),
    tta: bool = False,
    data: DataSection | None = None,
    seed_base: int = EVAL_SEED + 1,
    progress: Callable[[int], None] | None = None,
    **kw: Any,
) -> pd.DataFrame:
    """Per-class F1 against dose; the same held-out scenes at every dose.

    ``progress`` is called with the number of frames scored so far over all doses
    (``len(doses) * n_frames`` in all); other keywords go to :func:`evaluate_frames`.
    """
    rows = []
    for k, dose in enumerate(doses):
        frames = (simulate_eval_frame(i, shape=shape, dose=dose, data=data, seed_base=seed_base)
                  for i in range(n_frames))
        on_frame = None
        if progress is not None:
            def on_frame(done: int, offset: int = k * n_frames) -> None:
                progress(offset + done)
        res = evaluate_frames(model, frames, tta=tta, progress=on_frame, **kw)
        s = res["scores"]
        rows.append({"dose_e_per_A2": float(dose),
                     **{f"f1_{c}": float(s.loc[c, "f1"]) for c in s.index},
                     **{f"n_{c}": int(s.loc[c, "n_true"]) for c in s.index},
                     "columns_missed": res["columns"]["missed"],
                     "columns_spurious": res["columns"]["spurious"]})
    return pd.DataFrame(rows)
