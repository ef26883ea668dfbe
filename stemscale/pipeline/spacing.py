"""Metal-metal spacings of a 2H-MX2 frame from its fitted atom columns.

Pure functions of the atoms table (no Dask).  In projection along c a 2H
monolayer is a honeycomb of two triangular sublattices, metal (M) and
chalcogen (X), each with lattice constant ``a``; an M column's nearest
columns are X columns at ``a / sqrt(3)``, its nearest M columns are at ``a``.
So a column with its neighbours at ``a`` (its own sublattice) can be compared
with its neighbours at ``a / sqrt(3)`` (the other one): the brighter side is
metal (Z contrast).  This works with the classical peak detector, which does not
label sites, and it is indifferent to the absolute pixel calibration because
``a`` is measured from the columns themselves.

Chalcogen columns much brighter than the chalcogen median (robust z-score)
are flagged as substituted (e.g. Se in S2 columns of MoS2); metal columns
near a flagged, missing or badly fitted column are not pristine and their
spacings are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from ..classes import DEFECT_CLASSES
from ..errors import InputError

__all__ = ["SpacingResult", "classify_sublattices", "lattice_constant_px", "metal_spacings",
           "robust_z"]

_GOOD_STATES = (0, 1)  # converged, max-iterations (see stemscale.fit.FitState)


def robust_z(values: np.ndarray) -> np.ndarray:
    """(value - median) / (1.4826 * MAD): a z-score that outliers do not inflate."""
    v = np.asarray(values, dtype=float)
    med = np.nanmedian(v)
    mad = 1.4826 * np.nanmedian(np.abs(v - med))
    if not np.isfinite(mad) or mad == 0:
        return np.zeros_like(v)
    return (v - med) / mad


def lattice_constant_px(xy: np.ndarray, amplitude: np.ndarray, fraction: float = 0.4,
                        guess_px: float | None = None) -> float:
    """Lattice constant in pixels from the columns' neighbour distances.

    With ``guess_px`` (the nominal lattice constant over the pixel size; a
    calibration error of a few per cent does not matter): the median of all
    neighbour distances within 13 % of it, which are metal-metal and
    chalcogen-chalcogen pairs (a metal-chalcogen pair is at a/sqrt(3) or
    2a/sqrt(3)).  Without: the neighbour distances of the brightest
    ``fraction`` of the columns, assumed to be (mostly) metal columns.
    """
    xy = np.asarray(xy, dtype=float)
    if len(xy) < 8:
        raise InputError(f"need at least 8 fitted columns to measure the lattice, got {len(xy)}")
    if guess_px is not None:
        pairs = cKDTree(xy).query_pairs(1.13 * guess_px, output_type="ndarray")
        if len(pairs):
            dist = np.hypot(*(xy[pairs[:, 0]] - xy[pairs[:, 1]]).T)
            dist = dist[dist >= 0.87 * guess_px]
            if len(dist) >= 8:
                return float(np.median(dist))
    order = np.argsort(np.asarray(amplitude, dtype=float))[::-1]
    bright = xy[order[: max(8, int(fraction * len(xy)))]]
    d, _ = cKDTree(bright).query(bright, k=2)
    a0 = float(np.median(d[:, 1]))  # biased low: the nearest of six noisy neighbours
    # All neighbour pairs of the bright columns near a0 give an unbiased median.
    pairs = cKDTree(bright).query_pairs(1.3 * a0, output_type="ndarray")
    if len(pairs) == 0:
        return a0
    dist = np.hypot(*(bright[pairs[:, 0]] - bright[pairs[:, 1]]).T)
    dist = dist[dist >= 0.85 * a0]
    return float(np.median(dist)) if len(dist) else a0


def classify_sublattices(xy: np.ndarray, amplitude: np.ndarray, *, tolerance: float = 0.1,
                         a_px: float | None = None, guess_px: float | None = None,
                         metal_brighter: bool = True) -> tuple[np.ndarray, float]:
    """Label every column ``"M"``, ``"X"`` or ``"?"`` (not placed on the lattice).

    A column and its neighbours at ``a`` (same sublattice) are compared with its
    neighbours at ``a / sqrt(3)`` (the other sublattice): the brighter side is
    metal.  Averaging over about ten columns makes the test robust to noisy
    amplitudes and to slow background changes.  Columns without a detected
    neighbour on the other sublattice (faint chalcogen columns missed by a
    classical detector) take the label of their neighbours at ``a``.

    Parameters
    ----------
    xy
        (n, 2) column positions in pixels.
    amplitude
        Fitted peak heights (positive).
    tolerance
        Relative tolerance of the neighbour distances.
    a_px
        Lattice constant in pixels (default: measured, :func:`lattice_constant_px`).
    guess_px
        Nominal lattice constant in pixels, to measure ``a`` from.
    metal_brighter
        Whether metal columns are the brighter ones (W, Mo vs S2, Se2: true for
        WSe2, WS2, MoS2; not for MoSe2, where Se2 columns outshine Mo).

    Returns
    -------
    sites : numpy.ndarray of str
    a_px : float
    """
    xy = np.asarray(xy, dtype=float)
    amp = np.asarray(amplitude, dtype=float)
    n = len(xy)
    sign = 1.0 if metal_brighter else -1.0
    a = float(a_px) if a_px is not None else lattice_constant_px(xy, sign * amp, guess_px=guess_px)
    key = sign * np.log(np.clip(amp, np.finfo(float).tiny, None))
    tree = cKDTree(xy)
    same = _pairs(tree, xy, a, tolerance)
    cross = _pairs(tree, xy, a / np.sqrt(3.0), tolerance)
    # Sums of the key over each column's neighbours on its own and on the other sublattice.
    own_sum, own_n = key.copy(), np.ones(n)
    np.add.at(own_sum, same[:, 0], key[same[:, 1]])
    np.add.at(own_sum, same[:, 1], key[same[:, 0]])
    np.add.at(own_n, same.ravel(), 1)
    other_sum, other_n = np.zeros(n), np.zeros(n)
    np.add.at(other_sum, cross[:, 0], key[cross[:, 1]])
    np.add.at(other_sum, cross[:, 1], key[cross[:, 0]])
    np.add.at(other_n, cross.ravel(), 1)
    label = np.zeros(n, dtype=int)  # +1 metal, -1 chalcogen, 0 unknown
    has = other_n > 0
    score = np.where(has, own_sum / own_n - other_sum / np.maximum(other_n, 1), 0.0)
    label[has] = np.where(score[has] > 0, 1, -1)
    # Columns without a detected cross neighbour: majority of their same-sublattice neighbours.
    for _ in range(10):
        votes = np.zeros(n)
        np.add.at(votes, same[:, 0], label[same[:, 1]])
        np.add.at(votes, same[:, 1], label[same[:, 0]])
        todo = (label == 0) & (votes != 0)
        if not todo.any():
            break
        label[todo] = np.sign(votes[todo]).astype(int)
    sites = np.where(label > 0, "M", np.where(label < 0, "X", "?")).astype(object)
    return sites, a


def _pairs(tree: cKDTree, xy: np.ndarray, d: float, tol: float) -> np.ndarray:
    pairs = tree.query_pairs(d * (1 + tol), output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros((0, 2), dtype=int)
    dist = np.hypot(*(xy[pairs[:, 0]] - xy[pairs[:, 1]]).T)
    return pairs[dist >= d * (1 - tol)]


@dataclass
class SpacingResult:
    """Metal-metal spacings of the pristine metal columns.

    Attributes
    ----------
    columns
        The atoms table with ``sublattice`` (M/X/?), ``substituted`` and
        ``pristine`` columns added.
    bonds
        One row per M-M neighbour pair used: ``i``, ``j`` (rows of ``columns``),
        ``distance_pm``, ``angle_deg`` (0-180), ``direction`` (0, 1, 2).
    summary
        Numbers for ``summary.json`` (pm unless named otherwise).
    """

    columns: pd.DataFrame
    bonds: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)


def metal_spacings(atoms: pd.DataFrame, pixel_size_angstrom: float, image_shape: tuple[int, int], *,
                   region_A: tuple[float, float, float, float] | None = None,
                   translation_angstrom: tuple[float, float] = (0.0, 0.0),
                   exclude_radius_A: float = 4.0, substitution_threshold: float = 4.0,
                   tolerance: float = 0.1, edge_A: float = 3.0,
                   nominal_a_A: float | None = None, metal_brighter: bool = True,
                   brightness: str = "score") -> SpacingResult:
    """Nearest-neighbour metal-metal spacings in the pristine part of a frame.

    Parameters
    ----------
    atoms
        The atoms table of a run (``x_px``, ``y_px``, ``amplitude``, ``state``).
    pixel_size_angstrom
        The image's pixel calibration (as recorded in the file).
    image_shape
        (height, width) in pixels.
    region_A
        ``(x0, x1, y0, y1)`` in Å (mosaic coordinates): only bonds with both
        ends inside count.  Default: the whole image.
    translation_angstrom
        Mosaic position (y, x) in Å of pixel (0, 0), to compare with ``region_A``.
    exclude_radius_A
        Metal columns this close to a substituted, missing or badly fitted
        column are not pristine.
    substitution_threshold
        Robust z-score of a chalcogen column's amplitude above which it counts
        as substituted.
    tolerance
        Relative tolerance of neighbour distances.
    edge_A
        Columns closer than this to the image border are left out.
    nominal_a_A
        The material's lattice constant: a starting point for measuring ``a``
        (a calibration error of a few per cent does not matter) and the
        reference of the measured / nominal ratio.
    metal_brighter
        See :func:`classify_sublattices`.
    brightness
        Column measuring a column's brightness, for sublattices and substitutions:
        ``"score"`` (the peak detector's local contrast of the smoothed image:
        robust at low dose) or ``"amplitude"`` (the fitted peak height).  When
        the table's ``site`` column already labels columns ``M``/``X`` (FCN),
        those labels are used.
    """
    need = {"x_px", "y_px", "amplitude", "state", brightness}
    missing = need - set(atoms.columns)
    if missing:
        raise InputError(f"atoms table lacks {sorted(missing)}")
    ps = float(pixel_size_angstrom)
    cols = atoms.reset_index(drop=True).copy()
    bright = cols[brightness].to_numpy(float)
    good = (cols["state"].isin(_GOOD_STATES).to_numpy() & np.isfinite(cols["amplitude"].to_numpy())
            & np.isfinite(bright) & (bright > 0))
    fitted = cols[good]
    xy_all = cols[["x_px", "y_px"]].to_numpy(dtype=float)
    sites = np.full(len(cols), "?", dtype=object)
    guess = nominal_a_A / ps if nominal_a_A else None
    labelled = "site" in cols and cols["site"].isin(["M", "X"]).mean() > 0.5
    if labelled:  # the FCN labelled the sites
        sites[good] = cols.loc[good, "site"].to_numpy()
        a_px = lattice_constant_px(fitted[["x_px", "y_px"]].to_numpy(float),
                                   bright[good] * (sites[good] == "M"), guess_px=guess)
    else:
        fit_sites, a_px = classify_sublattices(fitted[["x_px", "y_px"]].to_numpy(float),
                                               bright[good], tolerance=tolerance,
                                               guess_px=guess, metal_brighter=metal_brighter)
        sites[np.flatnonzero(good)] = fit_sites
    cols["sublattice"] = sites
    is_m, is_x = sites == "M", sites == "X"
    z = np.full(len(cols), np.nan)
    if is_x.any():
        z[is_x] = robust_z(bright[is_x])
    cols["chalcogen_z"] = z
    cols["substituted"] = is_x & (np.nan_to_num(z) > substitution_threshold)
    # Columns the FCN classified as defects (label = a defect class) count as well.
    labels = cols["label"].astype(str).to_numpy() if "label" in cols else np.full(len(cols), "")
    cols.loc[is_x & np.isin(labels, ["2Te", "TeSe"]), "substituted"] = True
    defect_labelled = np.isin(labels, list(DEFECT_CLASSES))

    # Metal columns missing a neighbour (vacancy, hole, contamination) mark a defect too.
    m_idx = np.flatnonzero(is_m)
    m_xy = xy_all[m_idx]
    m_tree = cKDTree(m_xy)
    # Among metal columns the next distance after a is sqrt(3) a: a wide window is unambiguous.
    pairs = _pairs(m_tree, m_xy, a_px, 0.25)
    degree = np.bincount(pairs.ravel(), minlength=len(m_idx)) if len(pairs) else np.zeros(len(m_idx), int)
    h, w = image_shape
    margin = max(edge_A / ps, 1.2 * a_px)
    inner = ((m_xy[:, 0] > margin) & (m_xy[:, 0] < w - 1 - margin)
             & (m_xy[:, 1] > margin) & (m_xy[:, 1] < h - 1 - margin))
    under = m_idx[inner & (degree < 6)]
    bad = np.concatenate([np.flatnonzero(cols["substituted"].to_numpy()), np.flatnonzero(~good), under,
                          np.flatnonzero(defect_labelled)])
    pristine = is_m.copy()
    if len(bad):
        near = cKDTree(xy_all[bad]).query_ball_point(m_xy, exclude_radius_A / ps)
        pristine[m_idx[np.array([len(n) > 0 for n in near], dtype=bool)]] = False
    edge = edge_A / ps
    in_frame = ((xy_all[:, 0] >= edge) & (xy_all[:, 0] <= w - 1 - edge)
                & (xy_all[:, 1] >= edge) & (xy_all[:, 1] <= h - 1 - edge))
    pristine &= in_frame
    if region_A is not None:
        x0, x1, y0, y1 = region_A
        ty, tx = translation_angstrom
        xa, ya = xy_all[:, 0] * ps + tx, xy_all[:, 1] * ps + ty
        pristine &= (xa >= x0) & (xa <= x1) & (ya >= y0) & (ya <= y1)
    cols["pristine"] = pristine

    keep = pristine[m_idx[pairs[:, 0]]] & pristine[m_idx[pairs[:, 1]]] if len(pairs) else np.zeros(0, bool)
    p = pairs[keep]
    i, j = m_idx[p[:, 0]], m_idx[p[:, 1]]
    vec = xy_all[j] - xy_all[i]
    dist_pm = np.hypot(*vec.T) * ps * 100.0
    angle = np.degrees(np.arctan2(vec[:, 1], vec[:, 0])) % 180.0
    # Lattice orientation: circular mean of the bond angles modulo 60 degrees.
    theta0 = (np.degrees(np.angle(np.mean(np.exp(1j * np.radians(6 * angle))))) / 6.0) % 60.0
    direction = np.rint(((angle - theta0) % 180.0) / 60.0).astype(int) % 3
    bonds = pd.DataFrame({"i": i, "j": j, "distance_pm": dist_pm, "angle_deg": angle,
                          "direction": direction})
    summary = _summarise(bonds, cols, a_px, ps, theta0, nominal_a_A)
    return SpacingResult(cols, bonds, summary)


def _summarise(bonds: pd.DataFrame, cols: pd.DataFrame, a_px: float, ps: float, theta0: float,
               nominal_a_A: float | None) -> dict[str, Any]:
    d = bonds["distance_pm"].to_numpy()
    n = len(d)
    out: dict[str, Any] = {
        "columns": int(len(cols)),
        "metal_columns": int((cols["sublattice"] == "M").sum()),
        "chalcogen_columns": int((cols["sublattice"] == "X").sum()),
        "unassigned_columns": int((cols["sublattice"] == "?").sum()),
        "substituted_chalcogen_columns": int(cols["substituted"].sum()),
        "pristine_metal_columns": int(cols["pristine"].sum()),
        "lattice_constant_px": a_px,
        "lattice_angle_deg": float(theta0),
        "bonds": int(n),
    }
    if n:
        med = float(np.median(d))
        out.update({
            "mean_pm": float(d.mean()),
            "spread_pm": float(d.std(ddof=1)) if n > 1 else float("nan"),
            "robust_spread_pm": float(1.4826 * np.median(np.abs(d - med))),
            "median_pm": med,
            "sem_pm": float(d.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
        })
        per = []
        for k in range(3):
            dk = d[bonds["direction"].to_numpy() == k]
            per.append({"direction": k, "angle_deg": float((theta0 + 60 * k) % 180), "bonds": int(len(dk)),
                        "mean_pm": float(dk.mean()) if len(dk) else float("nan"),
                        "spread_pm": float(dk.std(ddof=1)) if len(dk) > 1 else float("nan")})
        out["directions"] = per
        means = [p["mean_pm"] for p in per if np.isfinite(p["mean_pm"])]
        if len(means) >= 2:
            out["direction_anisotropy"] = float((max(means) - min(means)) / np.mean(means))
        if nominal_a_A:
            out["nominal_a_pm"] = float(nominal_a_A * 100)
            out["measured_over_nominal"] = float(d.mean() / (nominal_a_A * 100))
    return out
