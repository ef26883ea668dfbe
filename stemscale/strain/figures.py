"""Figures of a strain measurement (matplotlib, Agg; nothing is shown).

* :func:`class_averages_figure`: class average, pristine average and their difference;
* :func:`displacement_map_figure`: displacement arrows with error ellipses;
* :func:`radial_profile_figure`: shell-averaged radial displacements with
  error bars, against the continuum 1/r fit (and the injected truth, if given);
* :func:`precision_figure`: precision against N on log-log axes.

Each returns the path it wrote.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np
import pandas as pd

__all__ = ["class_averages_figure", "displacement_map_figure", "radial_profile_figure", "precision_figure"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def class_averages_figure(averages: Any, cls: str, path: str | os.PathLike[str], *, pristine: str = "pristine",
                          dpi: int = 80) -> str:
    """Class average, pristine average and their difference, side by side."""
    plt = _plt()
    fig, ax = plt.subplots(1, 3, figsize=(12, 4.2))
    d, p = averages.mean(cls), averages.mean(pristine)
    panels = ((d, f"{cls} class average (N = {averages.count(cls)})"),
              (p, f"{pristine} average (N = {averages.count(pristine)})"), (d - p, f"{cls} - {pristine}"))
    for k, (img, title) in enumerate(panels):
        if k == 2:
            lim = float(np.percentile(np.abs(img), 99)) or 1.0
            im = ax[k].imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim)
        else:
            im = ax[k].imshow(img, cmap="magma")
        ax[k].set_title(title, fontsize=10)
        ax[k].set_xticks([])
        ax[k].set_yticks([])
        fig.colorbar(im, ax=ax[k], fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return os.fspath(path)


def displacement_map_figure(columns: pd.DataFrame, path: str | os.PathLike[str], *, pm_per_A: float = 4.0,
                            n_se: float = 2.0, title: str | None = None, dpi: int = 110) -> str:
    """Displacement arrows (``pm_per_A`` pm drawn as 1 Å) with ``n_se`` standard-error ellipses.

    ``columns`` is :meth:`ClassStrain.columns`; image orientation (y down) is kept.
    """
    from matplotlib.patches import Ellipse

    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 7))
    scale = 1.0 / pm_per_A
    for site, colour, name in (("M", "tab:blue", "metal"), ("X", "tab:orange", "chalcogen")):
        c = columns[columns["site"] == site]
        if c.empty:
            continue
        ax.scatter(c["x_A"], c["y_A"], s=8, color=colour, label=name)
        ax.quiver(c["x_A"], c["y_A"], c["ux_pm"] * scale, c["uy_pm"] * scale, angles="xy", scale_units="xy",
                  scale=1, color=colour, width=0.004)
        for r in c.itertuples():
            sx, sy = getattr(r, "ux_se_pm"), getattr(r, "uy_se_pm")
            if not (np.isfinite(sx) and np.isfinite(sy)):
                continue
            cxy = getattr(r, "uxy_cov_pm2")
            cov = np.array([[sx**2, cxy], [cxy, sy**2]]) if np.isfinite(cxy) else np.diag([sx**2, sy**2])
            vals, vecs = np.linalg.eigh(cov)
            ang = np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1]))
            ax.add_patch(Ellipse((r.x_A + r.ux_pm * scale, r.y_A + r.uy_pm * scale),
                                 2 * n_se * np.sqrt(max(vals[1], 0)) * scale, 2 * n_se * np.sqrt(max(vals[0], 0)) * scale,
                                 angle=ang, fill=False, color=colour, lw=0.8))
    ax.scatter([0], [0], marker="x", color="k", s=60, label="defect site")
    ax.set_aspect("equal")
    ax.invert_yaxis()
    ax.set_xlabel("x (Å)")
    ax.set_ylabel("y (Å)")
    ax.set_title(title or f"displacement vs pristine (arrow: {pm_per_A:g} pm = 1 Å; ellipses: {n_se:g} s.e.)",
                 fontsize=10)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return os.fspath(path)


def radial_profile_figure(shells: pd.DataFrame, path: str | os.PathLike[str], *, continuum: Mapping[str, Any] | None = None,
                          truth: np.ndarray | None = None, title: str | None = None, dpi: int = 110) -> str:
    """Shell radial displacements with error bars vs distance, the continuum fit and the truth."""
    plt = _plt()
    sh = shells.copy()
    if truth is not None:
        sh["truth"] = truth
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for site, colour, name in (("M", "tab:blue", "metal shells"), ("X", "tab:orange", "chalcogen shells")):
        s = sh[(sh["site"] == site) & (sh["r_A"] > 0)]
        if s.empty:
            continue
        ax.errorbar(s["r_A"], s["u_r_pm"], yerr=s["u_r_se_pm"], fmt="o", color=colour, capsize=3, ms=4,
                    label=f"{name} (measured)")
        if truth is not None:
            ax.plot(s["r_A"], s["truth"], "_", color=colour, ms=14, mew=2, label=f"{name} (injected)")
    r = np.linspace(max(0.8 * sh.loc[sh["r_A"] > 0, "r_A"].min(), 0.5), sh["r_A"].max(), 200)
    for site, fit in (continuum or {}).items():
        ax.plot(r, fit.predict(r), "--", color="k" if site == "M" else "0.5", lw=1,
                label=f"continuum A/r ({site}): A = {fit.amplitude_pm_A:.2f} pm·Å, chi2/dof = {fit.reduced_chi_square:.1f}")
    ax.axhline(0, color="0.7", lw=0.8)
    ax.set_xlabel("distance from the defect (Å)")
    ax.set_ylabel("radial displacement u_r (pm)")
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return os.fspath(path)


def precision_figure(table: pd.DataFrame, path: str | os.PathLike[str], *, slope: Mapping[str, float] | None = None,
                     reference: Mapping[str, Any] | None = None, dpi: int = 110) -> str:
    """Precision vs N (columns ``N``, ``se_ww_mean_pm``, optional ``sigma1_over_sqrtN_pm``, ``poisson_ideal_pm``).

    ``reference`` may hold ``{"table": {N: pm}, "point": (N, pm), "label": str}`` (e.g. the paper's numbers).
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    lab = "bootstrap s.e." + (f" (slope {slope['slope']:.3f} ± {slope['slope_se']:.3f})" if slope else "")
    ax.loglog(table["N"], table["se_ww_mean_pm"], "o-", label=lab)
    if "sigma1_over_sqrtN_pm" in table:
        ax.loglog(table["N"], table["sigma1_over_sqrtN_pm"], "s--", label="sigma_1 / sqrt(N) (single crops)")
    if "poisson_ideal_pm" in table:
        ax.loglog(table["N"], table["poisson_ideal_pm"], "^:", label="Gaussian-model Cramér-Rao bound")
    if reference:
        if "table" in reference:
            n = np.array(sorted(reference["table"]))
            ax.loglog(n, [reference["table"][k] for k in n], "k:", label=reference.get("table_label", "reference"))
        if "point" in reference:
            ax.loglog([reference["point"][0]], [reference["point"][1]], "r*", ms=12,
                      label=reference.get("point_label", "reference"))
    ax.set_xlabel("N crops")
    ax.set_ylabel("s.e. of the mean W-W spacing (pm)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return os.fspath(path)
