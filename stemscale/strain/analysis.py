"""Strain around a defect class: fits of the class and pristine averages, bootstrap errors, tables.

:func:`analyse_class` is the measurement step of the pipeline:

1. fit the lattice of each average and list its sites within ``radius_A``;
2. fit every column (Gaussian per column, neighbour tails modelled);
3. derive spacings, displacements, shells, bonds and strain
   (:class:`~stemscale.strain.geometry.StrainGeometry`);
4. bootstrap: resampled averages of the fit-window pixels by matrix
   products over the crop stacks, refitted in one batch, independent
   resamples for the class and the pristine crops; the standard deviation
   over resamples is the standard error of every number;
5. a continuum (1/r) fit of the radial profile.

It returns a :class:`ClassStrain` with tidy tables and ``to_dict`` for
``summary.json``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from ..lattice import DEFAULT_MATERIAL, HexLattice, fit_lattice, lattice_constant
from .columns import ColumnFit, fit_columns
from .continuum import ContinuumFit, fit_centre_of_dilatation
from .geometry import StrainGeometry

__all__ = ["MeasureConfig", "ClassStrain", "measure_average", "analyse_class", "bootstrap_positions",
           "single_crop_spread"]


@dataclass(frozen=True)
class MeasureConfig:
    """Settings of the measurement.

    Attributes
    ----------
    lattice_constant_A
        Nominal lattice constant (start of the lattice fit); default: the
        default material's (WSe2, :func:`stemscale.lattice.lattice_constant`).
    radius_A
        Columns within this distance of the centre site are fitted and reported.
    window
        Gaussian fit window edge (px); the paper used 7.
    window_radius_A
        Only pixels within this distance of each column are fitted (a disc
        in the square window; ``None``: the whole square).  0.88 Å (4.25 px
        at 20.74 pm) in a 9 px window keeps the fitting bias next to a
        vacancy below 0.1 pm in simulations while using ~60 pixels.
    weighted
        Weight pixels by the inverse variance of the averaged crops.
    neighbour_model, neighbour_rounds
        How neighbour tails enter the fits (:func:`~stemscale.strain.columns.fit_columns`);
        ``"none"`` is the paper's plain fit.
    core_radius_A
        Columns this close to the centre are the defect's own (they keep
        their own amplitude and widths in the smoothed neighbour model).
    model
        Peak model (``gauss2d_elliptic`` as the paper).
    centre_radius_A
        Metal columns within this distance define the centre.
    n_boot
        Bootstrap resamples.
    continuum_r_min_A
        Shells closer than this are left out of the continuum fit.
    seed
        Seed of the bootstrap.
    """

    lattice_constant_A: float = lattice_constant(DEFAULT_MATERIAL)
    radius_A: float = 12.0
    window: int = 9
    window_radius_A: float | None = 0.88
    weighted: bool = True
    neighbour_model: str = "smoothed"
    neighbour_rounds: int = 6
    core_radius_A: float = 0.5
    model: str = "gauss2d_elliptic"
    centre_radius_A: float = 8.0
    n_boot: int = 1000
    continuum_r_min_A: float = 0.0
    seed: int = 0


def measure_average(image: np.ndarray, pixel_size_A: float, cfg: MeasureConfig | None = None,
                    lattice: HexLattice | None = None, variance: np.ndarray | None = None) -> tuple[HexLattice, ColumnFit]:
    """Lattice and column fits of one average (class or pristine).

    ``variance`` is the pixel variance of the averaged crops (used as
    weights when ``cfg.weighted``).
    """
    cfg = cfg or MeasureConfig()
    img = np.asarray(image, dtype=np.float64)
    a_px = cfg.lattice_constant_A / pixel_size_A
    lat = lattice or fit_lattice(img, a_px)
    sites = lat.sites(img.shape, margin=cfg.window // 2 + 1)
    sites = sites[sites["r_px"] <= cfg.radius_A / pixel_size_A + 1e-9].reset_index(drop=True)
    # fit one more ring so every reported column has its neighbours' tails modelled
    ring = lat.sites(img.shape, margin=cfg.window // 2 + 1)
    ring = ring[(ring["r_px"] > cfg.radius_A / pixel_size_A + 1e-9)
                & (ring["r_px"] <= cfg.radius_A / pixel_size_A + 1.2 * a_px)]
    allsites = pd.concat([sites.assign(reported=True), ring.assign(reported=False)], ignore_index=True)
    radius = None if cfg.window_radius_A is None else cfg.window_radius_A / pixel_size_A
    fit = fit_columns(img, allsites, window=cfg.window, neighbour_rounds=cfg.neighbour_rounds, model=cfg.model,
                      neighbour_model=cfg.neighbour_model, core_radius_px=cfg.core_radius_A / pixel_size_A,
                      window_radius_px=radius, variance=variance if cfg.weighted else None)
    return lat, fit


def _same_lattice(image: np.ndarray, reference: HexLattice, a_px: float) -> HexLattice:
    """``reference`` translated onto the chalcogen site of ``image`` nearest the centre."""
    own = fit_lattice(image, a_px)
    h, w = np.shape(image)
    c = np.array([[w // 2, h // 2]], dtype=float)
    _, p_own = own.nearest(c, "X")
    _, p_ref = reference.nearest(c, "X")
    # Compared in one basis: near +-30 degrees the two fits may call different directions a1,
    # which swaps x_basis between 1/3 and 2/3 without any change of domain.
    angle, same_domain = own.orientation_difference(reference)
    if not same_domain or abs(angle) > 3:
        what = (f"lattices {angle:+.1f} degrees apart" if abs(angle) > 3 else
                "inverted (mirror / 60-degree) domains")
        raise InputError(f"the class average and the pristine average show {what}; their crops "
                         "come from differently oriented grains (average.options.orientation: "
                         "'map' maps inverted domains onto one, 'reject' drops them)")
    return reference.shifted(p_own[0] - p_ref[0])


def bootstrap_positions(stack: Any, fit: ColumnFit, counts: np.ndarray) -> np.ndarray:
    """Fitted positions ``(B, n, 2)`` of every column in B resampled averages of ``stack``."""
    from ..average.bootstrap import bootstrap_means

    pix = fit.pixel_index()
    uniq, inv = np.unique(pix.ravel(), return_inverse=True)
    means = bootstrap_means(stack, counts, pixels=uniq)
    xy, _ = fit.refit(means[:, inv].reshape(len(counts), *pix.shape))
    return xy


def single_crop_spread(stack: Any, fit: ColumnFit, geometry: StrainGeometry, *, which: str = "def",
                       max_crops: int | None = None) -> dict[str, Any]:
    """Spread sigma_1 of the mean W-W spacing (and of each bond) over single crops.

    Every crop is fitted with the same estimator as the average (windows,
    neighbour tails) and its first-shell W-W spacings computed.
    """
    pix = fit.pixel_index()
    uniq, inv = np.unique(pix.ravel(), return_inverse=True)
    data = stack.read(uniq) if hasattr(stack, "read") else np.asarray(stack, float).reshape(len(stack), -1)[:, uniq]
    if max_crops is not None:
        data = data[: int(max_crops)]
    xy, ok = fit.refit(data[:, inv].reshape(len(data), *pix.shape), rescale_core=False)
    idx = geometry.i_def if which == "def" else geometry.i_pri
    ww = geometry.ww
    p = xy[:, idx, :]
    v = p[:, ww[:, 0], :] - p[:, ww[:, 1], :]
    d = np.hypot(v[..., 0], v[..., 1]) * geometry.pixel_size_A * 100.0
    mean = d.mean(axis=1)
    good = np.isfinite(mean)
    m = mean[good]
    med = np.median(m) if len(m) else np.nan
    mad = 1.4826 * np.median(np.abs(m - med)) if len(m) else np.nan
    # clip gross failures (a fit that jumped to a neighbour) at 6 robust sigmas
    keep = np.abs(m - med) < 6 * mad if np.isfinite(mad) and mad > 0 else np.ones(len(m), bool)
    bonds = d[good][keep]
    return {
        "n_crops": int(len(mean)), "n_used": int(keep.sum()), "n_failed": int((~good).sum() + (~keep).sum()),
        "sigma1_mean_pm": float(np.std(m[keep], ddof=1)) if keep.sum() > 1 else float("nan"),
        "sigma1_mean_robust_pm": float(mad),
        "sigma1_bonds_pm": np.std(bonds, axis=0, ddof=1).tolist() if len(bonds) > 1 else [],
        "mean_pm": float(np.mean(m[keep])) if keep.any() else float("nan"),
    }


@dataclass
class ClassStrain:
    """Everything measured on one class against the pristine average.

    Attributes
    ----------
    cls, n_def, n_pri
        Class name and the numbers of averaged crops.
    geometry
        Matched sites and index sets.
    fit_def, fit_pri
        Column fits of the two averages.
    values
        Derived quantities of the main fits (see :meth:`StrainGeometry.evaluate`).
    boot
        The same over bootstrap resamples (leading axis B), or empty.
    se
        Standard errors (NaN without bootstrap).
    continuum
        Fits of u_r = A / r per sublattice.
    """

    cls: str
    n_def: int
    n_pri: int
    pixel_size_A: float
    geometry: StrainGeometry
    fit_def: ColumnFit
    fit_pri: ColumnFit
    values: dict[str, np.ndarray]
    boot: dict[str, np.ndarray] = field(default_factory=dict)
    se: dict[str, np.ndarray] = field(default_factory=dict)
    continuum: dict[str, ContinuumFit] = field(default_factory=dict)
    n_boot: int = 0

    # ------------------------------------------------------------------ tables
    def _se(self, key: str) -> np.ndarray:
        return self.se.get(key, np.full(np.shape(self.values[key]), np.nan))

    @property
    def table(self) -> pd.DataFrame:
        """Per-column table (:meth:`columns`)."""
        return self.columns()

    @property
    def profile(self) -> pd.DataFrame:
        """Radial profile: shells sorted by distance (:meth:`shells`)."""
        return self.shells().sort_values(["r_A", "site"]).reset_index(drop=True)

    def columns(self) -> pd.DataFrame:
        """Per column: ideal offset, displacement (pm), radial / tangential parts, errors, covariance."""
        s = self.geometry.sites.copy()
        u = self.values["u"]
        s["x_A"] = s["dx_px"] * self.pixel_size_A
        s["y_A"] = s["dy_px"] * self.pixel_size_A
        s["ux_pm"], s["uy_pm"] = u[:, 0], u[:, 1]
        s["u_r_pm"], s["u_t_pm"] = self.values["u_r"], self.values["u_t"]
        se_u = self._se("u")
        s["ux_se_pm"], s["uy_se_pm"] = se_u[:, 0], se_u[:, 1]
        s["u_r_se_pm"], s["u_t_se_pm"] = self._se("u_r"), self._se("u_t")
        if "u" in self.boot:
            b = self.boot["u"]
            # columns never measured in any bootstrap draw have an all-NaN covariance
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                d = b - np.nanmean(b, axis=0)
                s["uxy_cov_pm2"] = np.nanmean(d[..., 0] * d[..., 1], axis=0) * len(b) / max(1, len(b) - 1)
        else:
            s["uxy_cov_pm2"] = np.nan
        return s

    def shells(self) -> pd.DataFrame:
        """Radial profile: one row per shell (sublattice, ideal distance) with errors."""
        sh = self.geometry.shells.copy()
        sh["u_r_pm"] = self.values["shell_u_r"]
        sh["u_r_se_pm"] = self._se("shell_u_r")
        sh["u_t_pm"] = self.values["shell_u_t"]
        sh["u_t_se_pm"] = self._se("shell_u_t")
        return sh

    def spacings(self) -> pd.DataFrame:
        """The W-W triangle around the defect: three bonds and their mean, class vs pristine."""
        rows = []
        for k in range(3):
            rows.append({"bond": f"d{k + 1}", "class_pm": self.values["ww_def"][k], "class_se_pm": self._se("ww_def")[k],
                         "pristine_pm": self.values["ww_pri"][k], "pristine_se_pm": self._se("ww_pri")[k]})
        rows.append({"bond": "mean", "class_pm": float(self.values["ww_mean_def"]),
                     "class_se_pm": float(self._se("ww_mean_def")),
                     "pristine_pm": float(self.values["ww_mean_pri"]), "pristine_se_pm": float(self._se("ww_mean_pri"))})
        out = pd.DataFrame(rows)
        out["change_pm"] = out["class_pm"] - out["pristine_pm"]
        return out

    def bonds(self) -> pd.DataFrame:
        """Metal-metal bond length changes (pm) at their ideal midpoints (Å)."""
        mid = self.geometry.bond_midpoints() * self.pixel_size_A
        return pd.DataFrame({"x_A": mid[:, 0], "y_A": mid[:, 1], "r_A": np.hypot(mid[:, 0], mid[:, 1]),
                             "change_pm": self.values["bond_change"], "se_pm": self._se("bond_change")})

    def strain(self) -> pd.DataFrame:
        """Strain of every metal triangle (dimensionless) at its ideal centroid (Å)."""
        c = self.geometry.triangle_centres() * self.pixel_size_A
        e = self.values["strain"]
        se = self._se("strain")
        return pd.DataFrame({"x_A": c[:, 0], "y_A": c[:, 1], "r_A": np.hypot(c[:, 0], c[:, 1]),
                             "exx": e[:, 0], "eyy": e[:, 1], "exy": e[:, 2],
                             "exx_se": se[:, 0], "eyy_se": se[:, 1], "exy_se": se[:, 2],
                             "dilatation": self.values["dilatation"], "dilatation_se": self._se("dilatation")})

    def to_dict(self) -> dict[str, Any]:
        sp = self.spacings()
        shells = self.shells()
        return {
            "class": self.cls, "n_class": self.n_def, "n_pristine": self.n_pri, "n_boot": self.n_boot,
            "ww_spacing_pm": sp.to_dict(orient="records"),
            "shells": shells.to_dict(orient="records"),
            "continuum": {k: v.to_dict() for k, v in self.continuum.items()},
        }


def analyse_class(
    averages: Any,
    cls: str,
    *,
    pristine: str = "pristine",
    config: MeasureConfig | None = None,
    stacks: tuple[Any, Any] | None = None,
    bootstrap: bool = True,
) -> ClassStrain:
    """Measure a class average against the pristine average, with bootstrap errors.

    Parameters
    ----------
    averages
        An :class:`~stemscale.average.AveragingResult` (class
        averages, counts and the crop stack location).
    cls
        Defect class to measure.
    pristine
        Name of the pristine reference class.
    config
        :class:`MeasureConfig`.
    stacks
        The class's and the pristine crop stacks (default: the averaging
        result's, :meth:`~stemscale.average.AveragingResult.stack`).
    bootstrap
        Compute bootstrap errors (needs the crop stack, and at least two crops of each
        average: with one the standard errors are NaN).
    """
    cfg = config or MeasureConfig()
    ps = float(averages.pixel_size_A)
    for c in (cls, pristine):
        if averages.count(c) == 0:
            raise InputError(f"no averaged crops of class {c!r}; averaged classes: {averages.classes}")
    mom = averages.accumulator.moments
    lat_p, fp = measure_average(averages.mean(pristine), ps, cfg,
                                variance=mom[pristine].std ** 2 if mom[pristine].count > 1 else None)
    # The class average is fitted on the pristine lattice, moved onto its own centre site, so
    # windows sit identically on both (a window-placement difference biases the difference).
    lat_d = _same_lattice(averages.mean(cls), lat_p, cfg.lattice_constant_A / ps)
    _, fd = measure_average(averages.mean(cls), ps, cfg, lattice=lat_d,
                            variance=mom[cls].std ** 2 if mom[cls].count > 1 else None)
    rep_d = fd.table[fd.table["reported"]]
    rep_p = fp.table[fp.table["reported"]]
    geo = StrainGeometry.from_sites(rep_d, rep_p, pixel_size_A=ps, centre_radius_A=cfg.centre_radius_A)
    # geometry indices refer to rows of the reported subsets, which are the leading rows
    values = geo.evaluate(fd.xy, fp.xy)
    out = ClassStrain(cls, averages.count(cls), averages.count(pristine), ps, geo, fd, fp, values)
    # one crop has no spread to resample: its standard errors stay undefined (NaN), never 0
    if bootstrap and cfg.n_boot > 0 and min(out.n_def, out.n_pri) >= 2:
        from ..average.bootstrap import resample_counts, standard_error

        sd, sp = stacks if stacks is not None else (averages.stack(cls), averages.stack(pristine))
        rng = np.random.default_rng(cfg.seed)
        xy_d = bootstrap_positions(sd, fd, resample_counts(len(sd), cfg.n_boot, seed=rng))
        xy_p = bootstrap_positions(sp, fp, resample_counts(len(sp), cfg.n_boot, seed=rng))
        out.boot = geo.evaluate(xy_d, xy_p)
        out.se = {k: standard_error(v, axis=0) for k, v in out.boot.items()}
        out.n_boot = int(cfg.n_boot)
    sh = out.shells()
    for site in ("M", "X"):
        s = sh[(sh["site"] == site) & (sh["r_A"] > 0)]
        se = s["u_r_se_pm"].to_numpy()
        if len(s) >= 2 and np.isfinite(se).sum() >= 2:
            out.continuum[site] = fit_centre_of_dilatation(s["r_A"], s["u_r_pm"], se, r_min_A=cfg.continuum_r_min_A)
    return out
