"""Screening: which defects are isolated enough to average, and which pristine sites to compare.

The rules follow the reference paper (at 20.74 pm per pixel): a defect is
kept when

1. no defect of another class lies within ``other_class_A`` (32 px, 6.64 Å),
2. it is the only defect of its class inside a window of ``same_class_window_A``
   (64 x 64 px, 13.27 Å) centred on it,
3. its whole crop (``crop_A``, 128 px, 26.55 Å, plus the registration margin)
   lies inside the mosaic.

Pristine reference sites are chalcogen columns at least
``pristine_distance_A`` (64 px) from every defect whose crops fit as well.

Distances are in Å and converted with the mosaic's pixel size, so the same
physical rules apply at any sampling.  Neighbourhoods are squares
(Chebyshev distance, as in the paper's code) by default; ``metric="euclidean"``
uses discs.  A neighbour exactly on the boundary counts as inside.

All functions are pure functions of tables; a KD-tree keeps them
``O(n log n)`` for millions of detections.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from ..errors import InputError
from ..lattice import PAPER_PIXEL_SIZE_A

__all__ = [
    "PAPER_PIXEL_SIZE_A",
    "ScreeningRules",
    "ScreeningResult",
    "screen_defects",
    "select_pristine",
    "detections_from_truth",
    "REJECTION_REASONS",
]

#: Rejection reasons, in the order they are tested (a defect is counted once, for the first).
REJECTION_REASONS = ("other_class_nearby", "same_class_nearby", "crop_outside", "low_score")


def _px_to_A(px: float) -> float:
    return px * PAPER_PIXEL_SIZE_A


@dataclass(frozen=True)
class ScreeningRules:
    """Distances (Å) of the screening rules; defaults are the paper's pixel rules.

    Attributes
    ----------
    other_class_A
        Half-width of the neighbourhood that must hold no defect of another
        class (paper: 32 px).
    same_class_window_A
        Edge of the window centred on a defect that must hold no other
        defect of its class (paper: 64 px).
    crop_A
        Edge of the square crop averaged per defect (paper: 128 px).
    pristine_distance_A
        Minimum distance of a pristine reference site from any defect (paper: 64 px).
    metric
        ``"chebyshev"`` (square neighbourhoods, as the paper) or ``"euclidean"``.
    min_score
        Detections with a lower ``score`` (when the table has one) are dropped.
    """

    other_class_A: float = _px_to_A(32)
    same_class_window_A: float = _px_to_A(64)
    crop_A: float = _px_to_A(128)
    pristine_distance_A: float = _px_to_A(64)
    metric: str = "chebyshev"
    min_score: float = 0.0

    def __post_init__(self) -> None:
        for name in ("other_class_A", "same_class_window_A", "crop_A", "pristine_distance_A"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
                raise InputError(f"ScreeningRules.{name} must be a distance >= 0 in Å, got {v!r}")
        if self.crop_A <= 0:
            raise InputError("ScreeningRules.crop_A must be > 0 Å")
        if self.metric not in ("chebyshev", "euclidean"):
            raise InputError(f"ScreeningRules.metric must be 'chebyshev' or 'euclidean', got {self.metric!r}")

    def crop_px(self, pixel_size_A: float) -> int:
        """Crop edge in pixels (even, so the defect sits on pixel ``crop // 2``)."""
        n = int(round(self.crop_A / pixel_size_A))
        return max(8, n + (n % 2))

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class ScreeningResult:
    """Output of :func:`screen_defects`.

    Attributes
    ----------
    kept
        Rows of the input table that passed, with integer crop centres
        ``cx_px``, ``cy_px`` added.
    counts
        ``{class: {"detected": n, "kept": n, <reason>: n, ...}}``.
    rules
        The rules used, and the pixel size.
    """

    kept: pd.DataFrame
    counts: dict[str, dict[str, int]]
    rules: dict[str, Any] = field(default_factory=dict)


def _check_table(table: pd.DataFrame, name: str, needed: Iterable[str]) -> None:
    if not isinstance(table, pd.DataFrame):
        raise InputError(f"{name} must be a pandas DataFrame, got {type(table).__name__}")
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise InputError(f"{name} lacks column(s) {missing}; it has {list(table.columns)}")
    for c in ("x_px", "y_px"):
        if c in table.columns and len(table) and not np.isfinite(table[c].to_numpy(dtype=float)).all():
            raise InputError(f"{name}.{c} holds NaN or Inf")


def _check_pixel_size(pixel_size_A: Any) -> float:
    if isinstance(pixel_size_A, bool) or not isinstance(pixel_size_A, (int, float, np.floating)):
        raise InputError(f"pixel_size_A must be a positive number of Å per pixel, got {pixel_size_A!r}")
    ps = float(pixel_size_A)
    if not np.isfinite(ps) or ps <= 0:
        raise InputError(f"pixel_size_A must be a positive number of Å per pixel, got {pixel_size_A!r}")
    return ps


def _check_shape(shape: Any) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise InputError(f"mosaic_shape must be (height, width) in pixels, got {shape!r}") from None
    if h <= 0 or w <= 0:
        raise InputError(f"mosaic_shape must be positive, got {shape!r}")
    return h, w


def _p(metric: str) -> float:
    return np.inf if metric == "chebyshev" else 2.0


def crop_inside(cx: np.ndarray, cy: np.ndarray, crop: int, margin: int, shape: tuple[int, int]) -> np.ndarray:
    """Whether the crop (plus margin) around integer centres lies inside the mosaic.

    A crop of even edge ``crop`` centred on pixel ``c`` covers pixels
    ``c - crop/2 .. c + crop/2 - 1``; with the margin, ``c - crop/2 - margin
    .. c + crop/2 - 1 + margin``.
    """
    h, w = shape
    half = crop // 2
    lo = half + margin
    return (cx - lo >= 0) & (cy - lo >= 0) & (cx + (crop - half - 1) + margin <= w - 1) & (
        cy + (crop - half - 1) + margin <= h - 1
    )


def screen_defects(
    defects: pd.DataFrame,
    *,
    pixel_size_A: float,
    mosaic_shape: Sequence[int],
    classes: Sequence[str] | None = None,
    rules: ScreeningRules | None = None,
    margin_px: int = 8,
    perturbing_classes: Sequence[str] | None = None,
) -> ScreeningResult:
    """Keep the isolated defects of each class and count why the others went.

    Parameters
    ----------
    defects
        Detections: columns ``class``, ``x_px``, ``y_px`` (global pixels,
        sub-pixel allowed) and optionally ``score`` (an FCN table plugs in
        unchanged).  Every detection counts as a neighbour, whatever class
        is being screened.
    pixel_size_A
        Å per pixel of the mosaic.
    mosaic_shape
        (height, width) of the mosaic in pixels.
    classes
        Classes to screen (default: every class in the table).
    rules
        :class:`ScreeningRules` (default: the paper's).
    margin_px
        Extra pixels the crop needs on each side (the registration margin,
        :attr:`AveragingConfig.margin_px`).
    perturbing_classes
        Classes whose proximity rejects a defect of another class (default:
        all).  The paper excluded SVs near "strain-perturbing" classes.

    Returns
    -------
    ScreeningResult
    """
    rules = rules or ScreeningRules()
    ps = _check_pixel_size(pixel_size_A)
    shape = _check_shape(mosaic_shape)
    _check_table(defects, "defects", ("class", "x_px", "y_px"))
    if not isinstance(margin_px, (int, np.integer)) or margin_px < 0:
        raise InputError(f"margin_px must be a non-negative integer, got {margin_px!r}")
    table = defects.reset_index(drop=True)
    labels = table["class"].astype(str).to_numpy()
    present = list(dict.fromkeys(labels))
    classes = present if classes is None else [str(c) for c in classes]
    xy = table[["x_px", "y_px"]].to_numpy(dtype=np.float64)
    cx = np.floor(xy[:, 0] + 0.5).astype(np.int64)
    cy = np.floor(xy[:, 1] + 0.5).astype(np.int64)
    p = _p(rules.metric)
    tree = cKDTree(xy) if len(xy) else None
    r_other = rules.other_class_A / ps
    r_same = rules.same_class_window_A / 2.0 / ps
    crop = rules.crop_px(ps)
    perturb = np.ones(len(table), bool) if perturbing_classes is None else np.isin(labels, list(perturbing_classes))
    score = table["score"].to_numpy(dtype=float) if "score" in table.columns else None

    keep_rows: list[np.ndarray] = []
    counts: dict[str, dict[str, int]] = {}
    for cls in classes:
        idx = np.flatnonzero(labels == cls)
        reason = np.full(len(idx), "", dtype=object)
        if len(idx) and tree is not None:
            eps = 1e-9  # a neighbour exactly on the boundary counts as inside
            other = tree.query_ball_point(xy[idx], r_other + eps, p=p)
            same = tree.query_ball_point(xy[idx], r_same + eps, p=p)
            for k, i in enumerate(idx):
                if any(labels[j] != cls and perturb[j] for j in other[k]):
                    reason[k] = "other_class_nearby"
                elif any(labels[j] == cls and j != i for j in same[k]):
                    reason[k] = "same_class_nearby"
            inside = crop_inside(cx[idx], cy[idx], crop, int(margin_px), shape)
            reason[(reason == "") & ~inside] = "crop_outside"
            if score is not None:
                reason[(reason == "") & (score[idx] < rules.min_score)] = "low_score"
        c = Counter(reason.tolist())
        counts[cls] = {"detected": int(len(idx)), "kept": int(c.pop("", 0))}
        counts[cls].update({r: int(c.get(r, 0)) for r in REJECTION_REASONS})
        keep_rows.append(idx[reason == ""])
    rows = np.concatenate(keep_rows) if keep_rows else np.zeros(0, np.int64)
    kept = table.iloc[np.sort(rows)].copy()
    kept["cx_px"] = cx[kept.index.to_numpy()]
    kept["cy_px"] = cy[kept.index.to_numpy()]
    return ScreeningResult(
        kept=kept.reset_index(drop=True),
        counts=counts,
        rules={**rules.to_dict(), "pixel_size_A": ps, "crop_px": crop, "margin_px": int(margin_px)},
    )


def select_pristine(
    sites: pd.DataFrame,
    defects: pd.DataFrame,
    *,
    pixel_size_A: float,
    mosaic_shape: Sequence[int],
    rules: ScreeningRules | None = None,
    margin_px: int = 8,
    min_separation_A: float | None = None,
    max_sites: int | None = None,
    seed: int = 0,
) -> ScreeningResult:
    """Pristine reference sites: columns far from every defect, spread out.

    Parameters
    ----------
    sites
        Candidate columns (``x_px``, ``y_px``), e.g. the chalcogen columns
        of the atom table (``site == "X"``) or of the simulator's truth.
    defects
        All detections (``x_px``, ``y_px``).
    pixel_size_A, mosaic_shape, rules, margin_px
        As :func:`screen_defects`; the distance rule is ``rules.pristine_distance_A``.
    min_separation_A
        Keep sites at least this far apart (default: half a crop), so pristine
        crops are nearly independent and the bootstrap is honest.
    max_sites
        Keep at most this many (a random subset).
    seed
        Seed of the thinning order and the subset.

    Returns
    -------
    ScreeningResult
        ``kept`` with class ``"pristine"``; counts of ``near_defect``,
        ``crop_outside`` and ``thinned``.
    """
    rules = rules or ScreeningRules()
    ps = _check_pixel_size(pixel_size_A)
    shape = _check_shape(mosaic_shape)
    _check_table(sites, "sites", ("x_px", "y_px"))
    _check_table(defects, "defects", ("x_px", "y_px"))
    xy = sites[["x_px", "y_px"]].to_numpy(dtype=np.float64)
    cx = np.floor(xy[:, 0] + 0.5).astype(np.int64)
    cy = np.floor(xy[:, 1] + 0.5).astype(np.int64)
    p = _p(rules.metric)
    crop = rules.crop_px(ps)
    n = len(xy)
    near = np.zeros(n, bool)
    if len(defects) and n:
        dist, _ = cKDTree(defects[["x_px", "y_px"]].to_numpy(dtype=np.float64)).query(xy, k=1, p=p)
        near = dist < rules.pristine_distance_A / ps
    inside = crop_inside(cx, cy, crop, int(margin_px), shape)
    ok = ~near & inside
    cand = np.flatnonzero(ok)
    sep = (crop / 2.0) if min_separation_A is None else float(min_separation_A) / ps
    rng = np.random.default_rng(seed)
    order = rng.permutation(cand)
    chosen = _greedy_thin(xy, order, sep, p) if sep > 0 and len(order) else order
    thinned = len(cand) - len(chosen)
    if max_sites is not None and len(chosen) > int(max_sites):
        chosen = chosen[: int(max_sites)]
    chosen = np.sort(chosen)
    kept = sites.iloc[chosen].copy()
    kept["class"] = "pristine"
    kept["cx_px"] = cx[chosen]
    kept["cy_px"] = cy[chosen]
    counts = {
        "pristine": {
            "detected": int(n), "kept": int(len(chosen)), "near_defect": int(near.sum()),
            "crop_outside": int((~near & ~inside).sum()), "thinned": int(thinned),
            "over_max_sites": int(len(cand) - thinned - len(chosen)),
        }
    }
    return ScreeningResult(kept.reset_index(drop=True), counts,
                           {**rules.to_dict(), "pixel_size_A": ps, "crop_px": crop, "margin_px": int(margin_px),
                            "min_separation_px": sep})


def _greedy_thin(xy: np.ndarray, order: np.ndarray, sep: float, p: float) -> np.ndarray:
    """Keep points in ``order`` unless an already kept one lies closer than ``sep``."""
    # Grid hashing with cell = sep: only the 3 x 3 neighbouring cells can conflict.
    cell = np.floor(xy[order] / sep).astype(np.int64)
    grid: dict[tuple[int, int], list[int]] = {}
    kept: list[int] = []
    for k, i in enumerate(order):
        gx, gy = int(cell[k, 0]), int(cell[k, 1])
        clash = False
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for j in grid.get((gx + dx, gy + dy), ()):
                    d = np.abs(xy[i] - xy[j])
                    dist = d.max() if np.isinf(p) else float(np.hypot(*d))
                    if dist < sep:
                        clash = True
                        break
                if clash:
                    break
            if clash:
                break
        if not clash:
            kept.append(int(i))
            grid.setdefault((gx, gy), []).append(int(i))
    return np.asarray(kept, dtype=np.int64)


def detections_from_truth(
    truth: pd.DataFrame,
    *,
    jitter_px: float = 0.0,
    seed: int = 0,
    classes: Sequence[str] | None = None,
) -> pd.DataFrame:
    """A detections table (``class, x_px, y_px, score``) from a simulator truth table.

    Centres are rounded to whole pixels, as an FCN centroid is only
    integer-accurate, after an optional Gaussian jitter of ``jitter_px``,
    so precision studies do not depend on the detector.
    """
    _check_table(truth, "truth", ("defect", "x_px", "y_px"))
    sel = truth["defect"].astype(str) != ""
    if classes is not None:
        sel &= truth["defect"].isin(list(classes))
    t = truth.loc[sel]
    rng = np.random.default_rng(seed)
    x = t["x_px"].to_numpy(dtype=float)
    y = t["y_px"].to_numpy(dtype=float)
    if jitter_px > 0:
        x = x + rng.normal(0.0, jitter_px, len(x))
        y = y + rng.normal(0.0, jitter_px, len(y))
    out = pd.DataFrame({
        "class": t["defect"].astype(str).to_numpy(),
        "x_px": np.floor(x + 0.5),
        "y_px": np.floor(y + 0.5),
        "score": np.ones(len(t)),
    })
    if "column_id" in t.columns:
        out["column_id"] = t["column_id"].to_numpy()
    return out.reset_index(drop=True)
