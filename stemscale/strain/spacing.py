"""Metal-metal spacings of a 2H-MX2 frame from its fitted atom columns.

Pure functions of the atoms table (no Dask).  The columns are first split
into the metal and chalcogen sublattices
(:func:`stemscale.lattice.classify_sublattices`, or the FCN's site labels).
Chalcogen columns much brighter than the chalcogen median (robust z-score)
are flagged as substituted (e.g. Se in S2 columns of MoS2); metal columns
near a flagged, missing or badly fitted column are not pristine and their
spacings are left out.  The nearest-neighbour spacings of the pristine metal
columns, overall and per lattice direction, are the result.

Only reliable fits (``CONVERGED``, :func:`stemscale.fit.is_reliable`) are
measured by default: a column whose fit stopped at ``MAX_ITERATIONS`` or is
``UNCERTAIN`` still takes part in the sublattice and neighbour analysis (its
position is the best estimate there is), but no bond ends on it; the summary
counts these columns by state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from ..classes import DEFECT_CLASSES
from ..errors import InputError
from ..fit.states import FitState, is_reliable
from ..lattice.sublattice import classify_sublattices, lattice_constant_px, neighbour_pairs, robust_z

__all__ = ["SpacingResult", "metal_spacings"]

# Fits whose position places a column among its neighbours (it stayed in its window): converged,
# stopped at max-iterations, or converged with a large error bar (see stemscale.fit.FitState).
_GOOD_STATES = (int(FitState.CONVERGED), int(FitState.MAX_ITERATIONS), int(FitState.UNCERTAIN))


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
                   brightness: str = "score", reliable_only: bool = True) -> SpacingResult:
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
        See :func:`stemscale.lattice.classify_sublattices`.
    brightness
        Column measuring a column's brightness, for sublattices and substitutions:
        ``"score"`` (the peak detector's local contrast of the smoothed image:
        robust at low dose) or ``"amplitude"`` (the fitted peak height).  When
        the table's ``site`` column already labels columns ``M``/``X`` (FCN),
        those labels are used.
    reliable_only
        Measure only bonds between reliable fits (``CONVERGED``); columns whose
        fit stopped at ``MAX_ITERATIONS`` or is ``UNCERTAIN`` are counted in the
        summary (``unreliable_fits``) and left out.  ``False`` measures them too.
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
    pairs = neighbour_pairs(m_tree, m_xy, a_px, 0.25)
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
    if reliable_only:
        reliable = is_reliable(cols["state"].to_numpy())
        cols["pristine"] = pristine & reliable
        unreliable = good & ~reliable
        excluded = int((pristine & ~reliable).sum())
    else:
        cols["pristine"] = pristine
        unreliable, excluded = np.zeros(len(cols), bool), 0
    pristine = cols["pristine"].to_numpy()

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
    names = cols.loc[unreliable, "state"].map(lambda v: FitState(int(v)).name).value_counts()
    summary["unreliable_fits"] = {str(k): int(v) for k, v in names.items()}
    summary["unreliable_metal_columns_excluded"] = excluded
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
