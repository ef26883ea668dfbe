"""Real data: stemscale's ``pipelines/mos2_real.yaml`` against atomap on the same MoS2 frame.

One run, one frame: the Se-implanted monolayer MoS2 HAADF image shipped in
``temul-toolkit`` 0.1.9 (1024 x 1024 px; GPL-3, installed with ``pip
--no-deps`` on first use and read where pip put it, never copied).

stemscale
    ``run_pipeline(load_pipeline("pipelines/mos2_real.yaml"))``, exactly what
    ``stemscale run pipelines/mos2_real.yaml`` does: local Dask cluster,
    ingest, column detection (the detector the YAML resolves to: the shipped
    MoS2 model when there is one) and batched Gaussian fits, Mo/S2 sublattices,
    substitutions, Mo-Mo spacings, figures and report.  Timed end to end
    (cluster start included) and per stage.  By default the same pipeline also
    runs with ``detect.detector=peaks`` (the classical detector, no model).
atomap (GPL-3, so only in a separate interpreter: ``--atomap-python`` or ``$ATOMAP_PYTHON``)
    The workflow of atomap's documentation for a hexagonal two-sublattice
    image, as the temul-toolkit authors used it on this very frame
    (``temul/example_scripts.py``), without its GUI steps and image filtering:

    1. ``hs.load`` the DM3 file;
    2. ``am.get_feature_separation`` over a range of separations (what a user
       looks at to choose the separation; timed separately);
    3. Mo: ``am.get_atom_positions(s, separation, pca=True)`` with the separation
       a user reads off the feature-separation plot: the middle of the plateau
       where only Mo columns are left, taken as the separation at which the
       peak count changes least (peak_local_max's square footprint puts that
       plateau at about 8-14 px here, below the Mo-Mo distance of ~24 px);
       ``Sublattice``, ``find_nearest_neighbors``,
       ``refine_atom_positions_using_center_of_mass``, then
       ``refine_atom_positions_using_2d_gaussian``;
    4. S2: ``construct_zone_axes`` on Mo, ``remove_atoms_from_image_using_2d_gaussian``
       (Mo subtracted), ``find_missing_atoms_from_zone_vector`` along a Mo zone
       vector of length sqrt(3) a with ``vector_fraction`` 1/3 or 2/3 (one of
       them is the S2 site, the other the empty hexagon centre: the one whose
       sites are brighter on the Mo-subtracted image is kept, as a user would
       see it), ``extend_outer_edges=True``; then a ``Sublattice`` on the
       Mo-subtracted image, ``find_nearest_neighbors``, centre of mass and
       2D-Gaussian refinement.  (If no such zone vector is found the S2 seeds
       fall back to ``get_atom_positions`` on the Mo-subtracted image; the
       results say which was used.)

    The S2 sites come from the Mo lattice geometry, so atomap "finds" an S2
    position at every lattice site between Mo columns, including sites whose
    S2 column is missing (vacancies); stemscale reports columns it detects.

Comparison
    Columns matched one to one (minimum total distance) within half of the
    projected Mo-S distance a/sqrt(3) (a measured from the columns); position
    differences in pm with the file's pixel size; per site; columns found by
    one tool only, over the whole frame and in the interior (one lattice
    constant from the edges: atomap's peak finder skips a border of
    ``separation`` pixels); wall times and speed ratios.  An overlay PNG shows
    both tools' positions on a crop of the frame.

Usage::

    ATOMAP_PYTHON=/path/to/venv/bin/python python benchmarks/bench_mos2_real.py
    python benchmarks/bench_mos2_real.py --atomap-python /tmp/atomap_env/bin/python
    python benchmarks/bench_mos2_real.py --no-atomap            # stemscale only
    python benchmarks/bench_mos2_real.py --crop 256 --no-atomap --variants auto   # smoke test
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import RESULTS_DIR, print_table, print_targets, target, write_results  # noqa: E402

NAME = "bench_mos2_real"
PIPELINE = ROOT / "pipelines" / "mos2_real.yaml"
NOMINAL_A_ANGSTROM = 3.16  # MoS2 lattice constant
#: Pipeline variants: name -> ``--set`` overrides on top of the YAML.
VARIANTS = {"auto": [], "peaks": ["detect.detector=peaks"]}
POSITION_TARGET_PM = 2.0
FOUND_TARGET = 0.95


# ----------------------------------------------------------------------------- input
def load_frame(crop: int | None) -> dict[str, Any]:
    """The frame (numpy), its pixel size and, with ``crop``, the crop window (centre)."""
    from stemscale.io import temul_mos2_frame_path
    from stemscale.io.frames import read_frame

    path = temul_mos2_frame_path(install=True)
    frame = read_frame(path, lazy=False)
    image = np.asarray(frame.data)
    window = None
    if crop:
        h, w = image.shape
        crop = min(crop, h, w)
        y0, x0 = (h - crop) // 2, (w - crop) // 2
        window = [x0, x0 + crop, y0, y0 + crop]
        image = image[y0:y0 + crop, x0:x0 + crop]
    return {"path": Path(path), "image": image, "pixel_size_angstrom": float(frame.pixel_size_angstrom),
            "pixel_size_origin": frame.pixel_size_origin, "high_tension_kv": frame.high_tension_kv,
            "crop": window}


# ----------------------------------------------------------------------------- stemscale
def run_stemscale(frame: dict[str, Any], variant: str, workdir: Path,
                  cluster: str | None) -> dict[str, Any]:
    """The mos2_real pipeline (with ``VARIANTS[variant]``), timed; its classified columns."""
    import pandas as pd
    from rich.console import Console

    from stemscale.pipeline import load_pipeline, read_run
    from stemscale.pipeline.runner import run_pipeline

    overrides = list(VARIANTS[variant])
    if frame["crop"] is not None:  # the same pipeline on a cropped copy of the frame
        import tifffile

        tif = workdir / "crop.tif"
        if not tif.exists():
            tifffile.imwrite(tif, frame["image"].astype(np.float32))
        overrides += ["input.example=null", f"input.files=[{tif}]",
                      f"input.pixel_size_angstrom={frame['pixel_size_angstrom']!r}",
                      "blocks.shape=[256, 256]"]
    config = load_pipeline(PIPELINE, overrides)
    out = workdir / f"run-{variant}"
    load = os.getloadavg()
    t0 = time.perf_counter()
    outcome = run_pipeline(config, out=out, cluster=cluster, overwrite=True, progress=False,
                           console=Console(quiet=True))
    wall = time.perf_counter() - t0
    record = read_run(out)
    stages = {k: v.get("seconds") for k, v in record.get("stages", {}).items()}
    cols = pd.read_parquet(out / "columns_classified.parquet")
    find = outcome.summary.get("find", {})
    spacing = outcome.summary.get("spacing", {})
    model_sha = None
    if find.get("model"):
        try:
            from stemscale.detect.weights import WEIGHTS_DIR, ModelManifest

            model_sha = ModelManifest.read(WEIGHTS_DIR / f"{find['model']}.json").sha256
        except Exception:
            model_sha = None
    states = cols["state"].value_counts().to_dict()
    return {
        "variant": variant, "overrides": overrides, "status": outcome.status,
        "wall_seconds": wall, "stage_seconds": stages, "load_average_before": load,
        "find_seconds": find.get("seconds"),
        "detector": find.get("detector"), "model": find.get("model"), "model_sha256": model_sha,
        "cluster_workers": record.get("cluster", {}).get("workers"),
        "columns": int(len(cols)),
        "columns_by_sublattice": {str(k): int(v) for k, v in cols["sublattice"].value_counts().items()},
        "fit_states": {str(k): int(v) for k, v in states.items()},
        "substituted_chalcogen_columns": spacing.get("substituted_chalcogen_columns"),
        "lattice_constant_px": spacing.get("lattice_constant_px"),
        "mo_mo_spacing": {k: spacing.get(k) for k in ("bonds", "mean_pm", "median_pm", "spread_pm",
                                                      "robust_spread_pm", "sem_pm")},
        "_xy": cols[["x_px", "y_px"]].to_numpy(float),
        "_site": cols["sublattice"].astype(str).to_numpy(),
        "_err_pm": np.hypot(cols["x_err_pm"].to_numpy(float), cols["y_err_pm"].to_numpy(float))
        if {"x_err_pm", "y_err_pm"} <= set(cols.columns) else np.full(len(cols), np.nan),
    }


# ----------------------------------------------------------------------------- atomap
_ATOMAP_SCRIPT = r'''
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import logging
logging.disable(logging.WARNING)
t_start = time.perf_counter()
import numpy as np
import hyperspy.api as hs
import atomap.api as am
from atomap.tools import remove_atoms_from_image_using_2d_gaussian
from importlib.metadata import version
from scipy import ndimage
from scipy.spatial import cKDTree
import_seconds = time.perf_counter() - t_start

cfg = json.load(open(sys.argv[1]))
times = {}
tic = time.perf_counter

t0 = tic()
s = hs.load(cfg["path"])
if cfg["crop"]:
    x0, x1, y0, y1 = cfg["crop"]
    s = s.isig[x0:x1, y0:y1]
times["load"] = tic() - t0
scale, units = float(s.axes_manager[0].scale), str(s.axes_manager[0].units)

# What a user looks at to choose the separation.
t0 = tic()
fs = am.get_feature_separation(s, separation_range=tuple(cfg["separation_range"]),
                               pca=cfg["pca"], show_progressbar=False)
times["feature_separation"] = tic() - t0
counts = None
try:
    marker = [v for _, v in fs.metadata.Markers][0]
    seps = range(*cfg["separation_range"])
    counts = {int(k): int(len(o)) for k, o in zip(seps, marker.kwargs["offsets"])}
except Exception as exc:
    counts = {"unavailable": repr(exc)[:200]}
del fs
# The separation a user reads off that plot: the middle of the Mo-only plateau, i.e. where the
# number of peaks changes least (relative central difference).
separation = cfg["separation"]
if separation is None and isinstance(counts, dict) and "unavailable" not in counts:
    seps = sorted(counts)
    slope = {k: abs(counts[k + 1] - counts[k - 1]) / (2.0 * counts[k])
             for k in seps[1:-1] if counts[k] > 0}
    separation = int(min(slope, key=slope.get))
    how = "flattest point of the feature-separation peak count"
elif separation is None:
    separation = int(round(cfg["fallback_separation"]))
    how = "fallback (no peak counts): half the nominal Mo-Mo distance"
else:
    how = "given"

# Mo sublattice.
t0 = tic()
mo_seeds = am.get_atom_positions(s, separation=separation, pca=cfg["pca"])
times["mo_positions"] = tic() - t0
t0 = tic()
sub_mo = am.Sublattice(mo_seeds, image=s.data, name="Mo", color="red")
sub_mo.find_nearest_neighbors()
sub_mo.refine_atom_positions_using_center_of_mass(show_progressbar=False)
sub_mo.refine_atom_positions_using_2d_gaussian(show_progressbar=False)
times["mo_refine"] = tic() - t0

# S2 sublattice from the Mo zone-axis geometry, refined on the Mo-subtracted image.
t0 = tic()
sub_mo.construct_zone_axes()
times["mo_zone_axes"] = tic() - t0
t0 = tic()
image_no_mo = remove_atoms_from_image_using_2d_gaussian(sub_mo.image, sub_mo,
                                                        show_progressbar=False)
times["remove_mo"] = tic() - t0
t0 = tic()
mo_xy = np.column_stack([sub_mo.x_position, sub_mo.y_position])
a_px = float(np.median(cKDTree(mo_xy).query(mo_xy, k=2)[0][:, 1]))
zones = [tuple(map(float, z)) for z in sub_mo.zones_axis_average_distances]
long = [z for z in sub_mo.zones_axis_average_distances
        if 1.55 * a_px < float(np.hypot(*z)) < 1.95 * a_px]
smooth = ndimage.gaussian_filter(image_no_mo, 2.0)
h, w = image_no_mo.shape
choice, candidates = None, []
for z in long[:1]:
    for frac in (1.0 / 3.0, 2.0 / 3.0):
        p = np.asarray(sub_mo.find_missing_atoms_from_zone_vector(
            z, vector_fraction=frac, extend_outer_edges=True), dtype=float).reshape(-1, 2)
        ix = np.clip(np.rint(p[:, 0]).astype(int), 0, w - 1)
        iy = np.clip(np.rint(p[:, 1]).astype(int), 0, h - 1)
        level = float(np.median(smooth[iy, ix])) if len(p) else -np.inf
        cand = {"zone_vector": tuple(map(float, z)), "vector_fraction": frac,
                "median_level_on_mo_subtracted_image": level, "sites": int(len(p))}
        candidates.append(cand)
        if choice is None or level > choice["median_level_on_mo_subtracted_image"]:
            choice, s_seeds = cand, p
if choice is None:
    method = "get_atom_positions on the Mo-subtracted image"
    s_seeds = am.get_atom_positions(hs.signals.Signal2D(image_no_mo), separation=separation,
                                    pca=cfg["pca"])
else:
    method = "find_missing_atoms_from_zone_vector"
times["s_positions"] = tic() - t0
t0 = tic()
sub_s = am.Sublattice(s_seeds, image=image_no_mo, name="S2", color="blue")
sub_s.find_nearest_neighbors()
sub_s.refine_atom_positions_using_center_of_mass(show_progressbar=False)
sub_s.refine_atom_positions_using_2d_gaussian(show_progressbar=False)
times["s_refine"] = tic() - t0

out = {
    "version": version("atomap"), "hyperspy": version("hyperspy"), "numpy": version("numpy"),
    "import_seconds": import_seconds, "seconds": times,
    "scale": scale, "units": units, "shape": list(s.data.shape),
    "separation": separation, "separation_choice": how, "pca": cfg["pca"],
    "feature_separation_counts": counts,
    "mo_seeds": int(len(mo_seeds)), "s_seeds": int(len(s_seeds)), "a_px_from_mo": a_px,
    "zone_vectors": zones, "s_method": method, "s_choice": choice, "s_candidates": candidates,
    "mo_x": [float(v) for v in sub_mo.x_position], "mo_y": [float(v) for v in sub_mo.y_position],
    "s_x": [float(v) for v in sub_s.x_position], "s_y": [float(v) for v in sub_s.y_position],
}
json.dump(out, open(sys.argv[2], "w"))
'''


def find_atomap_python(explicit: str | None) -> str | None:
    """An interpreter with atomap: ``--atomap-python``, ``$ATOMAP_PYTHON`` or this one."""
    for candidate in (explicit, os.environ.get("ATOMAP_PYTHON")):
        if candidate:
            return candidate
    try:
        import atomap  # noqa: F401

        return sys.executable
    except ImportError:
        return None


def run_atomap(frame: dict[str, Any], python: str | None, workdir: Path,
               timeout: float, separation: int | None = None) -> dict[str, Any]:
    """atomap's two-sublattice workflow in a subprocess (GPL kept out of this process)."""
    if python is None:
        return {"available": False, "reason": "atomap is not installed (optional, GPL); pass "
                "--atomap-python or set ATOMAP_PYTHON to an interpreter that has it"}
    a_px = NOMINAL_A_ANGSTROM / frame["pixel_size_angstrom"]
    cfg = {"path": str(frame["path"]), "crop": frame["crop"], "separation": separation,
           "fallback_separation": 0.5 * a_px,
           "separation_range": [3, int(math.ceil(0.8 * a_px))], "pca": True}
    (workdir / "atomap.json").write_text(json.dumps(cfg))
    script = workdir / "run_atomap.py"
    script.write_text(_ATOMAP_SCRIPT)
    dst = workdir / "atomap_out.json"
    load = os.getloadavg()
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([python, str(script), str(workdir / "atomap.json"), str(dst)],
                              capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"available": False, "reason": f"atomap run failed: {exc}"}
    process_seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"available": False, "reason": "atomap run failed: " + proc.stderr[-800:]}
    out = json.loads(dst.read_text())
    t = out["seconds"]
    workflow = sum(v for k, v in t.items() if k != "feature_separation")
    mo = np.column_stack([out.pop("mo_x"), out.pop("mo_y")])
    s2 = np.column_stack([out.pop("s_x"), out.pop("s_y")])
    return {"available": True, **out, "parameters": cfg, "load_average_before": load,
            "workflow_seconds": workflow,
            "workflow_with_feature_separation_seconds": workflow + t["feature_separation"],
            "process_seconds": process_seconds,
            "columns": int(len(mo) + len(s2)), "columns_by_sublattice": {"Mo": int(len(mo)),
                                                                         "S2": int(len(s2))},
            "_xy": np.vstack([mo, s2]),
            "_site": np.array(["Mo"] * len(mo) + ["S2"] * len(s2))}


# ----------------------------------------------------------------------------- comparison
def compare(st: dict[str, Any], am: dict[str, Any], pixel_pm: float, a_px: float,
            shape: tuple[int, int]) -> dict[str, Any]:
    """One-to-one matching within a/(2 sqrt 3); counts, position differences in pm, per site."""
    from stemscale.detect.metrics import match_points

    radius = 0.5 * a_px / math.sqrt(3.0)
    sxy, axy = st["_xy"], am["_xy"]
    ok_s, ok_a = np.isfinite(sxy).all(1), np.isfinite(axy).all(1)
    idx_s, idx_a = np.flatnonzero(ok_s), np.flatnonzero(ok_a)
    pairs = match_points(sxy[idx_s], axy[idx_a], radius)
    i, j = idx_s[pairs[:, 0]], idx_a[pairs[:, 1]]
    d = (sxy[i] - axy[j]) * pixel_pm
    dr = np.hypot(*d.T)
    h, w = shape
    border = a_px

    def interior(xy: np.ndarray) -> np.ndarray:
        return ((xy[:, 0] >= border) & (xy[:, 0] <= w - 1 - border)
                & (xy[:, 1] >= border) & (xy[:, 1] <= h - 1 - border))

    in_s, in_a = interior(sxy) & ok_s, interior(axy) & ok_a
    matched_s = np.zeros(len(sxy), bool)
    matched_s[i] = True
    matched_a = np.zeros(len(axy), bool)
    matched_a[j] = True

    def stats(sel: np.ndarray) -> dict[str, Any]:
        if not sel.any():
            return {"matched": 0}
        dd, rr = d[sel], dr[sel]
        centred = np.hypot(*(dd - dd.mean(0)).T)
        return {"matched": int(sel.sum()), "median_pm": float(np.median(rr)),
                "rms_pm": float(np.sqrt(np.mean(rr ** 2))), "p90_pm": float(np.percentile(rr, 90)),
                "mean_dx_pm": float(dd[:, 0].mean()), "mean_dy_pm": float(dd[:, 1].mean()),
                "median_after_mean_offset_pm": float(np.median(centred))}

    site_pairs = {"Mo": am["_site"][j] == "Mo", "S2": am["_site"][j] == "S2"}
    st_site = st["_site"][i]
    same = ((am["_site"][j] == "Mo") & (st_site == "M")) | ((am["_site"][j] == "S2") & (st_site == "X"))
    err = st["_err_pm"][i]
    per_site = {}
    for name, sel in site_pairs.items():
        entry = stats(sel)
        entry["atomap_columns"] = int((am["_site"] == name).sum())
        entry["atomap_columns_interior"] = int(((am["_site"] == name) & in_a).sum())
        entry["atomap_interior_matched"] = int(((am["_site"] == name) & in_a & matched_a).sum())
        e = err[sel]
        entry["stemscale_median_own_error_pm"] = (float(np.nanmedian(e)) if np.isfinite(e).any()
                                                  else None)
        per_site[name] = entry
    for name, code in (("M", "M"), ("X", "X")):
        per_site.setdefault("stemscale", {})[name] = {
            "columns": int((st["_site"] == code).sum()),
            "columns_interior": int(((st["_site"] == code) & in_s).sum())}
    n_in_s, n_in_a = int(in_s.sum()), int(in_a.sum())
    return {
        "match_radius_px": radius, "match_radius_pm": radius * pixel_pm,
        "lattice_constant_px": a_px, "interior_border_px": border,
        "stemscale_columns": int(ok_s.sum()), "atomap_columns": int(ok_a.sum()),
        "matched": int(len(pairs)),
        "only_stemscale": int((~matched_s & ok_s).sum()), "only_atomap": int((~matched_a & ok_a).sum()),
        "interior": {
            "stemscale_columns": n_in_s, "atomap_columns": n_in_a,
            "stemscale_over_atomap": n_in_s / n_in_a if n_in_a else None,
            "atomap_also_found_by_stemscale": float((in_a & matched_a).sum() / n_in_a) if n_in_a else None,
            "stemscale_also_found_by_atomap": float((in_s & matched_s).sum() / n_in_s) if n_in_s else None,
            "only_stemscale": int((in_s & ~matched_s).sum()), "only_atomap": int((in_a & ~matched_a).sum()),
        },
        "site_agreement": float(same.mean()) if len(same) else None,
        "all": stats(np.ones(len(dr), bool)),
        "per_site": per_site,
        "_pairs": (i, j), "_dr": dr, "_matched_s": matched_s, "_matched_a": matched_a,
    }


# ----------------------------------------------------------------------------- figure
def overlay_figure(image: np.ndarray, st: dict[str, Any], am: dict[str, Any], cmp: dict[str, Any],
                   pixel_pm: float, path: Path, crop_px: int = 200) -> Path:
    """Crop of the frame with both tools' positions, where they disagree, and |dr| histograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    h, w = image.shape
    c = min(crop_px, h, w)
    y0, x0 = (h - c) // 2, (w - c) // 2
    lo, hi = np.percentile(image, [0.5, 99.8])
    fig, axes = plt.subplots(1, 3, figsize=(19, 6.6), gridspec_kw={"width_ratios": [1, 1, 0.8]})
    ax = axes[0]
    ax.imshow(image, cmap="gray", vmin=lo, vmax=hi)
    only_s = ~cmp["_matched_s"] & np.isfinite(st["_xy"]).all(1)
    only_a = ~cmp["_matched_a"]
    ax.plot(*st["_xy"][only_s].T, "o", ms=4, mfc="none", mec="#ff3030", mew=1.0,
            label=f"stemscale only ({int(only_s.sum())})")
    ax.plot(*am["_xy"][only_a].T, "s", ms=4, mfc="none", mec="#30c0ff", mew=1.0,
            label=f"atomap only ({int(only_a.sum())})")
    ax.add_patch(Rectangle((x0, y0), c, c, fill=False, ec="yellow", lw=1.5))
    ax.set_title("whole frame: columns found by one tool only; yellow: crop")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=9, frameon=False)
    ax.set_axis_off()

    ax = axes[1]
    ax.imshow(image[y0:y0 + c, x0:x0 + c], cmap="gray", vmin=lo, vmax=hi,
              extent=(x0 - 0.5, x0 + c - 0.5, y0 + c - 0.5, y0 - 0.5))
    styles = [(am, "Mo", "o", "#ffa000", 9, "atomap Mo"), (am, "S2", "o", "#00e0ff", 9, "atomap S2"),
              (st, "M", "+", "#ff2020", 9, "stemscale Mo"), (st, "X", "x", "#4060ff", 7, "stemscale S2"),
              (st, "?", "+", "#ffffff", 7, "stemscale unassigned")]
    for src, site, marker, colour, size, label in styles:
        xy = src["_xy"][src["_site"] == site]
        sel = (xy[:, 0] >= x0) & (xy[:, 0] < x0 + c) & (xy[:, 1] >= y0) & (xy[:, 1] < y0 + c)
        if not sel.any():
            continue
        kw = {"mfc": "none", "mew": 1.4} if marker == "o" else {"mew": 1.6}
        ax.plot(*xy[sel].T, marker, ms=size, color=colour, mec=colour, ls="none", label=label, **kw)
    ax.set_xlim(x0 - 0.5, x0 + c - 0.5)
    ax.set_ylim(y0 + c - 0.5, y0 - 0.5)
    ax.set_title(f"crop {c} x {c} px ({c * pixel_pm / 1000:.2f} nm): fitted positions")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=9, frameon=False)
    ax.set_axis_off()

    ax = axes[2]
    dr = cmp["_dr"]
    j = cmp["_pairs"][1]
    top = max(1.0, float(np.percentile(dr, 99))) if len(dr) else 1.0
    bins = np.linspace(0, top, 50)
    for site, colour in (("Mo", "#ffa000"), ("S2", "#00a0e0")):
        sel = am["_site"][j] == site
        if sel.any():
            ax.hist(dr[sel], bins=bins, histtype="step", lw=1.8, color=colour,
                    label=f"{site}: median {np.median(dr[sel]):.2f} pm (n={int(sel.sum())})")
    ax.axvline(POSITION_TARGET_PM, color="k", ls=":", lw=1)
    ax.set_xlabel("|position stemscale - atomap| (pm)")
    ax.set_ylabel("matched columns")
    ax.set_title("position differences of matched columns")
    ax.legend(fontsize=9)
    fig.suptitle("Se-implanted MoS2 (temul-toolkit frame): stemscale mos2_real pipeline vs atomap",
                 fontsize=13)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- main
def _agreement_note(cmp: dict[str, Any]) -> str:
    site = cmp["per_site"]
    nan = float("nan")

    def own(name: str) -> float:
        value = site[name].get("stemscale_median_own_error_pm")
        return nan if value is None else value

    return (f"RMS {cmp['all']['rms_pm']:.2f} pm; Mo median {site['Mo'].get('median_pm', nan):.2f} pm "
            f"(stemscale's own median position error {own('Mo'):.2f} pm), S2 median "
            f"{site['S2'].get('median_pm', nan):.2f} pm (own {own('S2'):.2f} pm); file calibration")


def _public(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if not k.startswith("_")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--atomap-python", default=None,
                    help="interpreter with atomap installed (kept out of this environment: GPL); "
                         "default $ATOMAP_PYTHON, else this one if it has atomap")
    ap.add_argument("--no-atomap", action="store_true", help="run stemscale only")
    ap.add_argument("--variants", default="auto,peaks",
                    help=f"pipeline variants to run, first is the primary ({', '.join(VARIANTS)})")
    ap.add_argument("--crop", type=int, default=None,
                    help="centre crop of N x N px instead of the whole frame (smoke tests)")
    ap.add_argument("--cluster", default=None, help="cluster for the pipeline (default: the YAML's)")
    ap.add_argument("--atomap-separation", type=int, default=None,
                    help="atomap's Mo peak separation in px (default: from the feature-separation "
                         "peak count)")
    ap.add_argument("--atomap-timeout", type=float, default=3600.0)
    ap.add_argument("--output", type=Path, default=RESULTS_DIR / f"{NAME}.json")
    ap.add_argument("--overlay", type=Path, default=None,
                    help="overlay PNG (default: next to the output, <name>_overlay.png)")
    args = ap.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or not variants:
        ap.error(f"unknown variant(s) {unknown}; choose from {sorted(VARIANTS)}")
    overlay = args.overlay or args.output.with_name(args.output.stem + "_overlay.png")

    frame = load_frame(args.crop)
    pixel_pm = frame["pixel_size_angstrom"] * 100.0
    shape = frame["image"].shape
    results: dict[str, Any] = {
        "frame": {"file": "temul-toolkit 0.1.9: temul/example_data/experimental/"
                          "example_Se_implanted_MoS2.dm3 (GPL-3, read in place)",
                  "shape": list(shape), "crop_x0_x1_y0_y1": frame["crop"],
                  "pixel_size_pm": pixel_pm, "pixel_size_origin": frame["pixel_size_origin"],
                  "high_tension_kv": frame["high_tension_kv"],
                  "calibration_note": "the file's pixel size is used as is (about 5 % small, "
                                      "see pipelines/mos2_real.yaml); differences in pm scale with it"},
        "stemscale": {}, "comparison": {},
    }
    st_runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_mos2_real_") as tmp:
        work = Path(tmp)
        for variant in variants:
            print(f"stemscale: mos2_real pipeline, variant {variant!r} ...", flush=True)
            st_runs[variant] = run_stemscale(frame, variant, work, args.cluster)
            r = st_runs[variant]
            print(f"  {r['columns']} columns in {r['wall_seconds']:.1f} s "
                  f"(find stage {r['find_seconds']} s, detector {r['detector']})", flush=True)
            results["stemscale"][variant] = _public(r)
        if args.no_atomap:
            am = {"available": False, "reason": "skipped (--no-atomap)"}
        else:
            print("atomap: two-sublattice workflow in a subprocess ...", flush=True)
            am = run_atomap(frame, find_atomap_python(args.atomap_python), work, args.atomap_timeout,
                            args.atomap_separation)
            if am["available"]:
                print(f"  {am['columns']} columns in {am['workflow_seconds']:.1f} s "
                      f"(+ {am['seconds']['feature_separation']:.1f} s feature separation)", flush=True)
            else:
                print(f"  atomap unavailable: {am['reason']}", flush=True)
    results["atomap"] = _public(am)

    primary = variants[0]
    st = st_runs[primary]
    a_px = st.get("lattice_constant_px") or NOMINAL_A_ANGSTROM / frame["pixel_size_angstrom"]
    cmp_primary = None
    rows = []
    if am["available"]:
        if abs(am["scale"] * (10.0 if am["units"] == "nm" else 1.0) - frame["pixel_size_angstrom"]) > 1e-4:
            results["frame"]["pixel_size_mismatch_atomap"] = {"scale": am["scale"], "units": am["units"]}
        for variant, run in st_runs.items():
            cmp = compare(run, am, pixel_pm, a_px, shape)
            results["comparison"][variant] = _public(cmp)
            speed = {
                "atomap_workflow_over_stemscale_pipeline": am["workflow_seconds"] / run["wall_seconds"],
                "atomap_workflow_over_stemscale_find_stage":
                    am["workflow_seconds"] / run["find_seconds"] if run["find_seconds"] else None,
                "atomap_with_feature_separation_over_stemscale_pipeline":
                    am["workflow_with_feature_separation_seconds"] / run["wall_seconds"],
            }
            results["comparison"][variant]["speed"] = speed
            if variant == primary:
                cmp_primary = cmp
            rows.append({"tool": f"stemscale ({variant})", "columns": cmp["stemscale_columns"],
                         "M/Mo": run["columns_by_sublattice"].get("M", 0),
                         "X/S2": run["columns_by_sublattice"].get("X", 0),
                         "matched": cmp["matched"], "only this tool": cmp["only_stemscale"],
                         "median dr pm": cmp["all"].get("median_pm", float("nan")),
                         "rms dr pm": cmp["all"].get("rms_pm", float("nan")),
                         "Mo median pm": cmp["per_site"]["Mo"].get("median_pm", float("nan")),
                         "S2 median pm": cmp["per_site"]["S2"].get("median_pm", float("nan")),
                         "seconds": run["wall_seconds"],
                         "atomap/this": speed["atomap_workflow_over_stemscale_pipeline"]})
        rows.append({"tool": "atomap", "columns": am["columns"],
                     "M/Mo": am["columns_by_sublattice"]["Mo"], "X/S2": am["columns_by_sublattice"]["S2"],
                     "matched": cmp_primary["matched"], "only this tool": cmp_primary["only_atomap"],
                     "median dr pm": float("nan"), "rms dr pm": float("nan"),
                     "Mo median pm": float("nan"), "S2 median pm": float("nan"),
                     "seconds": am["workflow_seconds"], "atomap/this": 1.0})
        print_table(rows, title="stemscale vs atomap on the same frame "
                    "(only-this-tool counts against the primary variant for atomap)")
        overlay_figure(frame["image"], st, am, cmp_primary, pixel_pm, overlay)
        print(f"wrote {overlay}")

    inner = cmp_primary["interior"] if cmp_primary else {}
    allm = cmp_primary["all"] if cmp_primary else {}
    speed = results["comparison"].get(primary, {}).get("speed", {})
    na = None if am["available"] else "atomap not available in this run"
    targets = [
        target("columns found vs atomap, interior (stemscale / atomap)", FOUND_TARGET,
               inner.get("stemscale_over_atomap"), "ratio", note=na),
        target("atomap's interior columns also found by stemscale", FOUND_TARGET,
               inner.get("atomap_also_found_by_stemscale"), "fraction", note=na),
        target("position agreement with atomap, median |dr| of matched columns", POSITION_TARGET_PM,
               allm.get("median_pm"), "pm", higher_is_better=False,
               note=na or _agreement_note(cmp_primary)),
        target("speed vs atomap, same frame (atomap workflow s / stemscale pipeline s, end to end)",
               1.0, speed.get("atomap_workflow_over_stemscale_pipeline"), "x", note=na or (
                   f"stemscale {st['wall_seconds']:.1f} s incl. cluster start, ingest, figures, "
                   f"report; atomap {am['workflow_seconds']:.1f} s without its "
                   f"{am['seconds']['feature_separation']:.1f} s feature-separation step; "
                   f"1-min load average before: stemscale {st['load_average_before'][0]:.1f}, "
                   f"atomap {am['load_average_before'][0]:.1f}")),
    ]
    params = {
        "pipeline": "pipelines/mos2_real.yaml", "variants": {v: VARIANTS[v] for v in variants},
        "primary_variant": primary, "crop": args.crop, "cluster": args.cluster or "from the YAML",
        "nominal_a_angstrom": NOMINAL_A_ANGSTROM,
        "match": "one-to-one, minimum total distance, within 0.5 * a/sqrt(3) (a measured from the "
                 "stemscale columns)",
        "interior": "columns at least one lattice constant a from the frame edges",
        "atomap_workflow": "hs.load; get_feature_separation (timed apart); get_atom_positions "
                           "(pca=True, separation at the flattest point of the feature-separation peak count); "
                           "Sublattice; find_nearest_neighbors; "
                           "centre of mass; 2D Gaussian; construct_zone_axes; "
                           "remove_atoms_from_image_using_2d_gaussian; find_missing_atoms_from_zone_vector "
                           "(sqrt(3) a zone vector, fraction 1/3 or 2/3, the brighter kept); S2 "
                           "Sublattice on the Mo-subtracted image; centre of mass; 2D Gaussian",
        "atomap_python": None if args.no_atomap else find_atomap_python(args.atomap_python),
    }
    path = write_results(NAME, parameters=params, results=results, targets=targets,
                         extra_versions=("pandas", "matplotlib"), path=args.output)
    print_targets(targets)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
