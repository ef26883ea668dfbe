"""Atom columns inside a box of the sample plane, generated from global indices.

For a built-in 2H-MX2 lattice every site is identified by its lattice
indices (n1, n2) and sublattice s (0 = metal, 1 = chalcogen X2 column).  Its
defect, priority and static noise are hashed from (seed, n1, n2, s), so the
columns of any box are the same whichever box (tile) asks for them, and a
mosaic never holds more than one tile's sites.  Defect spacing (Matérn
type-II thinning) and displacement fields are local rules: a box generates
the candidates within their range around itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ..classes import DEFECT_CLASSES
from ..errors import InputError
from . import _hash
from .fields import field_cutoff
from .materials import column_species
from .sample import CHALCOGEN_CLASSES, METAL_CLASSES, Sample

__all__ = ["Columns", "columns_in_box", "lattice_geometry"]

Box = tuple[float, float, float, float]  # xmin, xmax, ymin, ymax in Å (sample plane)

_ID_OFFSET = 1 << 29


@dataclass
class Columns:
    """Atom columns (one entry per column, empty ones included).

    Positions are in the sample plane (Å), displaced; ``dx_pm``/``dy_pm``
    hold the injected displacement (field + static noise).
    """

    column_id: np.ndarray
    x: np.ndarray
    y: np.ndarray
    dx_pm: np.ndarray
    dy_pm: np.ndarray
    site: np.ndarray  # int8: 0 metal, 1 chalcogen / other
    defect: np.ndarray  # int8: -1 none, else index into DEFECT_CLASSES
    species: np.ndarray  # int16 code into species_names
    species_names: list[str]
    weight: np.ndarray  # detected cross-section of the column (Å²)
    n_atoms: np.ndarray  # int8

    def __len__(self) -> int:
        return len(self.column_id)

    def take(self, index: np.ndarray) -> "Columns":
        return Columns(
            self.column_id[index], self.x[index], self.y[index], self.dx_pm[index], self.dy_pm[index],
            self.site[index], self.defect[index], self.species[index], self.species_names,
            self.weight[index], self.n_atoms[index],
        )


def _expand(box: Box, margin: float) -> Box:
    return (box[0] - margin, box[1] + margin, box[2] - margin, box[3] + margin)


def _in_box(x: np.ndarray, y: np.ndarray, box: Box) -> np.ndarray:
    return (x >= box[0]) & (x < box[1]) & (y >= box[2]) & (y < box[3])


def _rotation(sample: Sample, seed: int) -> float:
    if sample.rotation_deg is not None:
        return math.radians(sample.rotation_deg)
    return 2 * math.pi * float(_hash.uniform(seed, _hash.STREAM["offset"], 2))


def lattice_geometry(sample: Sample, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lattice vectors a1, a2 and the origin (metal site (0, 0)) in Å, after rotation and offset."""
    theta = _rotation(sample, seed)
    if sample.structure is not None and sample.structure.cell is not None:
        rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        a1, a2 = (rot @ sample.structure.cell.T).T
    else:
        a = sample.a
        a1 = a * np.array([math.cos(theta), math.sin(theta)])
        a2 = a * np.array([math.cos(theta + math.pi / 3), math.sin(theta + math.pi / 3)])
    if sample.offset_A is not None:
        origin = np.asarray(sample.offset_A, dtype=np.float64)
    else:
        u = _hash.uniform(seed, _hash.STREAM["offset"], np.arange(2))
        origin = u[0] * a1 + u[1] * a2
    return a1, a2, origin


def _index_range(a1, a2, origin, box: Box, basis: np.ndarray):
    mat = np.linalg.inv(np.column_stack([a1, a2]))
    corners = np.array([[box[0], box[2]], [box[1], box[2]], [box[0], box[3]], [box[1], box[3]]])
    lo, hi = np.inf * np.ones(2), -np.inf * np.ones(2)
    for b in basis:
        f = mat @ (corners - origin - b).T
        lo = np.minimum(lo, f.min(axis=1))
        hi = np.maximum(hi, f.max(axis=1))
    return np.arange(math.floor(lo[0]) - 1, math.ceil(hi[0]) + 2), np.arange(math.floor(lo[1]) - 1, math.ceil(hi[1]) + 2)


def _sites(a1, a2, origin, basis: np.ndarray, box: Box):
    """Lattice indices and ideal positions of every basis site inside ``box``."""
    r1, r2 = _index_range(a1, a2, origin, box, basis)
    n1, n2 = np.meshgrid(r1, r2, indexing="ij")
    n1, n2 = n1.ravel(), n2.ravel()
    bx = origin[0] + n1 * a1[0] + n2 * a2[0]
    by = origin[1] + n1 * a1[1] + n2 * a2[1]
    out_n1, out_n2, out_s, out_x, out_y = [], [], [], [], []
    for s, b in enumerate(basis):
        x, y = bx + b[0], by + b[1]
        keep = _in_box(x, y, box)
        out_n1.append(n1[keep])
        out_n2.append(n2[keep])
        out_s.append(np.full(int(keep.sum()), s))
        out_x.append(x[keep])
        out_y.append(y[keep])
    cat = np.concatenate
    return cat(out_n1).astype(np.int64), cat(out_n2).astype(np.int64), cat(out_s).astype(np.int64), cat(out_x), cat(out_y)


# Outcomes of a lattice site: (site, defect class or "", role) with role selecting its atoms.
_OUTCOMES = (
    (0, "", "M"), (0, "MV", "-"), (0, "MSub", "Msub"),
    (1, "", "X2"), (1, "SV", "X"), (1, "DV", "-"), (1, "2Te", "S2"), (1, "TeSe", "SX"),
)


def _outcome_atoms(sample: Sample, role: str) -> tuple[str, ...]:
    m, x, xs, ms = sample.metal, sample.chalcogen, sample.x_sub, sample.m_sub
    return {"M": (m,), "-": (), "Msub": (ms,), "X2": (x, x), "X": (x,), "S2": (xs, xs), "SX": (xs, x)}[role]


def _lattice_outcomes(sample: Sample, seed: int, n1, n2, s) -> np.ndarray:
    """Index into _OUTCOMES for every site (before spacing thinning)."""
    u = _hash.uniform(seed, _hash.STREAM["defect"], n1, n2, s)
    out = np.where(s == 0, 0, 3).astype(np.int8)
    conc = sample.concentrations
    for sub, base, classes in ((0, 0, METAL_CLASSES), (1, 3, CHALCOGEN_CLASSES)):
        lo = 0.0
        for cls in classes:
            c = float(conc.get(cls, 0.0))
            if c > 0:
                code = next(i for i, o in enumerate(_OUTCOMES) if o[0] == sub and o[1] == cls)
                out[(s == sub) & (u >= lo) & (u < lo + c)] = code
            lo += c
    return out


def _thin(sample: Sample, seed: int, n1, n2, s, x, y, cand: np.ndarray) -> np.ndarray:
    """Matérn type-II thinning: drop a candidate if a higher-priority one lies within the spacing."""
    d = sample.min_defect_spacing_A
    keep = cand.copy()
    idx = np.nonzero(cand)[0]
    if d <= 0 or len(idx) < 2:
        return keep
    prio = _hash.uniform(seed, _hash.STREAM["priority"], n1[idx], n2[idx], s[idx])
    pairs = cKDTree(np.column_stack([x[idx], y[idx]])).query_pairs(d, output_type="ndarray")
    if len(pairs):
        i, j = pairs[:, 0], pairs[:, 1]
        loser = np.where(prio[i] < prio[j], i, j)
        keep[idx[loser]] = False
    return keep


def _encode(n1, n2, s) -> np.ndarray:
    return ((n1 + _ID_OFFSET) << 32) | ((n2 + _ID_OFFSET) << 1) | s


def _displace(sample: Sample, x0, y0, dcls, dx0, dy0, dids, dx_pm, dy_pm, col_xy_tree) -> None:
    """Add every defect field to the columns (in a fixed order, so sums are bit-reproducible)."""
    for ci, cls in enumerate(DEFECT_CLASSES):
        fn = dict(sample.displacement_fields or {}).get(cls)
        if fn is None:
            continue
        sel = np.nonzero(dcls == ci)[0]
        if not len(sel):
            continue
        cutoff = field_cutoff(fn, cls)
        pairs = col_xy_tree.sparse_distance_matrix(
            cKDTree(np.column_stack([dx0[sel], dy0[sel]])), cutoff, output_type="ndarray"
        )
        if not len(pairs):
            continue
        # Sum each column's contributions in defect-id order, whatever box asked: bit-reproducible.
        order = np.argsort(dids[sel][pairs["j"]], kind="stable")
        cols = pairs["i"][order].astype(np.int64)
        src = sel[pairs["j"][order]]
        vx, vy = x0[cols] - dx0[src], y0[cols] - dy0[src]
        dist = np.hypot(vx, vy)
        ok = (dist > 1e-9) & (dist < cutoff)
        cols, vx, vy, dist = cols[ok], vx[ok], vy[ok], dist[ok]
        u = np.asarray(fn(dist), dtype=np.float64)
        # bincount sums in input order (defects sorted by id): bit-reproducible, and fast
        dx_pm += np.bincount(cols, u * vx / dist, minlength=len(dx_pm))
        dy_pm += np.bincount(cols, u * vy / dist, minlength=len(dy_pm))


def _position_noise(sample: Sample, seed: int, n1, n2, s, dx_pm, dy_pm) -> None:
    if sample.position_noise_pm > 0:
        st = _hash.STREAM["position_noise"]
        dx_pm += sample.position_noise_pm * _hash.normal(seed, st, n1, n2, s, 0)
        dy_pm += sample.position_noise_pm * _hash.normal(seed, st, n1, n2, s, 1)


def _lattice_columns(sample: Sample, seed: int, box: Box) -> Columns:
    a1, a2, origin = lattice_geometry(sample, seed)
    basis = np.array([[0.0, 0.0], (a1 + a2) / 3.0])
    field_range = max(
        (field_cutoff(f, c) for c, f in dict(sample.displacement_fields or {}).items()
         if sample.concentrations.get(c, 0) > 0),
        default=0.0,
    )
    spacing = sample.min_defect_spacing_A
    margin = field_range + spacing if (field_range > 0 or spacing > 0) else 0.0
    n1, n2, s, x0, y0 = _sites(a1, a2, origin, basis, _expand(box, margin))
    outcome = _lattice_outcomes(sample, seed, n1, n2, s)
    cand = (outcome != 0) & (outcome != 3)
    kept = _thin(sample, seed, n1, n2, s, x0, y0, cand)
    outcome = np.where(cand & ~kept, np.where(s == 0, 0, 3), outcome).astype(np.int8)

    inside = _in_box(x0, y0, box)
    # Table lookups per outcome.
    cls_index = np.array([DEFECT_CLASSES.index(o[1]) if o[1] else -1 for o in _OUTCOMES], dtype=np.int8)
    atoms = [_outcome_atoms(sample, o[2]) for o in _OUTCOMES]
    names = [column_species(a) for a in atoms]
    species_names = sorted(set(names))
    sp_code = np.array([species_names.index(n) for n in names], dtype=np.int16)
    weight_tab = np.array([sum(sample.sigma(e) for e in a) for a in atoms])
    natoms_tab = np.array([len(a) for a in atoms], dtype=np.int8)

    ci = np.nonzero(inside)[0]
    dx_pm = np.zeros(len(ci))
    dy_pm = np.zeros(len(ci))
    dcls = cls_index[outcome]
    defects = np.nonzero(dcls >= 0)[0]
    if len(defects) and field_range > 0 and len(ci):
        tree = cKDTree(np.column_stack([x0[ci], y0[ci]]))
        _displace(
            sample, x0[ci], y0[ci], dcls[defects], x0[defects], y0[defects],
            _encode(n1[defects], n2[defects], s[defects]), dx_pm, dy_pm, tree,
        )
    _position_noise(sample, seed, n1[ci], n2[ci], s[ci], dx_pm, dy_pm)
    oc = outcome[ci]
    return Columns(
        column_id=_encode(n1[ci], n2[ci], s[ci]),
        x=x0[ci] + dx_pm * 0.01,
        y=y0[ci] + dy_pm * 0.01,
        dx_pm=dx_pm,
        dy_pm=dy_pm,
        site=s[ci].astype(np.int8),
        defect=cls_index[oc],
        species=sp_code[oc],
        species_names=species_names,
        weight=weight_tab[oc],
        n_atoms=natoms_tab[oc],
    )


def _structure_columns(sample: Sample, seed: int, box: Box) -> Columns:
    st = sample.structure
    if st is None:
        raise InputError("the sample has no explicit structure; its columns come from the lattice")
    theta = _rotation(sample, seed)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    basis = st.xy @ rot.T
    origin = np.asarray(sample.offset_A if sample.offset_A is not None else (0.0, 0.0), dtype=np.float64)
    if st.cell is not None:
        a1, a2, _ = lattice_geometry(sample, seed)
        n1, n2, b, x, y = _sites(a1, a2, origin, basis, box)
        ids = ((n1 + (1 << 20)) << 42) | ((n2 + (1 << 20)) << 21) | b
    else:
        x, y = basis[:, 0] + origin[0], basis[:, 1] + origin[1]
        b = np.nonzero(_in_box(x, y, box))[0]
        x, y, ids = x[b], y[b], b.astype(np.int64)
        n1 = n2 = np.zeros(len(b), dtype=np.int64)
    names = st.species
    species_names = sorted(set(names))
    sp_code = np.array([species_names.index(n) for n in names], dtype=np.int16)
    weight_tab = np.array([sum(sample.sigma(e) for e in a) for a in st.atoms])
    natoms_tab = np.array([len(a) for a in st.atoms], dtype=np.int8)
    site_tab = st.sites
    defect_tab = _infer_defects(sample, st.atoms, site_tab)
    dx_pm = np.zeros(len(b))
    dy_pm = np.zeros(len(b))
    _position_noise(sample, seed, n1, n2, b.astype(np.int64), dx_pm, dy_pm)
    return Columns(
        column_id=ids.astype(np.int64), x=x + dx_pm * 0.01, y=y + dy_pm * 0.01, dx_pm=dx_pm, dy_pm=dy_pm,
        site=site_tab[b], defect=defect_tab[b], species=sp_code[b], species_names=species_names,
        weight=weight_tab[b], n_atoms=natoms_tab[b],
    )


def _infer_defects(sample: Sample, atoms, sites) -> np.ndarray:
    """Name the defect class of user columns relative to the host material (when it is known)."""
    out = np.full(len(atoms), -1, dtype=np.int8)
    if sample.spec is None:
        return out
    x, xs, m = sample.chalcogen, sample.x_sub, sample.metal
    table = {
        column_species((x,)): "SV",
        column_species((xs, xs)): "2Te",
        column_species((xs, x)): "TeSe",
    }
    for i, (a, site) in enumerate(zip(atoms, sites)):
        name = column_species(a)
        if site == 0:
            if name != m and len(a) == 1:
                out[i] = DEFECT_CLASSES.index("MSub")
        elif name in table:
            out[i] = DEFECT_CLASSES.index(table[name])
    return out


def columns_in_box(sample: Sample, seed: int, box: Box) -> Columns:
    """Every atom column of the sample whose *ideal* position lies in ``box`` (Å, half-open).

    Displacements (at most a few pm) are added afterwards, so callers pass
    a box with a small margin and filter on the displaced positions.
    """
    if sample.structure is not None:
        return _structure_columns(sample, seed, box)
    return _lattice_columns(sample, seed, box)
