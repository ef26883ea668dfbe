"""Defect pairs: grouping by separation vector up to the lattice's point group.

Two defects of a class on chalcogen sites are separated by a lattice
vector ``v = m1 a1 + m2 a2``.  Pairs whose vectors are related by an
operation of the point group C3v of the site (three rotations, three
mirrors), or by swapping the two defects, are the same configuration.
:func:`find_pairs` lists the isolated pairs, names each configuration by
its canonical vector (the shortest image, then the smallest angle from
``a1``) and records the operation that maps the pair onto it; the
averaging then rotates / mirrors each crop by that operation about the
defect it is centred on (:func:`transform_crops`), so all members of a
configuration can be registered and summed like single defects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree

from ..errors import InputError
from .screening import ScreeningRules, _check_shape, crop_inside
from .symmetry import symmetry_operations

__all__ = ["PairsResult", "find_pairs", "canonical_vector", "transform_crops", "pair_class_name"]


def pair_class_name(cls: str, m: tuple[int, int]) -> str:
    """Class name of a pair configuration, e.g. ``"SV+SV(1,0)"``."""
    return f"{cls}+{cls}({int(m[0])},{int(m[1])})"


def _integer_ops(a1: np.ndarray, a2: np.ndarray, mirror_angle_deg: float) -> list[np.ndarray]:
    A = np.column_stack([a1, a2])
    Ai = np.linalg.inv(A)
    out = []
    for g in symmetry_operations("C3v", mirror_angle_deg):
        k = Ai @ g @ A
        ki = np.round(k)
        if np.abs(k - ki).max() > 1e-3:
            raise InputError("the lattice vectors are not those of a hexagonal lattice (a2 at 60 degrees from a1)")
        out.append(ki.astype(np.int64))
    return out


def canonical_vector(m: Sequence[int] | np.ndarray, a1: np.ndarray, a2: np.ndarray,
                     mirror_angle_deg: float | None = None) -> tuple[tuple[int, int], int, bool]:
    """Canonical image of a lattice vector under C3v and reversal.

    Returns
    -------
    (m1, m2), op, swapped
        The canonical vector, the index of the operation in
        :func:`~stemscale.average.symmetry.symmetry_operations` (``"C3v"``,
        mirror at ``mirror_angle_deg``, default perpendicular to ``a1``)
        that maps the pair onto it, and whether the defects swap roles
        (the crop is then centred on the second defect).
    """
    a1 = np.asarray(a1, float)
    a2 = np.asarray(a2, float)
    if mirror_angle_deg is None:
        mirror_angle_deg = math.degrees(math.atan2(a1[1], a1[0])) + 90.0
    ops = _integer_ops(a1, a2, mirror_angle_deg)
    phi = math.atan2(a1[1], a1[0])
    best: tuple[tuple[float, float, int, bool], tuple[int, int], int, bool] | None = None
    for k, op in enumerate(ops):
        for swapped, sign in ((False, 1), (True, -1)):
            c = sign * (op @ np.asarray(m, dtype=np.int64))
            v = c[0] * a1 + c[1] * a2
            ang = (math.atan2(v[1], v[0]) - phi) % (2 * math.pi)
            key = (round(float(v @ v), 6), round(ang, 6), k, swapped)
            if best is None or key < best[0]:
                best = (key, (int(c[0]), int(c[1])), k, swapped)
    if best is None:  # pragma: no cover - C3v always has six operations
        raise RuntimeError("no symmetry operation to canonicalise the pair vector")
    return best[1], best[2], best[3]


@dataclass
class PairsResult:
    """Output of :func:`find_pairs`.

    Attributes
    ----------
    pairs
        One row per kept pair: ``class`` (configuration name), ``cx_px``,
        ``cy_px`` (integer centre: the defect the crop is centred on),
        ``op`` (symmetry operation index), ``mirror_angle_deg``, ``m1``,
        ``m2`` (canonical vector), ``x1_px, y1_px, x2_px, y2_px``.
    counts
        Pairs found, kept per configuration, and rejected (another defect
        too close, crop outside the mosaic, not on lattice vectors).
    """

    pairs: pd.DataFrame
    counts: dict[str, Any] = field(default_factory=dict)


def find_pairs(
    defects: pd.DataFrame,
    *,
    cls: str,
    pixel_size_A: float,
    mosaic_shape: Sequence[int],
    a1_px: Sequence[float],
    a2_px: Sequence[float],
    max_separation_A: float = 7.0,
    isolation_A: float | None = None,
    rules: ScreeningRules | None = None,
    margin_px: int = 8,
    tolerance: float = 0.25,
) -> PairsResult:
    """Isolated pairs of defects of one class, grouped by canonical separation vector.

    Parameters
    ----------
    defects
        Detections (``class``, ``x_px``, ``y_px``).
    cls
        Class whose pairs are wanted.
    pixel_size_A, mosaic_shape
        Sampling and size of the mosaic.
    a1_px, a2_px
        Lattice vectors of the mosaic in pixels (``a2`` at +60 degrees from ``a1``),
        e.g. from :func:`stemscale.lattice.fit_lattice` on the pristine average.
    max_separation_A
        Largest separation of a pair.
    isolation_A
        No other defect (any class) within this distance of either member
        (default: the screening's same-class half window, 6.6 Å).
    rules, margin_px
        Crop size and margin (as :func:`screen_defects`).
    tolerance
        Largest distance (in lattice constants) of a separation from a lattice vector.
    """
    rules = rules or ScreeningRules()
    for c in ("class", "x_px", "y_px"):
        if c not in defects.columns:
            raise InputError(f"defects table lacks column {c!r}")
    ps = float(pixel_size_A)
    shape = _check_shape(mosaic_shape)
    a1 = np.asarray(a1_px, dtype=float)
    a2 = np.asarray(a2_px, dtype=float)
    A = np.column_stack([a1, a2])
    a = float(np.hypot(*a1))
    iso = (rules.same_class_window_A / 2.0 if isolation_A is None else float(isolation_A)) / ps
    xy = defects[["x_px", "y_px"]].to_numpy(dtype=float)
    labels = defects["class"].astype(str).to_numpy()
    sel = np.flatnonzero(labels == cls)
    tree_all = cKDTree(xy)
    pairs = cKDTree(xy[sel]).query_pairs(max_separation_A / ps, output_type="ndarray")
    counts: dict[str, Any] = {"found": int(len(pairs)), "crowded": 0, "off_lattice": 0, "crop_outside": 0,
                              "kept": {}}
    rows = []
    crop = rules.crop_px(ps)
    phi = math.degrees(math.atan2(a1[1], a1[0]))
    for i, j in pairs:
        p, q = sel[i], sel[j]
        near = set(tree_all.query_ball_point(xy[p], iso)) | set(tree_all.query_ball_point(xy[q], iso))
        if near - {p, q}:
            counts["crowded"] += 1
            continue
        mf = np.linalg.solve(A, xy[q] - xy[p])
        m = np.round(mf).astype(np.int64)
        if np.hypot(*(A @ (mf - m))) > tolerance * a:
            counts["off_lattice"] += 1
            continue
        canon, op, swapped = canonical_vector(m, a1, a2, phi + 90.0)
        centre = q if swapped else p
        cx, cy = int(np.floor(xy[centre, 0] + 0.5)), int(np.floor(xy[centre, 1] + 0.5))
        if not crop_inside(np.array([cx]), np.array([cy]), crop, margin_px, shape)[0]:
            counts["crop_outside"] += 1
            continue
        name = pair_class_name(cls, canon)
        counts["kept"][name] = counts["kept"].get(name, 0) + 1
        rows.append({"class": name, "cx_px": cx, "cy_px": cy, "op": op, "mirror_angle_deg": phi + 90.0,
                     "m1": canon[0], "m2": canon[1], "x1_px": xy[p, 0], "y1_px": xy[p, 1],
                     "x2_px": xy[q, 0], "y2_px": xy[q, 1]})
    return PairsResult(pd.DataFrame(rows, columns=["class", "cx_px", "cy_px", "op", "mirror_angle_deg", "m1", "m2",
                                                   "x1_px", "y1_px", "x2_px", "y2_px"]), counts)


def transform_crops(stack: np.ndarray, ops: np.ndarray, mirror_angle_deg: np.ndarray, *, order: int = 3) -> np.ndarray:
    """Apply point-group operations (x, y matrices) to crops about their centre pixel ``size // 2``."""
    stack = np.asarray(stack, dtype=np.float64)
    out = np.empty_like(stack)
    h, w = stack.shape[-2:]
    c = np.array([h // 2, w // 2], dtype=float)
    for k in range(len(stack)):
        g = symmetry_operations("C3v", float(mirror_angle_deg[k]))[int(ops[k])]
        if int(ops[k]) == 0:
            out[k] = stack[k]
            continue
        m = np.linalg.inv(g)[::-1, ::-1]  # output (row, col) samples input at g^-1 (p - c) + c
        out[k] = ndimage.affine_transform(stack[k], m, offset=c - m @ c, order=order, mode="nearest")
    return out
