"""Metal and chalcogen sublattices of a 2H-MX2 frame from its fitted atom columns.

In projection along c a 2H monolayer is a honeycomb of two triangular
sublattices, metal (M) and chalcogen (X), each with lattice constant ``a``;
an M column's nearest columns are X columns at ``a / sqrt(3)``, its nearest M
columns are at ``a``.  So a column with its neighbours at ``a`` (its own
sublattice) can be compared with its neighbours at ``a / sqrt(3)`` (the other
one): the brighter side is metal (Z contrast).  This works with the classical
peak detector, which does not label sites, and it is indifferent to the
absolute pixel calibration because ``a`` is measured from the columns
themselves (:func:`lattice_constant_px`).

Pure functions of positions and amplitudes (no Dask); the metal-metal
spacings built on them are :func:`stemscale.strain.metal_spacings`.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ..errors import InputError

__all__ = ["classify_sublattices", "lattice_constant_px", "neighbour_pairs", "robust_z"]


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
    same = neighbour_pairs(tree, xy, a, tolerance)
    cross = neighbour_pairs(tree, xy, a / np.sqrt(3.0), tolerance)
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


def neighbour_pairs(tree: cKDTree, xy: np.ndarray, d: float, tol: float) -> np.ndarray:
    """Index pairs ``(m, 2)`` of the points ``xy`` (indexed by ``tree``) whose distance is ``d (1 +- tol)``.

    Parameters
    ----------
    tree
        :class:`scipy.spatial.cKDTree` of ``xy``.
    xy
        (n, 2) positions.
    d
        Distance of the pairs (same unit as ``xy``).
    tol
        Relative tolerance of the distance.

    Returns
    -------
    numpy.ndarray
        ``(m, 2)`` integer rows of ``xy``, ``i < j`` in each pair.
    """
    pairs = tree.query_pairs(d * (1 + tol), output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros((0, 2), dtype=int)
    dist = np.hypot(*(xy[pairs[:, 0]] - xy[pairs[:, 1]]).T)
    return pairs[dist >= d * (1 - tol)]
