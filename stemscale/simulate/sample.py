"""What is imaged (:class:`Sample`) and how the scan distorts it (:class:`Distortions`)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..classes import check_defect_class
from ..errors import InputError, MosaicNotFoundError
from .fields import field_cutoff, oscillating_radial_field
from .materials import MATERIALS, METALS, column_species, cross_section

__all__ = ["Sample", "Distortions", "Structure", "DEFAULT_CONCENTRATIONS", "METAL_CLASSES", "CHALCOGEN_CLASSES"]

#: Defects that live on metal sites and on chalcogen (X2) sites.
METAL_CLASSES = ("MV", "MSub")
CHALCOGEN_CLASSES = ("SV", "DV", "2Te", "TeSe")

#: Per-site probabilities of the default WSe2 sample (fractions of metal / chalcogen sites).
DEFAULT_CONCENTRATIONS: dict[str, float] = {
    "SV": 0.02, "DV": 0.002, "2Te": 0.01, "TeSe": 0.01, "MV": 0.002, "MSub": 0.005,
}


def _finite(value: Any, what: str, *, minimum: float | None = None, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"{what} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise InputError(f"{what} must be finite, got {value!r}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise InputError(f"{what} must be {'>' if strict else '>='} {minimum}, got {value!r}")
    return value


@dataclass(frozen=True)
class Structure:
    """A user structure projected along z into atom columns.

    Attributes
    ----------
    xy
        (n, 2) column positions in Å (cross-section-weighted mean of its atoms).
    atoms
        Per column, the tuple of its element symbols.
    cell
        (2, 2) in-plane lattice vectors (rows, Å) for periodic tiling, or ``None``
        to place the structure once.
    """

    xy: np.ndarray
    atoms: tuple[tuple[str, ...], ...]
    cell: np.ndarray | None = None

    @property
    def species(self) -> list[str]:
        return [column_species(a) for a in self.atoms]

    @property
    def sites(self) -> np.ndarray:
        """0 for metal columns, 1 for the others."""
        return np.array([0 if any(s in METALS for s in a) else 1 for a in self.atoms], dtype=np.int8)


def project_atoms(
    positions: np.ndarray,
    species: Sequence[str],
    *,
    cell: np.ndarray | None = None,
    tolerance_A: float = 0.5,
    cross_sections: Mapping[str, float] | None = None,
) -> Structure:
    """Group atoms whose projected (x, y) lie within ``tolerance_A`` into columns."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] not in (2, 3) or len(pos) == 0:
        raise InputError(f"atom positions must be an (n, 3) array of x, y, z in Å, got shape {pos.shape}")
    if not np.isfinite(pos).all():
        raise InputError("atom positions contain NaN or Inf")
    species = [str(s) for s in species]
    if len(species) != len(pos):
        raise InputError(f"got {len(pos)} atom positions but {len(species)} species")
    weights = np.array([cross_section(s, dict(cross_sections or {})) for s in species])
    xy = pos[:, :2]
    pairs = cKDTree(xy).query_pairs(tolerance_A, output_type="ndarray")
    n = len(xy)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    ncol, label = connected_components(graph, directed=False)
    wsum = np.bincount(label, weights, ncol)
    cx = np.bincount(label, weights * xy[:, 0], ncol) / wsum
    cy = np.bincount(label, weights * xy[:, 1], ncol) / wsum
    atoms: list[list[str]] = [[] for _ in range(ncol)]
    for lab, s in zip(label, species):
        atoms[lab].append(s)
    order = np.lexsort((cx, cy))  # deterministic column order: by row, then x
    if cell is not None:
        cell = np.asarray(cell, dtype=np.float64)[:2, :2]
        if abs(np.linalg.det(cell)) < 1e-6:
            raise InputError("the structure's in-plane cell is degenerate; pass periodic=False")
    return Structure(
        xy=np.column_stack([cx, cy])[order],
        atoms=tuple(tuple(sorted(atoms[k])) for k in order),
        cell=cell,
    )


@dataclass(frozen=True)
class Sample:
    """The specimen: a 2H-MX2 monolayer with random point defects, or a user structure.

    Parameters
    ----------
    material
        "WSe2" (default, a = 3.297 Å), "MoS2" (3.16 Å), "WS2" or "MoSe2".
    concentrations
        Probability per site of each defect class of
        :data:`stemscale.classes.DEFECT_CLASSES`: SV, DV, 2Te, TeSe per
        chalcogen (X2) column, MV, MSub per metal column.  Classes left out
        have zero concentration.  In MoS2, "2Te"/"TeSe" are double/single
        substitutions by the heavier chalcogen ``substituent`` (Se).
    lattice_constant_A
        Override the material's lattice constant.
    substituent, metal_substituent
        Override the dopant species (defaults: Te and Mo in WSe2, Se and W in MoS2).
    rotation_deg
        Lattice rotation (degrees, counter-clockwise in (x, y)); ``None`` draws it from the seed.
    offset_A
        Position (x, y) in Å of the metal site (0, 0); ``None`` draws it from the seed.
    min_defect_spacing_A
        Minimum distance between defects (Matérn type-II thinning: a defect
        survives when no other candidate within this distance has a higher
        random priority), 0 for none.  Thinning lowers the realised
        concentrations below the requested ones.
    displacement_fields
        Defect class -> radial field (distance Å -> displacement pm, outward
        positive, with a ``cutoff_A`` attribute).  Default: SVs carry
        :func:`~stemscale.simulate.oscillating_radial_field`.
    position_noise_pm
        Standard deviation of independent static displacements of every column (pm).
    background_fraction
        Mean fraction of incident electrons detected from a uniform support
        or contamination layer (0.003 is about a quarter of WSe2's mean signal).
    background_variation
        Relative amplitude of its smooth spatial variation (0 to < 1).
    background_length_A
        Length scale of that variation (Å).
    cross_sections_A2
        Override detected cross-sections per element (Å²).
    structure
        A user :class:`Structure` (see :meth:`from_atoms`, :meth:`from_file`);
        then no random defects are added.
    """

    material: str = "WSe2"
    concentrations: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_CONCENTRATIONS))
    lattice_constant_A: float | None = None
    substituent: str | None = None
    metal_substituent: str | None = None
    rotation_deg: float | None = 0.0
    offset_A: tuple[float, float] | None = None
    min_defect_spacing_A: float = 0.0
    displacement_fields: Mapping[str, Callable[[np.ndarray], np.ndarray]] = field(
        default_factory=lambda: {"SV": oscillating_radial_field()}
    )
    position_noise_pm: float = 0.0
    background_fraction: float = 0.003
    background_variation: float = 0.3
    background_length_A: float = 50.0
    cross_sections_A2: Mapping[str, float] | None = None
    structure: Structure | None = None

    def __post_init__(self) -> None:
        if self.material not in MATERIALS and self.structure is None:
            raise InputError(
                f"unknown material {self.material!r}; expected one of {', '.join(MATERIALS)} "
                "or a user structure (Sample.from_atoms / Sample.from_file)"
            )
        if not isinstance(self.concentrations, Mapping):
            raise InputError(f"concentrations must be a dict of class -> fraction, got {self.concentrations!r}")
        for name, value in self.concentrations.items():
            check_defect_class(name)
            _finite(value, f"concentration of {name!r}", minimum=0.0)
            if value > 1:
                raise InputError(f"concentration of {name!r} is a fraction of sites in [0, 1], got {value!r}")
        for group, members in (("metal", METAL_CLASSES), ("chalcogen", CHALCOGEN_CLASSES)):
            total = sum(float(self.concentrations.get(c, 0.0)) for c in members)
            if total > 1:
                raise InputError(f"{group}-site concentrations ({', '.join(members)}) add up to {total} > 1")
        if self.structure is not None and any(v > 0 for v in self.concentrations.values()):
            raise InputError(
                "random defect concentrations apply to built-in lattices only; a user structure "
                "carries its own defects (pass concentrations={})"
            )
        if self.lattice_constant_A is not None:
            _finite(self.lattice_constant_A, "lattice_constant_A", minimum=0.5, strict=True)
        if self.rotation_deg is not None:
            _finite(self.rotation_deg, "rotation_deg")
        if self.offset_A is not None:
            if len(self.offset_A) != 2:
                raise InputError(f"offset_A must be (x, y) in Å, got {self.offset_A!r}")
            for v in self.offset_A:
                _finite(v, "offset_A")
        _finite(self.min_defect_spacing_A, "min_defect_spacing_A", minimum=0.0)
        _finite(self.position_noise_pm, "position_noise_pm", minimum=0.0)
        _finite(self.background_fraction, "background_fraction", minimum=0.0)
        bv = _finite(self.background_variation, "background_variation", minimum=0.0)
        if bv >= 1:
            raise InputError(f"background_variation must be < 1 (background stays positive), got {bv}")
        _finite(self.background_length_A, "background_length_A", minimum=0.0, strict=True)
        for name, fn in dict(self.displacement_fields or {}).items():
            check_defect_class(name)
            if not callable(fn):
                raise InputError(f"displacement field for {name!r} must be callable (distance Å -> pm)")
            field_cutoff(fn, name)
        for element, value in dict(self.cross_sections_A2 or {}).items():
            _finite(value, f"cross_sections_A2[{element!r}]", minimum=0.0)
        for sp in (self.substituent, self.metal_substituent):
            if sp is not None:
                cross_section(sp, dict(self.cross_sections_A2 or {}))  # validates the symbol

    # ------------------------------------------------------------ derived values
    @property
    def spec(self):
        return MATERIALS.get(self.material)

    @property
    def a(self) -> float:
        """Lattice constant (Å)."""
        return float(self.lattice_constant_A or self.spec.a)

    @property
    def metal(self) -> str:
        return self.spec.metal

    @property
    def chalcogen(self) -> str:
        return self.spec.chalcogen

    @property
    def x_sub(self) -> str:
        return self.substituent or self.spec.substituent

    @property
    def m_sub(self) -> str:
        return self.metal_substituent or self.spec.metal_substituent

    def sigma(self, element: str) -> float:
        """Detected cross-section (Å²) of one atom."""
        return cross_section(element, dict(self.cross_sections_A2 or {}))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly description (for metadata)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "structure":
                out[f.name] = None if value is None else {"columns": len(value.atoms), "periodic": value.cell is not None}
            elif f.name == "displacement_fields":
                out[f.name] = {k: repr(v) for k, v in dict(value or {}).items()}
            elif isinstance(value, Mapping):
                out[f.name] = dict(value)
            else:
                out[f.name] = value
        return out

    # ------------------------------------------------------------ user structures
    @classmethod
    def from_atoms(
        cls,
        positions: np.ndarray,
        species: Sequence[str],
        *,
        cell: np.ndarray | None = None,
        periodic: bool | None = None,
        material: str = "WSe2",
        tolerance_A: float = 0.5,
        **kwargs: Any,
    ) -> "Sample":
        """A sample made of an explicit atom list, projected along z into columns.

        Parameters
        ----------
        positions
            (n, 3) x, y, z in Å (z is ignored by the incoherent projection).
        species
            Element symbol of each atom.
        cell
            In-plane lattice vectors (2 x 2 or 3 x 3, rows, Å).
        periodic
            Tile the structure over the image (default: when a cell is given).
        material
            Host material used to name defect classes in the truth table
            (e.g. a Te2 column in WSe2 is "2Te").
        tolerance_A
            Atoms closer than this in projection share a column.
        **kwargs
            Other :class:`Sample` fields (background, rotation is ignored).
        """
        periodic = cell is not None if periodic is None else periodic
        if periodic and cell is None:
            raise InputError("periodic=True needs the structure's cell")
        structure = project_atoms(
            positions, species, cell=cell if periodic else None, tolerance_A=tolerance_A,
            cross_sections=kwargs.get("cross_sections_A2"),
        )
        kwargs.setdefault("concentrations", {})
        kwargs.setdefault("displacement_fields", {})
        kwargs.setdefault("offset_A", (0.0, 0.0))
        return cls(material=material, structure=structure, **kwargs)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, index: int | str = -1, **kwargs: Any) -> "Sample":
        """A sample from any structure file ASE can read (xyz, cif, POSCAR, extxyz ...).

        The in-plane cell (first two cell vectors) is kept for periodic
        tiling when the file has one and ``periodic`` is not False.
        """
        if not os.path.exists(path):
            raise MosaicNotFoundError(f"no structure file at '{os.fspath(path)}'")
        try:
            import ase.io
        except ImportError:  # pragma: no cover - optional dependency
            raise InputError("reading structure files needs ASE: pip install 'stemscale[ase]'") from None
        try:
            atoms = ase.io.read(os.fspath(path), index=index)
        except Exception as exc:
            raise InputError(f"ASE could not read '{os.fspath(path)}': {exc}") from None
        if isinstance(atoms, list):
            raise InputError(f"index={index!r} selects {len(atoms)} structures in '{os.fspath(path)}'; "
                             "pass the index of one frame")
        cell = None
        if atoms.cell.rank >= 2 and bool(np.asarray(atoms.pbc)[:2].all()):
            cell = np.asarray(atoms.cell)[:2, :2]
        return cls.from_atoms(atoms.get_positions(), atoms.get_chemical_symbols(), cell=cell, **kwargs)


@dataclass(frozen=True)
class Distortions:
    """Scan distortions, applied identically to image, labels and truth.

    Pixel (row i, column j) images the sample point

        x = pixel_size * ((1 + scale_x) * (j + jitter_i) + shear * i)
        y = pixel_size * (1 + scale_y) * i

    so ``shear`` is the fast-axis drift per scan line (in pixels per line),
    ``scale_x``/``scale_y`` are relative scan-step errors (slow drift along
    y), and ``jitter_i`` is a random per-line shift (Gaussian, σ =
    ``jitter_px``, clipped at ``jitter_clip`` σ), a pure function of the
    global line index.  An atom therefore appears at pixel column
    ``x_undistorted - jitter`` of its own row, which is what the truth
    table records.

    Parameters
    ----------
    shear, scale_x, scale_y
        Drift shear and scale (dimensionless, e.g. 0.01).
    jitter_px
        Standard deviation of the per-line x jitter (pixels).
    jitter_clip
        Clip of the jitter in units of its σ (keeps tiles' margins finite).
    """

    shear: float = 0.0
    scale_x: float = 0.0
    scale_y: float = 0.0
    jitter_px: float = 0.0
    jitter_clip: float = 4.0

    def __post_init__(self) -> None:
        for f in fields(self):
            _finite(getattr(self, f.name), f"Distortions.{f.name}")
        for name in ("scale_x", "scale_y"):
            if not -0.5 < getattr(self, name) < 0.5:
                raise InputError(f"Distortions.{name} must be a small relative change in (-0.5, 0.5)")
        if abs(self.shear) >= 0.5:
            raise InputError(f"Distortions.shear must be in (-0.5, 0.5), got {self.shear}")
        _finite(self.jitter_px, "Distortions.jitter_px", minimum=0.0)
        _finite(self.jitter_clip, "Distortions.jitter_clip", minimum=0.0, strict=True)

    @property
    def affine(self) -> tuple[float, float, float, float]:
        """Row-major pixel -> sample matrix (a_xx, a_xy, a_yx, a_yy), in pixels."""
        return (1.0 + self.scale_x, self.shear, 0.0, 1.0 + self.scale_y)

    @property
    def max_jitter_px(self) -> float:
        return self.jitter_px * self.jitter_clip

    def to_dict(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def random(cls, rng: np.random.Generator | int | None = None, **overrides: Any) -> "Distortions":
        """Paper-like distortions: shear and scale ~ N(0.01, 0.01) with random sign, jitter σ ~ U(0, 1) px."""
        rng = np.random.default_rng(rng)
        sign = lambda: rng.choice([-1.0, 1.0])  # noqa: E731
        values = dict(
            shear=float(np.clip(sign() * rng.normal(0.01, 0.01), -0.05, 0.05)),
            scale_x=float(np.clip(sign() * rng.normal(0.01, 0.01), -0.05, 0.05)),
            scale_y=float(np.clip(sign() * rng.normal(0.01, 0.01), -0.05, 0.05)),
            jitter_px=float(rng.uniform(0.0, 1.0)),
        )
        values.update(overrides)
        return cls(**values)
