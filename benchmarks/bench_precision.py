"""Precision of defect class averages against known truth, and the cost of the reduction.

Stages (each cached in ``--workdir``, so a rerun skips finished ones):

1. **simulate** two synthetic WSe2 mosaics at 7,300 e-/Å² (the paper's frame
   dose) with isolated single Se vacancies (SVs): one whose SVs carry the
   default oscillating radial displacement field, one with no field;
2. **average**: detections from the simulator's truth rounded to whole
   pixels after a 0.5 px jitter (an FCN centroid is integer-accurate),
   screening with the paper's rules, pristine chalcogen sites, and class
   averaging on a 2-worker LocalCluster (Dask tree reduction, crop stacks on zarr);
3. **measure**: column fits, spacings and displacements vs pristine, 1000
   bootstrap resamples, comparison with the injected truth; the no-field
   mosaic's displacements are tested against zero (chi-square);
4. **precision vs N**: bootstrap standard error of the mean W-W spacing of
   random subsets (N = 100 ... all), the log-log slope, sigma_1 from single
   crops, next to the paper's numbers and the Poisson (Cramér-Rao) ideal;
5. **error budget**: sigma_1 and class-average precision with Poisson noise
   only, with scan distortion (drift + line jitter), and the fitting bias
   (noiseless); fast- vs slow-scan anisotropy of the three W-W bonds;
6. **reduction timing**: the per-block work (orientation, registration,
   shift, fold, stack write) and the tree reduction for 10^4 crops, and the
   tree reduction of 10^5 crops' accumulators plus the per-crop throughput
   scaled to 10^5.

Writes ``benchmarks/results/bench_precision.json`` and figures
(``bench_precision_*.png``) next to it, plus ``summary.json`` in the workdir.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402  (after the thread limits above)
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import RESULTS_DIR, print_table, target, write_results  # noqa: E402

PS = 0.2074
A_WSE2 = 3.297
DOSE = 7300.0
PAPER = {"sigma1_sv_pm": 10.2, "sigma1_pristine_pm": 8.8, "sv_precision_pm": 0.165, "sv_n": 2939,
         "poisson_sigma1_pm": 3.83,
         "simulated_table": {100: 0.408, 200: 0.269, 400: 0.192, 800: 0.140, 1600: 0.0965, 3000: 0.0696,
                             10000: 0.0376, 60000: 0.0153}}


def log(*a):
    print(f"[{time.strftime('%H:%M:%S')}]", *a, flush=True)


# ----------------------------------------------------------------------------- stage 1
def simulate(workdir: Path, name: str, size: int, field: bool, seed: int, client) -> dict:
    from stemscale.simulate import Sample, oscillating_radial_field
    from stemscale.parallel.simulate import simulate_mosaic

    url = workdir / f"{name}.zarr"
    done = workdir / f"{name}.json"
    if done.exists():
        return json.loads(done.read_text())
    sample = Sample(concentrations={"SV": 0.02}, min_defect_spacing_A=28.0,
                    displacement_fields={"SV": oscillating_radial_field()} if field else {})
    t0 = time.perf_counter()
    summary = simulate_mosaic(str(url), (size, size), chunks=(512, 512), shards=(2048, 2048), seed=seed,
                              sample=sample, dose_e_per_a2=DOSE, overwrite=True)
    summary["simulate_seconds"] = time.perf_counter() - t0
    summary["url"] = str(url)
    done.write_text(json.dumps(summary, default=str))
    return summary


# ----------------------------------------------------------------------------- stage 2
def average(workdir: Path, name: str, sim: dict, max_pristine: int, seed: int):
    from stemscale.average import AveragingConfig, detections_from_truth, screen_defects, select_pristine
    from stemscale.parallel.averaging import average_classes
    from stemscale.io import open_mosaic
    from stemscale.io.truth import read_truth

    mosaic = open_mosaic(sim["url"])
    truth = read_truth(sim["truth_url"])
    shape = mosaic.shape
    det = detections_from_truth(truth, jitter_px=0.5, seed=seed)
    scr = screen_defects(det, pixel_size_A=PS, mosaic_shape=shape)
    xs = truth[(truth["site"] == "X") & (truth["defect"] == "")]
    pri = select_pristine(xs, det, pixel_size_A=PS, mosaic_shape=shape, max_sites=max_pristine, seed=seed)
    table = pd.concat([scr.kept, pri.kept], ignore_index=True)
    t0 = time.perf_counter()
    res = average_classes(mosaic, table, config=AveragingConfig(seed=seed), stack_url=str(workdir / f"{name}.crops.zarr"),
                          screening={**scr.counts, **pri.counts})
    seconds = time.perf_counter() - t0
    # true centres of the averaged crops (for the truth comparison)
    svk = scr.kept.merge(truth[["column_id", "x_px", "y_px"]], on="column_id", suffixes=("_det", ""))
    centres = {"SV": svk[["x_px", "y_px"]].to_numpy(), "pristine": pri.kept[["x_px", "y_px"]].to_numpy()}
    return res, truth, centres, seconds


# ----------------------------------------------------------------------------- stage 3
def measure(res, truth, centres, n_boot: int, seed: int):
    from stemscale.strain import MeasureConfig, analyse_class, injected_displacements

    cs = analyse_class(res, "SV", config=MeasureConfig(n_boot=n_boot, seed=seed))
    inj = injected_displacements(truth, centres["SV"], centres["pristine"], cs.geometry)
    return cs, inj


def shell_comparison(cs, inj, n_shells: int = 3) -> pd.DataFrame:
    sh = cs.shells()
    sh["truth_u_r_pm"] = inj["shell_u_r"]
    w = sh[sh["site"] == "M"].sort_values("r_A").head(n_shells).copy()
    w["error_pm"] = w["u_r_pm"] - w["truth_u_r_pm"]
    w["error_in_se"] = w["error_pm"] / w["u_r_se_pm"]
    return w


# ----------------------------------------------------------------------------- stage 4
def precision_vs_n(res, cs, ns, n_boot: int, seed: int):
    from stemscale.io.crop_stack import CropStack
    from stemscale.average import precision_slope, resample_counts, standard_error
    from stemscale.strain import bootstrap_positions, single_crop_spread

    stack = CropStack.open(res.stack_url, "SV")
    n_all = len(stack)
    rng = np.random.default_rng(seed)
    rows = []
    pix = cs.fit_def.pixel_index()
    uniq, inv = np.unique(pix.ravel(), return_inverse=True)
    data = stack.read(uniq)  # (N, n_pixels of the windows): small
    for n in [k for k in ns if k < n_all] + [n_all]:
        subset = np.sort(rng.choice(n_all, n, replace=False))
        counts = resample_counts(n_all, n_boot, seed=rng, subset=subset)
        xy = bootstrap_positions(data, _WindowView(cs.fit_def, uniq, inv), counts)
        q = cs.geometry.evaluate(xy, np.broadcast_to(cs.fit_pri.xy, xy.shape[:1] + cs.fit_pri.xy.shape))
        se = float(standard_error(q["ww_mean_def"]))
        rows.append({"N": int(n), "se_ww_mean_pm": se})
    table = pd.DataFrame(rows)
    slope = precision_slope(table["N"], table["se_ww_mean_pm"])
    spread = single_crop_spread(stack, cs.fit_def, cs.geometry)
    table["sigma1_over_sqrtN_pm"] = spread["sigma1_mean_pm"] / np.sqrt(table["N"])
    return table, slope, spread


class _WindowView:
    """A ColumnFit whose pixel indices point into a pre-gathered (N, n_pixels) array."""

    def __init__(self, fit, uniq, inv):
        self._fit, self._inv, self._n = fit, inv, len(uniq)

    def pixel_index(self):
        return np.arange(self._n)[self._inv].reshape(self._fit.pixel_index().shape)

    def refit(self, w):
        return self._fit.refit(w)


def poisson_ideal(res, cs) -> dict:
    """Cramér-Rao bound of the mean W-W spacing of one crop at the simulated dose (pristine columns)."""
    from stemscale.fit import crlb, fit_windows

    avg = res.mean("pristine")
    first = cs.geometry.ww[:, 0]
    idx = np.unique(cs.geometry.i_pri[cs.geometry.ww.ravel()])
    pos = cs.fit_pri.table.loc[idx, ["x_fit", "y_fit"]].to_numpy()
    out = {}
    for win in (7, 9, 11):
        wf = fit_windows(avg, pos, window=win)
        c = crlb(wf.result.parameters, "gauss2d_elliptic", (win, win))
        sx = float(np.mean(c[:, 1])) * PS * 100
        sy = float(np.mean(c[:, 2])) * PS * 100
        # mean of the three spacings of an equilateral triangle: sigma = sigma_position (isotropic)
        out[f"window_{win}"] = {"sigma_x_pm": sx, "sigma_y_pm": sy, "sigma_mean_ww_pm": 0.5 * (sx + sy),
                                "sigma_single_ww_pm": float(np.sqrt(2) * 0.5 * (sx + sy))}
    del first
    return out


# ----------------------------------------------------------------------------- stage 5
def error_budget(workdir: Path, seed: int, n_frames: int) -> dict:
    """sigma_1 and class-average precision of pristine crops: Poisson only, + scan distortion, noiseless."""
    from stemscale.average import AveragingConfig, select_pristine
    from stemscale.parallel.averaging import average_classes
    from stemscale.io.crop_stack import CropStack
    from stemscale.average import resample_counts, standard_error
    from stemscale.simulate import Distortions, Sample, simulate_frame
    from stemscale.strain import MeasureConfig, StrainGeometry, bootstrap_positions, measure_average, single_crop_spread

    rows = []
    # each frame of a distorted condition draws its own distortion (as successive frames of a session)
    conds = {
        "poisson": dict(distortions=None, noisy=True),
        "poisson+jitter": dict(distortions=lambda k: Distortions(jitter_px=0.5), noisy=True),
        "poisson+drift": dict(distortions=lambda k: Distortions.random(seed + k, jitter_px=0.0), noisy=True),
        "poisson+drift+jitter": dict(distortions=lambda k: Distortions.random(seed + k, jitter_px=0.5), noisy=True),
        "noiseless": dict(distortions=None, noisy=False),
    }
    for name, cond in conds.items():
        tables = []
        images = []
        for k in range(n_frames):
            d = cond["distortions"](k) if cond["distortions"] is not None else None
            f = simulate_frame((1024, 1024), sample=Sample(concentrations={}, rotation_deg=0.0), seed=seed + 100 + k,
                               distortions=d, dose_e_per_a2=DOSE, labels=False)
            img = f.image if cond["noisy"] else f.expected
            xs = f.truth[f.truth["site"] == "X"]
            pri = select_pristine(xs, xs.iloc[:0], pixel_size_A=PS, mosaic_shape=img.shape, max_sites=40, seed=k)
            images.append(img)
            tables.append(pri.kept)
        # one "mosaic" per frame: average each separately and pool the stacks through one run per frame
        url = workdir / f"budget_{name.replace('+', '_')}.crops.zarr"
        distortion_record = [cond["distortions"](k).to_dict() for k in range(n_frames)] if cond["distortions"] else None
        mosaic = np.concatenate(images, axis=1)
        table = pd.concat([t.assign(cx_px=t["cx_px"] + 1024 * i) for i, t in enumerate(tables)], ignore_index=True)
        res = average_classes(mosaic, table, pixel_size_A=PS, chunks=(1024, 1024), stack_url=str(url),
                              config=AveragingConfig(seed=seed, reference_symmetry=None))
        mom = res.accumulator.moments["pristine"]
        lat, fit = measure_average(res.mean("pristine"), PS, MeasureConfig(), variance=mom.std ** 2)
        rep = fit.table[fit.table["reported"]]
        geo = StrainGeometry.from_sites(rep, rep, pixel_size_A=PS)
        stack = CropStack.open(url, "pristine")
        spread = single_crop_spread(stack, fit, geo)
        counts = resample_counts(len(stack), 300, seed=seed)
        xy = bootstrap_positions(stack, fit, counts)
        q = geo.evaluate(xy, xy)
        se = float(standard_error(q["ww_mean_def"]))
        main = geo.evaluate(fit.xy, fit.xy)
        rows.append({
            "condition": name, "n_crops": len(stack),
            "sigma1_mean_ww_pm": spread["sigma1_mean_pm"],
            "sigma1_bond_d1_fast_pm": spread["sigma1_bonds_pm"][0] if spread["sigma1_bonds_pm"] else np.nan,
            "sigma1_bond_d2_pm": spread["sigma1_bonds_pm"][1] if spread["sigma1_bonds_pm"] else np.nan,
            "sigma1_bond_d3_pm": spread["sigma1_bonds_pm"][2] if spread["sigma1_bonds_pm"] else np.nan,
            "class_se_mean_ww_pm": se,
            "class_se_at_3000_pm": se * np.sqrt(len(stack) / 3000.0),
            "mean_ww_pm": float(main["ww_mean_def"]),
            "mean_ww_bias_pm": float(main["ww_mean_def"]) - A_WSE2 * 100,
        })
        rows[-1]["anisotropy_fast_minus_slow_pm"] = rows[-1]["sigma1_bond_d1_fast_pm"] - 0.5 * (
            rows[-1]["sigma1_bond_d2_pm"] + rows[-1]["sigma1_bond_d3_pm"])
        if distortion_record:
            rows[-1]["distortions"] = distortion_record
    return {"rows": rows}


def fitting_bias(seed: int, n_frames: int = 2) -> dict:
    """Bias of the displacement measurement itself: noiseless SV frames with no field (truth: zero)."""
    from stemscale.average import AveragingConfig, detections_from_truth, screen_defects, select_pristine
    from stemscale.parallel.averaging import average_classes
    from stemscale.simulate import Sample, simulate_frame
    from stemscale.strain import MeasureConfig, analyse_class

    images, tables = [], []
    for k in range(n_frames):
        f = simulate_frame((1536, 1536), sample=Sample(concentrations={"SV": 0.02}, min_defect_spacing_A=28.0,
                                                      displacement_fields={}), seed=seed + 200 + k, labels=False)
        det = detections_from_truth(f.truth, jitter_px=0.5, seed=k)
        scr = screen_defects(det, pixel_size_A=PS, mosaic_shape=f.expected.shape)
        xs = f.truth[(f.truth["site"] == "X") & (f.truth["defect"] == "")]
        pri = select_pristine(xs, det, pixel_size_A=PS, mosaic_shape=f.expected.shape, max_sites=40, seed=k)
        t = pd.concat([scr.kept, pri.kept], ignore_index=True)
        tables.append(t.assign(cx_px=t["cx_px"] + 1536 * k))
        images.append(f.expected)
    res = average_classes(np.concatenate(images, axis=1), pd.concat(tables, ignore_index=True), pixel_size_A=PS,
                          chunks=(1536, 1536), config=AveragingConfig(seed=seed))
    cs = analyse_class(res, "SV", config=MeasureConfig(weighted=False), bootstrap=False)
    sh = cs.shells()
    w = sh[sh["site"] == "M"].sort_values("r_A").head(3)
    x = sh[(sh["site"] == "X") & (sh["r_A"] > 0)].sort_values("r_A").head(3)
    return {"n_sv": res.count("SV"), "n_pristine": res.count("pristine"),
            "w_shells": [{"r_A": float(r), "bias_u_r_pm": float(u)} for r, u in zip(w["r_A"], w["u_r_pm"])],
            "x_shells": [{"r_A": float(r), "bias_u_r_pm": float(u)} for r, u in zip(x["r_A"], x["u_r_pm"])],
            "ww_change_bias_pm": float(cs.spacings()["change_pm"].iloc[3])}


def pairs_stage(workdir: Path, seed: int, size: int, n_boot: int, client) -> dict:
    """Pairs of SVs: class averages per configuration and their coupling (field minus superposition)."""
    from stemscale.average import AveragingConfig, detections_from_truth, find_pairs, screen_defects, select_pristine
    from stemscale.parallel.averaging import average_classes
    from stemscale.io import open_mosaic
    from stemscale.simulate import Sample, oscillating_radial_field
    from stemscale.parallel.simulate import simulate_mosaic
    from stemscale.io.truth import read_truth
    from stemscale.strain import MeasureConfig, analyse_class, pair_coupling
    from stemscale.lattice import fit_lattice

    url = workdir / "pairs.zarr"
    if not (workdir / "pairs.json").exists():
        simulate_mosaic(str(url), (size, size), chunks=(512, 512), shards=(2048, 2048), seed=seed + 5,
                        sample=Sample(concentrations={"SV": 0.03}, displacement_fields={"SV": oscillating_radial_field()}),
                        dose_e_per_a2=DOSE, overwrite=True)
        (workdir / "pairs.json").write_text("{}")
    mosaic = open_mosaic(str(url))
    truth = read_truth(str(url) + ".truth")
    det = detections_from_truth(truth, jitter_px=0.5, seed=seed)
    # lattice vectors of the mosaic from a pristine patch (the simulator's lattice is not used)
    patch = np.asarray(mosaic.data[:256, :256])
    lat = fit_lattice(patch, A_WSE2 / PS)
    pr = find_pairs(det, cls="SV", pixel_size_A=PS, mosaic_shape=mosaic.shape, a1_px=lat.a1, a2_px=lat.a2,
                    max_separation_A=7.0)
    xs = truth[(truth["site"] == "X") & (truth["defect"] == "")]
    pri = select_pristine(xs, det, pixel_size_A=PS, mosaic_shape=mosaic.shape, max_sites=1500, seed=seed)
    # isolated singles of the same mosaic: the same environment of neighbouring vacancies as the pairs
    singles = screen_defects(det, pixel_size_A=PS, mosaic_shape=mosaic.shape).kept
    keep = [c for c, n in pr.counts["kept"].items() if n >= 40]
    table = pd.concat([pr.pairs[pr.pairs["class"].isin(keep)], singles, pri.kept], ignore_index=True)
    res = average_classes(mosaic, table, config=AveragingConfig(seed=seed), stack_url=str(workdir / "pairs.crops.zarr"))
    single_cs = analyse_class(res, "SV", config=MeasureConfig(n_boot=n_boot, seed=seed))
    out = {"counts": pr.counts, "n_singles": res.count("SV"), "configurations": {}}
    for cls in keep:
        row = pr.pairs[pr.pairs["class"] == cls].iloc[0]
        m = (int(row["m1"]), int(row["m2"]))
        cs = analyse_class(res, cls, config=MeasureConfig(n_boot=n_boot, radius_A=6.0, seed=seed))
        c = pair_coupling(cs, single_cs, m)
        t = c["table"]
        ok = np.isfinite(t["coupling_ux_se_pm"])
        out["configurations"][cls] = {
            "separation": m, "n": res.count(cls), "chi_square": c["chi_square"], "dof": c["dof"], "p_value": c["p_value"],
            "rms_coupling_pm": float(np.sqrt(np.nanmean(t.loc[ok, ["coupling_ux_pm", "coupling_uy_pm"]].to_numpy() ** 2))),
            "median_se_pm": float(np.nanmedian(t.loc[ok, ["coupling_ux_se_pm", "coupling_uy_se_pm"]].to_numpy())),
        }
    return out


# ----------------------------------------------------------------------------- stage 6
def reduction_timing(client, n_small: int, n_large: int, seed: int) -> dict:
    """Time the per-block averaging work and the tree reduction on synthetic crops."""
    import dask
    import dask.bag as db

    from stemscale.average import AveragingConfig, Moments, combine_all
    from stemscale.parallel.averaging import block_accumulate
    from stemscale.average.accumulator import ClassAccumulator
    from stemscale.simulate import Sample, simulate_frame

    frame = simulate_frame((512, 512), sample=Sample(concentrations={}), seed=seed, labels=False)
    ref = frame.expected[256 - 64:256 + 64, 256 - 64:256 + 64].astype(float)
    cfg = AveragingConfig()
    per_task = 250

    def task(k, n, with_stack):
        rng = np.random.default_rng(k)
        img = rng.poisson(np.tile(frame.expected, (1, 1))).astype(np.float32)
        cx = rng.integers(80, 432, n)
        cy = rng.integers(80, 432, n)
        rows = pd.DataFrame({"class": "SV", "cx_px": cx, "cy_px": cy, "row_id": np.arange(n) + k * n})
        return [block_accumulate(img, (0, 0), rows, {"SV": ref}, cfg, PS, 128,
                                 stack_url=with_stack, block_key=f"b{k:06d}")]

    out = {}
    # full per-block work + tree reduction, n_small crops
    import tempfile

    from stemscale.io.crop_stack import create_stack

    with tempfile.TemporaryDirectory() as tmp:
        url = os.path.join(tmp, "timing.zarr")
        create_stack(url, crop=128, classes=["SV"])
        ntask = max(1, n_small // per_task)
        best = np.inf
        for rep in range(1):  # one run: 10^4 crops take minutes here
            t0 = time.perf_counter()
            parts = [dask.delayed(task)(k, per_task, url) for k in range(ntask)]
            acc = db.from_delayed(parts).reduction(combine_all, combine_all, split_every=4).compute()
            best = min(best, time.perf_counter() - t0)
        out["full_n"] = int(acc.moments["SV"].count)
        out["full_seconds"] = best
        out["full_crops_per_second"] = acc.moments["SV"].count / best
    # tree reduction alone for n_large crops: accumulators from pre-registered synthetic crops
    def fold(k, n):
        # one noisy stack of 500 registered crops per task, folded n / 500 times (the fold and
        # the tree are what is timed, not the random numbers)
        rng = np.random.default_rng(k)
        stack = rng.poisson(np.broadcast_to(ref, (500, 128, 128))).astype(np.float32)
        shifts = rng.normal(0, 0.3, (500, 2))
        acc = ClassAccumulator()
        for b in range(0, n, 500):
            acc.add("SV", Moments.from_stack(stack, shifts))
        return [acc]

    for n in (10_000, n_large):
        times = []
        for rep in range(3):
            t0 = time.perf_counter()
            parts = [dask.delayed(fold)(k, 2000) for k in range(max(1, n // 2000))]
            acc = db.from_delayed(parts).reduction(combine_all, combine_all, split_every=4).compute()
            times.append(time.perf_counter() - t0)
        out[f"fold_{n}_seconds_best_of_3"] = min(times)
        out[f"fold_{n}_n"] = int(acc.moments["SV"].count)
    out["fold_n"] = int(acc.moments["SV"].count)
    out["fold_seconds_best_of_3"] = out[f"fold_{n_large}_seconds_best_of_3"]
    out["full_seconds_extrapolated_10000"] = 10_000 / out["full_crops_per_second"]
    out["full_seconds_extrapolated_large"] = n_large / out["full_crops_per_second"]
    out["n_large"] = int(n_large)
    return out


# ----------------------------------------------------------------------------- figures
def figures(cs, inj, prec_table, slope, res, outdir: Path, prefix: str) -> list[str]:
    prec_table = prec_table[np.isfinite(prec_table["se_ww_mean_pm"])]
    from stemscale.strain.figures import (class_averages_figure, displacement_map_figure, precision_figure,
                                          radial_profile_figure)

    ref = {"table": PAPER["simulated_table"], "table_label": "paper: Poisson-limited simulation (3.83 pm / sqrt(N))",
           "point": (PAPER["sv_n"], PAPER["sv_precision_pm"]), "point_label": "paper: SV experiment"}
    return [
        class_averages_figure(res, "SV", outdir / f"{prefix}_class_averages.png", dpi=50),
        displacement_map_figure(cs.columns(), outdir / f"{prefix}_displacement_map.png",
                                title=f"SV (N = {res.count('SV')}): displacements vs pristine "
                                      "(arrow: 4 pm = 1 Å; ellipses: 2 s.e.)"),
        radial_profile_figure(cs.shells(), outdir / f"{prefix}_radial_profile.png", continuum=cs.continuum,
                              truth=inj["shell_u_r"], title="radial displacement around the SV vs injected field"),
        precision_figure(prec_table, outdir / f"{prefix}_precision_vs_n.png", slope=slope, reference=ref),
    ]


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default=os.environ.get("STEMSCALE_BENCH_WORKDIR", "/tmp/stemscale_bench_precision"))
    ap.add_argument("--size", type=int, default=13312, help="edge (px) of the mosaic with the field")
    ap.add_argument("--size-nofield", type=int, default=7168, help="edge (px) of the mosaic without field")
    ap.add_argument("--size-pairs", type=int, default=6144, help="edge (px) of the mosaic with SV pairs")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--max-pristine", type=int, default=3000)
    ap.add_argument("--budget-frames", type=int, default=6)
    ap.add_argument("--timing-small", type=int, default=2_000)
    ap.add_argument("--timing-large", type=int, default=100_000)
    ap.add_argument("--skip", nargs="*", default=[], help="stages to skip: budget, timing, nofield")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                           memory_limit="6GiB")
    client = Client(cluster)
    results: dict = {}
    t_start = time.perf_counter()
    try:
        log("simulating the mosaic with the oscillating field", args.size)
        sim_f = simulate(workdir, "field", args.size, True, args.seed, client)
        log("  done", sim_f.get("defects"), f"{sim_f.get('simulate_seconds', 0):.0f} s")
        log("averaging")
        res_f, truth_f, centres_f, t_avg = average(workdir, "field", sim_f, args.max_pristine, args.seed)
        log("  averaged", {c: res_f.count(c) for c in res_f.classes}, f"{t_avg:.0f} s")
        log("measuring with", args.n_boot, "bootstrap resamples")
        t0 = time.perf_counter()
        cs_f, inj_f = measure(res_f, truth_f, centres_f, args.n_boot, args.seed)
        t_meas = time.perf_counter() - t0
        comp = shell_comparison(cs_f, inj_f)
        print_table(comp[["r_A", "n_columns", "u_r_pm", "u_r_se_pm", "truth_u_r_pm", "error_pm", "error_in_se"]]
                    .to_dict(orient="records"), "first three W shells: recovered vs injected (pm)")
        sp = cs_f.spacings()
        print_table(sp.to_dict(orient="records"), "W-W triangle around the SV (pm)")
        log("precision vs N")
        ns = [100, 200, 400, 800, 1600, 3000]
        prec, slope, spread = precision_vs_n(res_f, cs_f, ns, args.n_boot, args.seed)
        ideal = poisson_ideal(res_f, cs_f)
        prec["paper_poisson_sim_pm"] = [PAPER["simulated_table"].get(int(n), np.nan) for n in prec["N"]]
        prec["poisson_ideal_pm"] = ideal["window_9"]["sigma_mean_ww_pm"] / np.sqrt(prec["N"])
        # "and beyond": the fitted sigma_1 / sqrt(N) law at the paper's larger N
        beyond = pd.DataFrame({"N": [10_000, 60_000]})
        beyond["se_ww_mean_pm"] = np.nan
        beyond["extrapolated_pm"] = slope["sigma1_from_fit"] / np.sqrt(beyond["N"])
        beyond["paper_poisson_sim_pm"] = [PAPER["simulated_table"][n] for n in beyond["N"]]
        beyond["poisson_ideal_pm"] = ideal["window_9"]["sigma_mean_ww_pm"] / np.sqrt(beyond["N"])
        prec = pd.concat([prec, beyond], ignore_index=True)
        print_table(prec.to_dict(orient="records"), "precision of the mean W-W spacing vs N (pm)")
        log("slope", slope, "sigma1", spread)
        nofield = None
        if "nofield" not in args.skip:
            log("simulating the mosaic without field", args.size_nofield)
            sim_0 = simulate(workdir, "nofield", args.size_nofield, False, args.seed + 1, client)
            res_0, truth_0, centres_0, _ = average(workdir, "nofield", sim_0, args.max_pristine // 3, args.seed)
            cs_0, inj_0 = measure(res_0, truth_0, centres_0, args.n_boot, args.seed)
            sh0 = cs_0.shells()
            sh0 = sh0[sh0["r_A"] > 0]
            z = (sh0["u_r_pm"] / sh0["u_r_se_pm"]).to_numpy()
            zt = (sh0["u_t_pm"] / sh0["u_t_se_pm"]).to_numpy()
            from scipy import stats

            chi2 = float(np.nansum(z**2))
            dof = int(np.isfinite(z).sum())
            nofield = {"n_sv": res_0.count("SV"), "n_pristine": res_0.count("pristine"),
                       "chi2_u_r": chi2, "dof": dof, "p_value_u_r": float(stats.chi2.sf(chi2, dof)),
                       "chi2_u_t": float(np.nansum(zt**2)), "p_value_u_t": float(stats.chi2.sf(np.nansum(zt**2), dof)),
                       "first_shells": sh0[sh0["site"] == "M"].head(3)[["r_A", "u_r_pm", "u_r_se_pm"]].to_dict(orient="records"),
                       "max_abs_z": float(np.nanmax(np.abs(z)))}
            log("no-field check", nofield)
        budget = None
        if "budget" not in args.skip:
            log("error budget")
            budget = error_budget(workdir, args.seed, args.budget_frames)
            print_table([{k: v for k, v in r.items() if k != "distortions"} for r in budget["rows"]],
                        "error budget (pristine crops; pm; d1 is the W-W bond along x, the fast scan)")
            budget["fitting_bias_sv"] = fitting_bias(args.seed)
            log("fitting bias (noiseless SV, no field)", budget["fitting_bias_sv"])
        pairs = None
        if "pairs" not in args.skip:
            log("pairs and coupling")
            pairs = pairs_stage(workdir, args.seed, args.size_pairs, min(args.n_boot, 400), client)
            log(pairs)
        timing = None
        if "timing" not in args.skip:
            log("reduction timing")
            timing = reduction_timing(client, args.timing_small, args.timing_large, args.seed)
            log(timing)
        figs = figures(cs_f, inj_f, prec, slope, res_f, RESULTS_DIR, "bench_precision")
        # summary.json of the run (every number with its error)
        from stemscale.strain.report import write_summary

        write_summary(workdir / "summary.json", res_f, {"SV": cs_f}, extra={
            "truth_comparison": comp, "precision_vs_n": prec, "slope": slope, "single_crop": spread,
            "poisson_ideal": ideal, "nofield": nofield, "error_budget": budget, "pairs": pairs, "timing": timing})
    finally:
        client.close()
        cluster.close()

    se_ww = float(sp.loc[sp["bond"] == "mean", "class_se_pm"].iloc[0])
    targets = [
        target("standard error of the mean W-W spacing around the SV", 0.1, se_ww, "pm", higher_is_better=False,
               note=f"N = {res_f.count('SV')} SVs, {args.n_boot} bootstrap resamples"),
    ]
    for k, row in enumerate(comp.itertuples()):
        targets.append(target(f"|recovered - injected| radial displacement, W shell {k + 1} (r = {row.r_A:.2f} Å)",
                              0.2, float(abs(row.error_pm)), "pm", higher_is_better=False,
                              note=f"measured {row.u_r_pm:.3f} ± {row.u_r_se_pm:.3f}, injected {row.truth_u_r_pm:.3f}"))
        targets.append(target(f"|recovered - injected| in standard errors, W shell {k + 1}", 3.0,
                              float(abs(row.error_in_se)), "s.e.", higher_is_better=False))
    targets.append({"name": "log-log slope of precision vs N", "target": "-0.5 ± 0.05",
                    "measured": slope["slope"], "unit": "", "met": bool(abs(slope["slope"] + 0.5) <= 0.05)})
    if nofield is not None:
        targets.append({"name": "no injected field: radial displacements consistent with zero (chi-square p-value)",
                        "target": "> 0.01", "measured": nofield["p_value_u_r"], "unit": "",
                        "met": bool(nofield["p_value_u_r"] > 0.01)})
    if timing is not None:
        targets.append({"name": f"full reduction (orientation, registration, shift, fold, zarr stack) of "
                                f"{timing['full_n']} crops, 2 workers", "target": "measured",
                        "measured": timing["full_seconds"], "unit": "s", "met": True,
                        "note": f"{timing['full_crops_per_second']:.1f} crops/s: 10^4 crops ~ "
                                f"{timing['full_seconds_extrapolated_10000']:.0f} s, 10^5 ~ "
                                f"{timing['full_seconds_extrapolated_large']:.0f} s at this rate"})
        for n in (10_000, timing["n_large"]):
            targets.append({"name": f"fold + tree reduction of {timing[f'fold_{n}_n']} crops' accumulators, 2 workers",
                            "target": "measured", "measured": timing[f"fold_{n}_seconds_best_of_3"], "unit": "s",
                            "met": True})
    parameters = {"pixel_size_A": PS, "dose_e_per_a2": DOSE, "mosaic_edge_px": args.size,
                  "mosaic_nofield_edge_px": args.size_nofield, "n_boot": args.n_boot, "seed": args.seed,
                  "detections": "simulator truth, 0.5 px jitter, rounded to whole pixels",
                  "field": "stemscale.simulate.oscillating_radial_field() defaults",
                  "paper": PAPER, "workers": 2}
    results = {
        "n_sv": res_f.count("SV"), "n_pristine": res_f.count("pristine"),
        "screening": res_f.screening, "averaging_seconds": t_avg, "measure_seconds": t_meas,
        "simulate_seconds": sim_f.get("simulate_seconds"),
        "ww_spacing": sp.to_dict(orient="records"),
        "truth_comparison": comp.to_dict(orient="records"),
        "precision_vs_n": prec.to_dict(orient="records"), "slope": slope,
        "single_crop_sigma1": spread, "poisson_ideal": ideal,
        "continuum": {k: v.to_dict() for k, v in cs_f.continuum.items()},
        "nofield": nofield, "error_budget": budget, "pairs": pairs, "reduction_timing": timing,
        "figures": [os.path.relpath(p, RESULTS_DIR.parent.parent) for p in figs],
        "total_seconds": time.perf_counter() - t_start,
    }
    path = write_results("bench_precision", parameters=parameters, results=results, targets=targets)
    print_table([{k: t[k] for k in ("name", "target", "measured", "unit", "met")} for t in targets], "targets")
    log("wrote", path)
    return 0


def _json(v):
    if isinstance(v, (np.generic,)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


if __name__ == "__main__":
    raise SystemExit(main())
