"""From per-class probability maps to tables of defects and atom columns.

Pixels are assigned their most probable class.  Connected regions of one
site's defect classes (chalcogen: SV, DV, 2Te, TeSe; metal: MV, MSub) become
defects: the class with the largest summed probability over the region wins,
the region's probability-weighted centroid is the position, and regions
smaller than ``min_area`` pixels are dropped (:data:`MIN_DEFECT_AREA`, half
a training label's area; the paper used 10 px).  Atom
columns are found the same way from each site's union of pristine and defect
classes, so every column appears once whatever its class.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from ..classes import DEFECT_CLASSES, SITE_CHALCOGEN, SITE_METAL

__all__ = ["MIN_DEFECT_AREA", "DEFECT_SITE", "find_defects", "find_columns", "DEFECT_COLUMNS",
           "COLUMN_COLUMNS"]

#: Lattice site each defect class sits on.
DEFECT_SITE: dict[str, str] = {
    "SV": SITE_CHALCOGEN, "DV": SITE_CHALCOGEN, "2Te": SITE_CHALCOGEN, "TeSe": SITE_CHALCOGEN,
    "MV": SITE_METAL, "MSub": SITE_METAL,
}

#: Smallest defect region kept by default, in model pixels: half the area of a
#: training label blob (``stemscale.simulate`` labels cover about 38 px, as in
#: the paper).  On held-out validation frames regions below this are mostly
#: noise on pristine columns; true defects cover 35-50 px.
MIN_DEFECT_AREA = 19

DEFECT_COLUMNS = ["class", "x_px", "y_px", "score", "area"]
COLUMN_COLUMNS = ["x_px", "y_px", "site", "label", "score", "area"]

_STRUCTURE = np.ones((3, 3), dtype=bool)  # 8-connectivity


def _regions(
    proba: np.ndarray, labels: np.ndarray, idx: list[int], min_area: int,
    weight_idx: list[int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Components of ``labels in idx``: (y, x, area, summed proba per idx class, mean weight prob)."""
    mask = np.isin(labels, idx)
    lab, n = ndimage.label(mask, structure=_STRUCTURE)
    if n == 0:
        z = np.zeros(0)
        return z, z, z, np.zeros((0, len(idx))), z
    index = np.arange(1, n + 1)
    area = ndimage.sum_labels(np.ones_like(lab, dtype=np.float64), lab, index)
    keep = index[area >= min_area]
    if keep.size == 0:
        z = np.zeros(0)
        return z, z, z, np.zeros((0, len(idx))), z
    sums = np.stack([ndimage.sum_labels(proba[c], lab, keep) for c in idx], axis=1)
    w = proba[weight_idx if weight_idx is not None else idx].sum(axis=0)
    com = np.asarray(ndimage.center_of_mass(w, lab, keep), dtype=np.float64).reshape(-1, 2)
    a = area[keep - 1]
    mean_w = ndimage.sum_labels(w, lab, keep) / a
    return com[:, 0], com[:, 1], a, sums, mean_w


def find_defects(
    proba: np.ndarray, classes: tuple[str, ...] | list[str], *, min_area: int = MIN_DEFECT_AREA,
) -> pd.DataFrame:
    """Defect table from probabilities (n_classes, H, W).

    Returns
    -------
    DataFrame with columns ``class`` (a :data:`~stemscale.classes.DEFECT_CLASSES`
    name), ``x_px``, ``y_px`` (probability-weighted centroid), ``score`` (mean
    probability of the class over the region), ``area`` (pixels).
    """
    classes = list(classes)
    labels = np.argmax(proba, axis=0)
    frames = []
    for site in (SITE_CHALCOGEN, SITE_METAL):
        names = [c for c in DEFECT_CLASSES if DEFECT_SITE[c] == site and c in classes]
        if not names:
            continue
        idx = [classes.index(c) for c in names]
        y, x, area, sums, _ = _regions(proba, labels, idx, min_area)
        if len(y) == 0:
            continue
        win = sums.argmax(axis=1)
        score = sums[np.arange(len(win)), win] / area
        frames.append(pd.DataFrame({
            "class": np.asarray(names, dtype=object)[win], "x_px": x, "y_px": y,
            "score": score, "area": area.astype(np.int64),
        }))
    if not frames:
        return _empty(DEFECT_COLUMNS, {"class": object, "area": np.int64})
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["y_px", "x_px"], ignore_index=True)


def find_columns(
    proba: np.ndarray, classes: tuple[str, ...] | list[str], *, min_area: int = 5,
) -> pd.DataFrame:
    """Atom-column positions (pristine and defective) from probabilities.

    Returns
    -------
    DataFrame with ``x_px``, ``y_px`` (centroid weighted by the site's total
    probability), ``site`` (``"M"`` or ``"X"``), ``label`` (the site's pristine
    name or a defect class; vacancies are empty columns), ``score`` (mean site
    probability) and ``area``.  Positions are starting points for the
    Gaussian fit, not its result.
    """
    classes = list(classes)
    labels = np.argmax(proba, axis=0)
    frames = []
    for site in (SITE_METAL, SITE_CHALCOGEN):
        names = [site] + [c for c in DEFECT_CLASSES if DEFECT_SITE[c] == site]
        names = [c for c in names if c in classes]
        if not names:
            continue
        idx = [classes.index(c) for c in names]
        y, x, area, sums, mean_w = _regions(proba, labels, idx, min_area)
        if len(y) == 0:
            continue
        win = sums.argmax(axis=1)
        frames.append(pd.DataFrame({
            "x_px": x, "y_px": y, "site": site,
            "label": np.asarray(names, dtype=object)[win], "score": mean_w,
            "area": area.astype(np.int64),
        }))
    if not frames:
        return _empty(COLUMN_COLUMNS, {"site": object, "label": object, "area": np.int64})
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["y_px", "x_px"], ignore_index=True)


def _empty(columns: list[str], dtypes: dict) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=dtypes.get(c, np.float64)) for c in columns})
