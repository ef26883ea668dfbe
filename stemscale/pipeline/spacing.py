"""Metal-metal spacings of a 2H-MX2 frame from its fitted atom columns.

Pure functions of the atoms table (no Dask).  In projection along c a 2H
monolayer is a honeycomb of two triangular sublattices, metal (M) and
chalcogen (X), each with lattice constant ``a``; an M column's nearest
columns are X columns at ``a / sqrt(3)``, its nearest M columns are at ``a``.
So the bright columns (Z contrast) linked at distance ``a`` form the metal
lattice, and every other column is placed by its distance to it.  This works with the classical peak detector, which does not
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


def lattice_constant_px(xy: np.ndarray, amplitude: np.ndarray, fraction: float = 0.4) -> float:
    """Lattice constant in pixels: the median nearest-neighbour distance of the brightest columns.

    The brightest ``fraction`` of the columns are (almost) all metal columns,
    whose nearest neighbours among themselves sit at ``a``.
    """
    xy = np.asarray(xy, dtype=float)
    if len(xy) < 8:
        raise InputError(f"need at least 8 fitted columns to measure the lattice, got {len(xy)}")
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
                         a_px: float | None = None, metal_brighter: bool = True,
                         ) -> tuple[np.ndarray, float]:
    """Label every column ``"M"``, ``"X"`` or ``"?"`` (not placed on the lattice).

    Bright columns with at least three bright neighbours at ``a`` form a
    reliable metal lattice (an isolated bright chalcogen column, e.g. a
    substituted one, has none: its neighbours at ``a`` are ordinary chalcogen
    columns).  Every column is then placed by its distance to the nearest
    reliable metal column: about ``a / sqrt(3)`` for a chalcogen column,
    about ``a`` for a metal column.

    Parameters
    ----------
    xy
        (n, 2) column positions in pixels.
    amplitude
        Fitted peak heights.
    tolerance
        Relative tolerance of the neighbour distance ``a``.
    a_px
        Lattice constant in pixels (default: measured, :func:`lattice_constant_px`).
    metal_brighter
        Whether metal columns are the brighter ones (W, Mo vs S2, Se2: true for
        WSe2, WS2, MoS2; not for MoSe2, where Se2 columns outshine Mo).

    Returns
    -------
    sites : numpy.ndarray of str
    a_px : float
    """
    from skimage.filters import threshold_otsu

    xy = np.asarray(xy, dtype=float)
    amp = np.asarray(amplitude, dtype=float)
    n = len(xy)
    sign = 1.0 if metal_brighter else -1.0
    a = float(a_px) if a_px is not None else lattice_constant_px(xy, sign * amp)
    key = sign * np.log(np.clip(amp, np.finfo(float).tiny, None))
    bright = np.flatnonzero(key > threshold_otsu(key)) if n > 1 else np.arange(n)
    sites = np.full(n, "?", dtype=object)
    if len(bright) < 3:
        return sites, a
    bxy = xy[bright]
    pairs = _pairs(cKDTree(bxy), bxy, a, tolerance)
    count = np.bincount(pairs.ravel(), minlength=len(bright)) if len(pairs) else np.zeros(len(bright), int)
    reliable = bright[count >= 3]
    if len(reliable) < 2:
        return sites, a
    is_reliable = np.zeros(n, bool)
    is_reliable[reliable] = True
    d, j = cKDTree(xy[reliable]).query(xy, k=2)
    # a reliable column's nearest reliable column is itself: take the second
    nearest = np.where(is_reliable, d[:, 1], d[:, 0])
    x_max = 0.5 * (1 + 1 / np.sqrt(3.0)) * a  # halfway between a / sqrt(3) and a
    sites[nearest < x_max] = "X"
    metal = is_reliable | ((nearest >= x_max) & (np.abs(nearest - a) <= 0.2 * a))
    sites[metal & (nearest >= x_max)] = "M"
    sites[is_reliable] = "M"
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
                   nominal_a_A: float | None = None) -> SpacingResult:
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
        The material's lattice constant, to report the measured / nominal ratio.
    """
    need = {"x_px", "y_px", "amplitude", "state"}
    missing = need - set(atoms.columns)
    if missing:
        raise InputError(f"atoms table lacks {sorted(missing)}")
    ps = float(pixel_size_angstrom)
    cols = atoms.reset_index(drop=True).copy()
    good = cols["state"].isin(_GOOD_STATES).to_numpy() & np.isfinite(cols["amplitude"].to_numpy())
    fitted = cols[good]
    xy_all = cols[["x_px", "y_px"]].to_numpy(dtype=float)
    sites = np.full(len(cols), "?", dtype=object)
    fit_sites, a_px = classify_sublattices(fitted[["x_px", "y_px"]].to_numpy(float),
                                           fitted["amplitude"].to_numpy(float), tolerance=tolerance)
    sites[np.flatnonzero(good)] = fit_sites
    cols["sublattice"] = sites
    is_m, is_x = sites == "M", sites == "X"
    z = np.full(len(cols), np.nan)
    if is_x.any():
        z[is_x] = robust_z(cols.loc[is_x, "amplitude"].to_numpy(float))
    cols["chalcogen_z"] = z
    cols["substituted"] = is_x & (np.nan_to_num(z) > substitution_threshold)

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
    bad = np.concatenate([np.flatnonzero(cols["substituted"].to_numpy()), np.flatnonzero(~good), under])
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
