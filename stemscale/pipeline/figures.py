"""Figures of a run, written as PNG files into ``<run>/figures``.

Each function takes tables and (a view of) the image and returns the path it
wrote.  Images are read through the lazy mosaic: an overview is a strided
view (at most ~2000 px a side), a zoom is a full-resolution window, so
figures of a terabyte mosaic cost little memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["overview_figure", "zoom_figure", "position_error_figure", "spacing_figure",
           "sites_figure", "class_average_figure", "profile_figure"]

_CLASS_COLOURS = {"SV": "tab:red", "DV": "tab:purple", "2Te": "tab:orange", "TeSe": "gold",
                  "MV": "tab:blue", "MSub": "tab:green"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _stretch(image: np.ndarray) -> tuple[float, float]:
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, [0.5, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1)


def overview_figure(mosaic: Any, defects: pd.DataFrame, out: Path, *, title: str = "",
                    max_px: int = 2000) -> Path:
    """The whole mosaic (strided) with every detected defect marked by class."""
    plt = _pyplot()
    ny, nx = mosaic.shape
    step = max(1, int(np.ceil(max(ny, nx) / max_px)))
    view = np.asarray(mosaic.data[::step, ::step], dtype=np.float32)
    fig, ax = plt.subplots(figsize=(8, 8 * ny / nx + 0.5))
    lo, hi = _stretch(view)
    ps = float(mosaic.attrs.get("pixel_size_angstrom", 1.0))
    extent = (-0.5 * step * ps / 10, (nx - 0.5) * ps / 10, (ny - 0.5) * ps / 10, -0.5 * step * ps / 10)
    ax.imshow(view, cmap="gray", vmin=lo, vmax=hi, extent=extent, interpolation="nearest")
    for cls, group in defects.groupby("class") if len(defects) else []:
        ax.scatter(group["x_px"] * ps / 10, group["y_px"] * ps / 10, s=6,
                   c=_CLASS_COLOURS.get(cls, "white"), label=f"{cls} ({len(group)})", linewidths=0)
    if len(defects):
        ax.legend(loc="upper right", fontsize=8, markerscale=2, framealpha=0.8)
    ax.set_xlabel("x (nm)")
    ax.set_ylabel("y (nm)")
    ax.set_title(title or f"{ny} x {nx} px, {ps * 100:.2f} pm/px")
    path = out / "overview.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def zoom_figure(mosaic: Any, atoms: pd.DataFrame, defects: pd.DataFrame, out: Path, *,
                size: int = 256, centre: tuple[float, float] | None = None,
                name: str = "zoom.png") -> Path:
    """A full-resolution window with fitted columns (by site) and defects."""
    plt = _pyplot()
    ny, nx = mosaic.shape
    size = min(size, ny, nx)
    if centre is None:
        if len(defects):  # show a defect if there is one
            row = defects.iloc[len(defects) // 2]
            centre = (float(row["y_px"]), float(row["x_px"]))
        else:
            centre = (ny / 2, nx / 2)
    y0 = int(np.clip(round(centre[0] - size / 2), 0, ny - size))
    x0 = int(np.clip(round(centre[1] - size / 2), 0, nx - size))
    window = np.asarray(mosaic.data[y0:y0 + size, x0:x0 + size], dtype=np.float32)
    fig, ax = plt.subplots(figsize=(7, 7))
    lo, hi = _stretch(window)
    ax.imshow(window, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    inside = atoms[atoms["x_px"].between(x0 - 0.5, x0 + size - 0.5)
                   & atoms["y_px"].between(y0 - 0.5, y0 + size - 0.5)]
    site_col = "sublattice" if "sublattice" in inside else "site"
    for site, colour in (("M", "cyan"), ("X", "yellow"), ("?", "lime")):
        sel = inside[inside[site_col] == site]
        if len(sel):
            ax.scatter(sel["x_px"] - x0, sel["y_px"] - y0, s=10, c=colour, linewidths=0,
                       label={"M": "metal column", "X": "chalcogen column", "?": "column"}[site])
    if len(defects):
        near = defects[defects["x_px"].between(x0, x0 + size) & defects["y_px"].between(y0, y0 + size)]
        for cls, group in near.groupby("class"):
            ax.scatter(group["x_px"] - x0, group["y_px"] - y0, s=160, facecolors="none",
                       edgecolors=_CLASS_COLOURS.get(cls, "white"), linewidths=1.5, label=cls)
    ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    ax.set_title(f"pixels y {y0}:{y0 + size}, x {x0}:{x0 + size} (full resolution)")
    ax.set_xticks([])
    ax.set_yticks([])
    path = out / name
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def position_error_figure(errors: pd.DataFrame, out: Path) -> Path:
    """Histograms of fitted minus true positions (pm) of pristine columns, per site."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, axis in zip(axes, ("dx_pm", "dy_pm")):
        for site, colour in (("M", "tab:blue"), ("X", "tab:orange")):
            sel = errors[(errors["site"] == site) & errors["pristine"]][axis].to_numpy()
            if len(sel) < 2:
                continue
            lim = np.percentile(np.abs(sel), 99.5)
            ax.hist(sel, bins=60, range=(-lim, lim), histtype="step", color=colour,
                    label=f"{site}: σ = {np.std(sel, ddof=1):.2f} pm (n = {len(sel)})")
        ax.set_xlabel(f"{axis[:2]} fitted - true (pm)")
        ax.set_ylabel("columns")
        ax.legend(fontsize=8)
    fig.suptitle("position precision of pristine columns against the simulation's truth")
    path = out / "position_errors.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def spacing_figure(result: Any, pixel_size: float, shape: tuple[int, int], out: Path) -> Path:
    """M-M spacing histograms per lattice direction and a map of every bond's length."""
    plt = _pyplot()
    bonds, cols = result.bonds, result.columns
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(13, 5.5))
    d = bonds["distance_pm"].to_numpy()
    if len(d):
        lo, hi = np.percentile(d, [0.5, 99.5])
        for k in range(3):
            dk = d[bonds["direction"].to_numpy() == k]
            if len(dk) > 1:
                ax0.hist(dk, bins=50, range=(lo, hi), histtype="step",
                         label=f"direction {k}: {dk.mean():.1f} ± {dk.std(ddof=1):.1f} pm (n = {len(dk)})")
        ax0.axvline(d.mean(), color="k", lw=0.8, ls="--")
        nominal = result.summary.get("nominal_a_pm")
        if nominal:
            ax0.axvline(nominal, color="tab:red", lw=0.8, ls=":", label=f"nominal a = {nominal:.0f} pm")
        ax0.legend(fontsize=8)
    ax0.set_xlabel("metal-metal distance (pm, file calibration)")
    ax0.set_ylabel("bonds")
    ax0.set_title(f"pristine M-M spacings: {result.summary.get('mean_pm', float('nan')):.1f} pm, "
                  f"spread {result.summary.get('spread_pm', float('nan')):.1f} pm")
    xy = cols[["x_px", "y_px"]].to_numpy()
    if len(bonds):
        from matplotlib.collections import LineCollection

        segs = np.stack([xy[bonds["i"].to_numpy()], xy[bonds["j"].to_numpy()]], axis=1) * pixel_size / 10
        lo, hi = np.percentile(d, [2, 98])
        lc = LineCollection(list(segs), cmap="coolwarm", linewidths=1.5)
        lc.set_array(d)
        lc.set_clim(lo, hi)
        ax1.add_collection(lc)
        fig.colorbar(lc, ax=ax1, label="M-M distance (pm)")
    other = cols[~cols["pristine"]]
    ax1.scatter(other["x_px"] * pixel_size / 10, other["y_px"] * pixel_size / 10, s=1, c="0.7")
    sub = cols[cols["substituted"]]
    ax1.scatter(sub["x_px"] * pixel_size / 10, sub["y_px"] * pixel_size / 10, s=12,
                facecolors="none", edgecolors="k", linewidths=0.6, label="substituted chalcogen")
    ax1.set_xlim(0, shape[1] * pixel_size / 10)
    ax1.set_ylim(shape[0] * pixel_size / 10, 0)
    ax1.set_aspect("equal")
    ax1.set_xlabel("x (nm)")
    ax1.set_ylabel("y (nm)")
    ax1.legend(loc="upper right", fontsize=8)
    ax1.set_title("pristine M-M bond lengths (grey: excluded columns)")
    path = out / "metal_spacings.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def sites_figure(mosaic: Any, columns: pd.DataFrame, out: Path, *, size: int = 256,
                 centre: tuple[float, float] | None = None) -> Path:
    """Full-resolution window with metal / chalcogen / substituted / pristine columns."""
    plt = _pyplot()
    ny, nx = mosaic.shape
    size = min(size, ny, nx)
    if centre is None:
        sub = columns[columns["substituted"]]
        centre = ((float(sub["y_px"].median()), float(sub["x_px"].median())) if len(sub)
                  else (ny / 2, nx / 2))
    y0 = int(np.clip(round(centre[0] - size / 2), 0, ny - size))
    x0 = int(np.clip(round(centre[1] - size / 2), 0, nx - size))
    window = np.asarray(mosaic.data[y0:y0 + size, x0:x0 + size], dtype=np.float32)
    inside = columns[columns["x_px"].between(x0 - 0.5, x0 + size - 0.5)
                     & columns["y_px"].between(y0 - 0.5, y0 + size - 0.5)]
    fig, axes = plt.subplots(1, 2, figsize=(13, 6.5))
    lo, hi = _stretch(window)
    for ax in axes:
        ax.imshow(window, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
    ax = axes[1]
    for site, colour, label in (("M", "cyan", "metal"), ("X", "yellow", "chalcogen"),
                                ("?", "red", "unassigned")):
        sel = inside[inside["sublattice"] == site]
        ax.scatter(sel["x_px"] - x0, sel["y_px"] - y0, s=12, c=colour, linewidths=0,
                   label=f"{label} ({len(sel)})")
    sel = inside[inside["substituted"]]
    ax.scatter(sel["x_px"] - x0, sel["y_px"] - y0, s=150, facecolors="none", edgecolors="red",
               linewidths=1.3, label=f"substituted chalcogen ({len(sel)})")
    sel = inside[inside["pristine"]]
    ax.scatter(sel["x_px"] - x0, sel["y_px"] - y0, s=60, facecolors="none", edgecolors="lime",
               linewidths=0.8, label=f"pristine metal ({len(sel)})")
    ax.legend(loc="upper right", fontsize=7, framealpha=0.85)
    axes[0].set_title(f"pixels y {y0}:{y0 + size}, x {x0}:{x0 + size}")
    axes[1].set_title("fitted columns by sublattice")
    path = out / "sites.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def class_average_figure(averages: Any, out: Path) -> Path:
    """Every class average (and the pristine one) with its number of crops."""
    plt = _pyplot()
    classes = [c for c in averages.classes if c != "pristine"] + (
        ["pristine"] if "pristine" in averages.classes else [])
    fig, axes = plt.subplots(1, len(classes), figsize=(4 * len(classes), 4.3), squeeze=False)
    ps = float(averages.pixel_size_A)
    for ax, cls in zip(axes[0], classes):
        image = np.asarray(averages.mean(cls), dtype=float)
        half = image.shape[0] * ps / 20  # nm
        lo, hi = _stretch(image)
        ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, extent=(-half, half, half, -half))
        ax.set_title(f"{cls}: N = {averages.count(cls)}")
        ax.set_xlabel("x (nm)")
    axes[0][0].set_ylabel("y (nm)")
    fig.suptitle("class averages (registered, summed crops)")
    path = out / "class_averages.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def profile_figure(measured: dict[str, Any], out: Path,
                   injected: dict[str, pd.DataFrame] | None = None) -> Path:
    """Radial displacement of every shell around each defect class, with bootstrap errors.

    With ``injected`` (a simulated mosaic), the displacements the simulation put
    in are drawn at the same shells.
    """
    plt = _pyplot()
    classes = list(measured)
    fig, axes = plt.subplots(1, len(classes), figsize=(6 * len(classes), 4.3), squeeze=False)
    for ax, cls in zip(axes[0], classes):
        shells = (injected or {}).get(cls)
        if shells is None:
            shells = measured[cls].shells()
        for site, colour in (("M", "tab:blue"), ("X", "tab:orange")):
            sel = shells[shells["site"] == site]
            ax.errorbar(sel["r_A"], sel["u_r_pm"], yerr=sel["u_r_se_pm"], fmt="o", ms=4,
                        color=colour, capsize=2, label=f"{site} measured")
            if "injected_u_r_pm" in sel:
                ax.plot(sel["r_A"], sel["injected_u_r_pm"], "x", color=colour, ms=7,
                        label=f"{site} injected")
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xlabel("distance from the defect (Å)")
        ax.set_ylabel("radial displacement vs pristine (pm)")
        ax.set_title(f"{cls} (N = {getattr(measured[cls], 'n_def', '?')})")
        ax.legend(fontsize=8)
    path = out / "displacement_profiles.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
