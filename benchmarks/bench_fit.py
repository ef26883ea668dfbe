"""Benchmark of the batched Gaussian fitter (stemscale.fit) against its peers.

All methods fit the same columns: a square lattice of elliptical Gaussians on a
constant background with Poisson noise, far enough apart that a window holds
one column; windows of 7 x 7 and 11 x 11 px are cut around the rounded true
positions (what a peak finder gives) and every method starts from the same
moment estimates.

Methods
-------
* stemscale, compiled CPU kernel (numba, all cores), LSE and Poisson MLE;
* stemscale, portable array-API implementation on NumPy and on torch (CPU);
* a per-window ``scipy.optimize.curve_fit`` loop (the AtomAI-style baseline),
  timed on a subset, rate extrapolated;
* atomap's ``refine_atom_positions_using_2d_gaussian`` on the same image
  (optional, GPL: only if importable here or from ``--atomap-python``);
* ``--gpu``: the fused CUDA kernel (CuPy) on 10^7 windows, with the fraction
  of the GPU's memory-bandwidth and FP32 roofline, plus the portable
  implementation on torch CUDA.

It also records accuracy (bias, spread against the Cramér-Rao bound, agreement
with ``scipy.optimize.least_squares``) and the position bias that
neighbour-aware refits remove on a simulated WSe2 frame at 20.74 pm/px.

Usage::

    python benchmarks/bench_fit.py                 # CPU, writes results/bench_fit.json
    python benchmarks/bench_fit.py --gpu-only      # GPU section only; keeps the CPU results
    python benchmarks/bench_fit.py --gpu           # both, on the machine it runs on
    python benchmarks/bench_fit.py --quick         # small sizes, for a smoke test

Each section records the hardware it ran on; the GPU target stays "not
measured" until a run with a GPU fills it in.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    RESULTS_DIR,
    hardware,
    print_table,
    print_targets,
    target,
    write_results,
)
from stemscale.fit import (  # noqa: E402
    FitState,
    crlb,
    covariance,
    estimate_initial,
    extract_windows,
    fit_batch,
    fit_with_neighbours,
    render_peaks,
    standard_errors,
)

NAME = "bench_fit"
CPU_TARGET = 100_000.0
GPU_TARGET = 20e6
# Peer figures from ../shared/reference/peers.md (1.2, 1.6) and the issue.
PEERS_QUOTED = {
    "curve_fit_loop_fits_per_s": 2800.0,
    "atomap_columns_per_s": 85.0,
    "gpufit_best_published_fits_per_s": 4.0e6,
}
# Known peak numbers for the roofline when the driver does not report them.
GPU_PEAKS = {  # name fragment: (memory bandwidth B/s, FP32 FLOP/s)
    "H100 PCIe": (2.0e12, 51.2e12),
    "H100 NVL": (3.9e12, 60.0e12),
    "H100": (3.35e12, 66.9e12),
    "H200": (4.8e12, 66.9e12),
    "A100": (2.0e12, 19.5e12),
}


# ----------------------------------------------------------------------------- data
def lattice_problem(size: int, n: int, seed: int) -> dict[str, Any]:
    """Image of n isolated elliptical Gaussians, their windows, start values and truth."""
    rng = np.random.default_rng(seed)
    spacing = size + 6                              # neighbours' tails < 1e-9 of a peak
    side = int(np.ceil(np.sqrt(n)))
    shape = (side * spacing + spacing, side * spacing + spacing)
    iy, ix = np.divmod(np.arange(n), side)
    x = spacing + ix * spacing + rng.uniform(-0.5, 0.5, n)
    y = spacing + iy * spacing + rng.uniform(-0.5, 0.5, n)
    smin, smax = (1.1, 1.6) if size <= 7 else (1.5, 2.3)
    truth = np.column_stack([
        rng.uniform(300.0, 1200.0, n), x, y, rng.uniform(smin, smax, n), rng.uniform(smin, smax, n),
        np.zeros(n),
    ])
    background = 30.0
    expected = render_peaks(shape, truth, "gauss2d_elliptic", 4 * size + 1) + background
    image = rng.poisson(expected).astype(np.float64)
    start_xy = np.round(truth[:, 1:3])              # a peak finder's integer positions
    windows, origins, _ = extract_windows(image, start_xy, size)
    start = estimate_initial(windows, positions_xy=start_xy - origins)
    local = truth.copy()
    local[:, 1:3] -= origins
    local[:, 5] = background
    return {"image": image, "windows": windows, "origins": origins, "start": start,
            "truth_local": local, "truth_xy": truth[:, 1:3], "start_xy": start_xy, "size": size}


def accuracy(params: np.ndarray, states: np.ndarray, prob: dict[str, Any],
             subset: slice | np.ndarray = slice(None)) -> dict[str, float]:
    """Bias and spread of fitted x, and the spread in units of the per-column CRLB."""
    truth = prob["truth_local"][subset]
    ok = states == int(FitState.CONVERGED)
    err = params[ok, 1] - truth[ok, 1]
    bound = crlb(truth[ok], "gauss2d_elliptic", (prob["size"], prob["size"]))[:, 1]
    z = err / bound
    return {
        "converged_fraction": float(ok.mean()),
        "x_bias_px": float(err.mean()),
        "x_spread_px": float(err.std()),
        "x_spread_over_crlb": float(z.std()),
        "mean_crlb_x_px": float(bound.mean()),
    }


def best_of(runs: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, out = np.inf, None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


# ----------------------------------------------------------------------------- peers
def curve_fit_loop(windows: np.ndarray, start: np.ndarray) -> np.ndarray:
    from scipy.optimize import curve_fit

    h, w = windows.shape[1:]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    xy = (xx.ravel(), yy.ravel())

    def model(c, a, x0, y0, sx, sy, b):
        return a * np.exp(-((c[0] - x0) ** 2) / (2 * sx**2) - (c[1] - y0) ** 2 / (2 * sy**2)) + b

    out = np.full_like(start, np.nan)
    for i in range(len(windows)):
        try:
            out[i], _ = curve_fit(model, xy, windows[i].ravel(), p0=start[i], maxfev=2000)
        except (RuntimeError, ValueError):
            pass
    return out


_ATOMAP_SCRIPT = r"""
import json, sys, time, warnings
import numpy as np
warnings.filterwarnings("ignore")
import atomap.api as am
from importlib.metadata import version
d = np.load(sys.argv[1])
img, pos = d["image"], d["positions"]
warm = am.Sublattice(pos[:12], img)
warm.find_nearest_neighbors()
warm.refine_atom_positions_using_2d_gaussian(show_progressbar=False)
sub = am.Sublattice(pos, img)
sub.find_nearest_neighbors()
t0 = time.perf_counter()
sub.refine_atom_positions_using_2d_gaussian(show_progressbar=False)
dt = time.perf_counter() - t0
out = {"seconds": dt, "x": [float(v) for v in sub.x_position],
       "y": [float(v) for v in sub.y_position], "version": version("atomap")}
json.dump(out, open(sys.argv[2], "w"))
"""


def atomap_run(prob: dict[str, Any], n: int, python: str | None) -> dict[str, Any]:
    """atomap on a crop of the same image holding the first columns (subprocess, GPL kept apart)."""
    if python is None:
        try:
            import atomap  # noqa: F401

            python = sys.executable
        except ImportError:
            return {"available": False, "reason": "atomap is not installed (optional, GPL); "
                    "pass --atomap-python with an interpreter that has it"}
    size = prob["size"]
    spacing = size + 6
    side = int(np.ceil(np.sqrt(len(prob["truth_xy"]))))
    rows = max(1, n // side)
    sel = np.arange(rows * side)
    ymax = int(prob["truth_xy"][sel, 1].max() + spacing)
    crop = prob["image"][:ymax]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.npz"
        dst = Path(tmp) / "out.json"
        np.savez(src, image=crop, positions=prob["start_xy"][sel])
        script = Path(tmp) / "run_atomap.py"
        script.write_text(_ATOMAP_SCRIPT)
        proc = subprocess.run([python, str(script), str(src), str(dst)], capture_output=True,
                              text=True, timeout=3600)
        if proc.returncode != 0:
            return {"available": False, "reason": "atomap run failed: " + proc.stderr[-500:]}
        out = json.loads(dst.read_text())
    fitted = np.column_stack([out["x"], out["y"]])
    err = fitted[:, 0] - prob["truth_xy"][sel, 0]
    return {"available": True, "version": out["version"], "n_columns": int(len(sel)),
            "seconds": out["seconds"], "fits_per_s": len(sel) / out["seconds"],
            "x_bias_px": float(err.mean()), "x_spread_px": float(err.std())}


# ----------------------------------------------------------------------------- CPU
def run_cpu(args: argparse.Namespace) -> dict[str, Any]:
    import numba
    import torch

    results: dict[str, Any] = {"hardware": hardware(), "load_average_before": os.getloadavg(),
                               "numba_threads": numba.get_num_threads(), "sizes": {}}
    for size in args.sizes:
        prob = lattice_problem(size, args.n, seed=size)
        data, start = prob["windows"], prob["start"]
        rows = []
        # compile / warm up once outside the timings
        for est in ("lse", "mle"):
            fit_batch(data[:64], start[:64], estimator=est, backend="numba")
        entry: dict[str, Any] = {"n_fits": len(data), "window": [size, size]}

        for est in ("lse", "mle"):
            t, r = best_of(args.runs,
                           lambda: fit_batch(data, start, estimator=est, backend="numba"))
            entry[f"numba_{est}"] = {"seconds": t, "fits_per_s": len(data) / t,
                                     "mean_iterations": float(r.iterations.mean()),
                                     **accuracy(r.parameters, r.states, prob)}
            rows.append(("stemscale numba (%d threads) %s" % (numba.get_num_threads(), est),
                         len(data), len(data) / t))
        numba.set_num_threads(1)
        try:
            t, _ = best_of(args.runs, lambda: fit_batch(data, start, backend="numba"))
        finally:
            numba.set_num_threads(results["numba_threads"])
        entry["numba_lse_1thread"] = {"seconds": t, "fits_per_s": len(data) / t}
        rows.append(("stemscale numba (1 thread) lse", len(data), len(data) / t))

        k = min(args.n_portable, len(data))
        t, r = best_of(args.runs, lambda: fit_batch(data[:k], start[:k], backend="numpy"))
        entry["numpy_lse"] = {"n_fits": k, "seconds": t, "fits_per_s": k / t,
                              **accuracy(r.parameters, r.states, prob, slice(0, k))}
        rows.append(("stemscale portable NumPy lse", k, k / t))
        td, ts = torch.from_numpy(data[:k].copy()), torch.from_numpy(start[:k].copy())
        fit_batch(td[:64], ts[:64])
        per_threads = {}
        for nt in sorted({1, os.cpu_count() or 1}):
            torch.set_num_threads(nt)
            per_threads[nt], _ = best_of(args.runs, lambda: fit_batch(td, ts))
        nt_best = min(per_threads, key=per_threads.get)
        t = per_threads[nt_best]
        entry["torch_cpu_lse"] = {"n_fits": k, "seconds": t, "fits_per_s": k / t,
                                  "threads": nt_best,
                                  "fits_per_s_by_threads": {str(a): k / b
                                                            for a, b in per_threads.items()}}
        rows.append((f"stemscale portable torch CPU lse ({nt_best} thread(s))", k, k / t))

        k = min(args.n_curve_fit, len(data))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t, cf = best_of(1, lambda: curve_fit_loop(data[:k], start[:k]))
        ok = np.all(np.isfinite(cf), axis=1)
        states = np.where(ok, int(FitState.CONVERGED), int(FitState.DIVERGED))
        entry["curve_fit_loop"] = {"n_fits": k, "seconds": t, "fits_per_s": k / t,
                                   **accuracy(np.nan_to_num(cf), states, prob, slice(0, k))}
        rows.append(("scipy curve_fit loop (subset)", k, k / t))
        # same windows, same start: per-fit agreement of the numba fit with curve_fit
        ours = fit_batch(data[:k], start[:k], backend="numba")
        both = ok & (ours.states == 0)
        entry["numba_vs_curve_fit_max_abs_dx_px"] = float(
            np.abs(ours.parameters[both, 1] - cf[both, 1]).max())

        if not args.no_atomap:
            entry["atomap"] = atomap_run(prob, args.n_atomap, args.atomap_python)
            if entry["atomap"].get("available"):
                rows.append(("atomap 2D-Gaussian refinement (subset)", entry["atomap"]["n_columns"],
                             entry["atomap"]["fits_per_s"]))

        best = entry["numba_lse"]["fits_per_s"]
        table = []
        for name, count, rate in rows:
            table.append({"method": name, "n_fits": count, "fits_per_s": float(rate),
                          "stemscale_numba_lse_x": best / rate})
        cfr = entry["curve_fit_loop"]["fits_per_s"]
        entry["ratios"] = {
            "numba_lse_over_curve_fit": best / cfr,
            "numpy_lse_over_curve_fit": entry["numpy_lse"]["fits_per_s"] / cfr,
            "torch_cpu_lse_over_curve_fit": entry["torch_cpu_lse"]["fits_per_s"] / cfr,
            "numba_lse_over_quoted_curve_fit": best / PEERS_QUOTED["curve_fit_loop_fits_per_s"],
            "numba_lse_over_quoted_atomap": best / PEERS_QUOTED["atomap_columns_per_s"],
        }
        if entry.get("atomap", {}).get("available"):
            entry["ratios"]["numba_lse_over_atomap"] = best / entry["atomap"]["fits_per_s"]
        print_table(table, title=f"{size} x {size} windows, elliptical Gaussian + background, "
                                 "Poisson")
        results["sizes"][f"{size}x{size}"] = entry
    results["load_average_after"] = os.getloadavg()
    return results


def oracle_and_monte_carlo(args: argparse.Namespace) -> dict[str, Any]:
    """Accuracy acceptance numbers: least_squares agreement, MC spread vs predicted errors."""
    from scipy.optimize import least_squares

    rng = np.random.default_rng(5)
    shape = (7, 7)
    n = 100 if args.quick else 200
    truth = np.column_stack([rng.uniform(300, 1200, n), 3 + rng.uniform(-0.5, 0.5, n),
                             3 + rng.uniform(-0.5, 0.5, n), rng.uniform(1.1, 1.6, n),
                             rng.uniform(1.1, 1.6, n), rng.uniform(10, 50, n)])
    import array_api_compat.numpy as xp

    from stemscale.fit import evaluate

    clean = evaluate(xp, "gauss2d_elliptic", truth, shape, jacobian=False)[0]
    start = truth * rng.uniform(0.85, 1.15, truth.shape)
    start[:, 1:3] = truth[:, 1:3] + rng.uniform(-0.4, 0.4, (n, 2))
    ours = fit_batch(clean, start)
    ref = np.empty_like(start)
    for i in range(n):
        def res(q, i=i):
            return evaluate(xp, "gauss2d_elliptic", q[None], shape, jacobian=False)[0][0] - clean[i]
        ref[i] = least_squares(res, start[i], xtol=1e-14, ftol=1e-14, gtol=1e-14, x_scale="jac").x
    dev = float(np.abs(ours.parameters[:, 1:3] - ref[:, 1:3]).max())

    true = np.array([[2000.0, 3.2, 2.9, 1.35, 1.25, 10.0]])
    mean = evaluate(xp, "gauss2d_elliptic", true, shape, jacobian=False)[0]
    m = 2000 if args.quick else 10_000
    data = rng.poisson(np.repeat(mean, m, axis=0)).astype(np.float64)
    st = np.repeat(true, m, axis=0) * np.array([0.9, 1, 1, 1.1, 0.9, 1.2])
    st[:, 1:3] += rng.uniform(-0.3, 0.3, (m, 2))
    lse = fit_batch(data, st)
    mle = fit_batch(data, st, estimator="mle")
    pred = standard_errors(covariance(true, mean, "gauss2d_elliptic", shape, estimator="lse",
                                      noise="poisson"))[0, 1]
    bound = crlb(true, "gauss2d_elliptic", shape)[0, 1]
    lse_ratio = float(lse.parameters[lse.states == 0, 1].std() / pred)
    mle_ratio = float(mle.parameters[mle.states == 0, 1].std() / bound)
    return {"noiseless_max_abs_dx_vs_least_squares_px": dev, "n_noiseless": n,
            "monte_carlo_realisations": m, "true_parameters": true[0].tolist(),
            "lse_x_spread_over_predicted_se": lse_ratio, "mle_x_spread_over_crlb": mle_ratio,
            "crlb_x_px": float(bound), "lse_predicted_se_x_px": float(pred)}


def neighbour_bias(args: argparse.Namespace) -> dict[str, Any]:
    """Bias of W positions from single-Gaussian fits vs neighbour-aware refits, simulated WSe2."""
    try:
        from stemscale.simulate import Sample, simulate_frame
    except ImportError as exc:
        return {"available": False, "reason": f"stemscale.simulate unavailable: {exc}"}
    shape = (256, 256) if args.quick else (512, 512)
    sample = Sample(concentrations={"SV": 0.03, "DV": 0.02}, position_noise_pm=0.0,
                    background_variation=0.0)
    frame = simulate_frame(shape, sample=sample, seed=7, labels=False)
    ps_pm = frame.metadata.pixel_size_angstrom * 100.0
    truth = frame.truth
    has_atoms = truth["n_atoms"].to_numpy() > 0
    t = truth[has_atoms].reset_index(drop=True)
    pos = t[["x_px", "y_px"]].to_numpy()
    # keep W columns whose windows lie inside the frame and whose neighbours are all listed
    margin = 14
    w_sel = ((t["site"] == "M") & (t["x_px"] > margin) & (t["x_px"] < shape[1] - 1 - margin)
             & (t["y_px"] > margin) & (t["y_px"] < shape[0] - 1 - margin)).to_numpy()
    # W columns with a defective chalcogen neighbour (asymmetric surroundings)
    defects = truth[(truth["site"] == "X") & (truth["defect"] != "")][["x_px", "y_px"]].to_numpy()
    near = np.zeros(len(t), bool)
    if len(defects):
        d = np.hypot(pos[:, None, 0] - defects[None, :, 0], pos[:, None, 1] - defects[None, :, 1])
        near = (d.min(axis=1) * ps_pm < 230.0)
    start = np.round(pos)
    out: dict[str, Any] = {"available": True, "frame_shape": list(shape), "pixel_size_pm": ps_pm,
                           "dose_e_per_a2": frame.metadata.dose_e_per_a2,
                           "n_w_columns": int(w_sel.sum()),
                           "n_w_next_to_defect": int((w_sel & near).sum()),
                           "image": "noiseless expectation (bias only)", "results": {}}
    for window in (7, 11):
        for rounds in (0, 3):
            wf = fit_with_neighbours(frame.expected.astype(np.float64), start, window=window,
                                     rounds=rounds)
            p = wf.global_parameters()
            good = (wf.result.states == 0) & w_sel
            e = np.hypot(p[:, 1] - pos[:, 0], p[:, 2] - pos[:, 1]) * ps_pm
            key = f"window{window}_{'single' if rounds == 0 else f'neighbours{rounds}'}"
            out["results"][key] = {
                "converged_w": int(good.sum()),
                "w_rms_error_pm": float(np.sqrt(np.mean(e[good] ** 2))),
                "w_max_error_pm": float(e[good].max()),
                "w_near_defect_rms_error_pm": float(np.sqrt(np.mean(e[good & near] ** 2)))
                if (good & near).any() else None,
            }
    noisy = {}
    for rounds in (0, 3):
        wf = fit_with_neighbours(frame.image.astype(np.float64), start, window=11, rounds=rounds,
                                 estimator="mle")
        p = wf.global_parameters()
        good = (wf.result.states == 0) & w_sel
        dx = (p[good, 1] - pos[good, 0]) * ps_pm
        noisy[f"window11_{'single' if rounds == 0 else 'neighbours3'}_mle"] = {
            "x_bias_pm": float(dx.mean()), "x_spread_pm": float(dx.std()),
        }
    out["noisy_frame_default_dose"] = noisy
    return out


# ----------------------------------------------------------------------------- GPU
def run_gpu(args: argparse.Namespace) -> dict[str, Any]:
    """10^7 fits on the GPU with the fused kernel; roofline fractions."""
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no CUDA device")
    except Exception as exc:  # noqa: BLE001
        return {"measured": False, "reason": f"no usable GPU / CuPy: {exc}"}
    import array_api_compat

    from stemscale.fit import evaluate

    xp = array_api_compat.array_namespace(cupy.empty(1))
    dev = cupy.cuda.Device()
    props = cupy.cuda.runtime.getDeviceProperties(dev.id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    sms = dev.attributes["MultiProcessorCount"]
    clock_hz = dev.attributes.get("ClockRate", 0) * 1e3
    mem_clock = dev.attributes.get("MemoryClockRate", 0) * 1e3
    bus_bits = dev.attributes.get("GlobalMemoryBusWidth", 0)
    peak_bw = 2.0 * mem_clock * bus_bits / 8.0 if mem_clock and bus_bits else None
    peak_fp32 = sms * 128 * 2.0 * clock_hz if clock_hz else None
    for frag, (bw, fl) in GPU_PEAKS.items():
        if frag in name:
            peak_bw = peak_bw or bw
            peak_fp32 = peak_fp32 or fl
            break
    out: dict[str, Any] = {"measured": True, "device": name, "sms": sms,
                           "peak_bandwidth_B_per_s": peak_bw, "peak_fp32_flop_per_s": peak_fp32,
                           "sizes": {}}
    rs = cupy.random.RandomState(1)
    for size in args.gpu_sizes:
        n = args.gpu_n
        M = size * size
        c = (size - 1) / 2
        smin, smax = (1.1, 1.6) if size <= 7 else (1.5, 2.3)
        truth = cupy.stack([rs.uniform(300, 1200, n), c + rs.uniform(-0.5, 0.5, n),
                            c + rs.uniform(-0.5, 0.5, n), rs.uniform(smin, smax, n),
                            rs.uniform(smin, smax, n), rs.uniform(20, 60, n)], axis=1)
        data = cupy.empty((n, M), dtype=cupy.float32)
        chunk = 1 << 20
        for s in range(0, n, chunk):
            f, _ = evaluate(xp, "gauss2d_elliptic", truth[s:s + chunk], (size, size),
                            jacobian=False)
            data[s:s + chunk] = rs.poisson(f).astype(cupy.float32)
        start = truth * cupy.asarray([0.9, 1, 1, 1.1, 0.9, 1.2])
        start[:, 1:3] += rs.uniform(-0.3, 0.3, (n, 2))
        start = start.astype(cupy.float32)
        fit_batch(data[:1024], start[:1024], backend="cupy")          # compile
        cupy.cuda.Device().synchronize()
        times = []
        r = None
        for _ in range(args.runs):
            e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
            e0.record()
            r = fit_batch(data, start, backend="cupy")
            e1.record()
            e1.synchronize()
            times.append(cupy.cuda.get_elapsed_time(e0, e1) / 1e3)
        t = min(times)
        iters = float(r.iterations.mean().get())
        states = r.states.get()
        # traffic: every window read once (kernel stages it through shared memory),
        # start values read and results written once
        bytes_moved = n * (M * 4 + 6 * 4 * 2 + 4 + 4 + 4)
        flops_per_eval = (2 * 21 + 2 * 6 + 16) * M + 20 * 2 * size
        flops = n * (iters + 1) * flops_per_eval + n * iters * 200
        entry = {"n_fits": n, "seconds": t, "fits_per_s": n / t, "mean_iterations": iters,
                 "converged_fraction": float((states == 0).mean()),
                 "achieved_bandwidth_B_per_s": bytes_moved / t,
                 "achieved_flop_per_s": flops / t,
                 "fraction_of_bandwidth_roofline": (bytes_moved / t) / peak_bw if peak_bw else None,
                 "fraction_of_fp32_roofline": (flops / t) / peak_fp32 if peak_fp32 else None,
                 "compute": "float32"}
        err = r.parameters[:, 1] - truth[:, 1]
        ok = r.states == 0
        entry["x_spread_px"] = float(err[ok].std().get())
        entry["x_bias_px"] = float(err[ok].mean().get())
        try:
            import torch

            if torch.cuda.is_available():
                k = min(n, 1_000_000)
                td = torch.from_dlpack(data[:k])
                ts = torch.from_dlpack(start[:k])
                fit_batch(td[:1024], ts[:1024])
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                fit_batch(td, ts)
                torch.cuda.synchronize()
                rate = k / (time.perf_counter() - t0)
                entry["torch_cuda_portable"] = {"n_fits": k, "fits_per_s": rate}
        except Exception as exc:  # noqa: BLE001
            entry["torch_cuda_portable"] = {"error": str(exc)}
        out["sizes"][f"{size}x{size}"] = entry
        print_table([{"method": f"stemscale CuPy fused kernel {size}x{size}", "n_fits": n,
                      "fits_per_s": n / t,
                      "bw_fraction": entry["fraction_of_bandwidth_roofline"] or float("nan"),
                      "fp32_fraction": entry["fraction_of_fp32_roofline"] or float("nan")}],
                    title=f"GPU: {name}")
        del data, truth, start, r
        cupy.get_default_memory_pool().free_all_blocks()
    return out


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="fits per window size (numba)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[7, 11])
    ap.add_argument("--n-portable", type=int, default=20_000)
    ap.add_argument("--n-curve-fit", type=int, default=1000)
    ap.add_argument("--n-atomap", type=int, default=200)
    ap.add_argument("--atomap-python", default=None,
                    help="interpreter with atomap installed (kept out of this environment: GPL)")
    ap.add_argument("--no-atomap", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--gpu", action="store_true", help="run the GPU section (10^7 fits)")
    ap.add_argument("--gpu-only", action="store_true", help="GPU section only; keep CPU results")
    ap.add_argument("--gpu-n", type=int, default=10_000_000)
    ap.add_argument("--gpu-sizes", type=int, nargs="+", default=[7, 11])
    ap.add_argument("--skip-neighbours", action="store_true")
    ap.add_argument("--quick", action="store_true", help="small problem sizes (smoke test)")
    ap.add_argument("--output", type=Path, default=RESULTS_DIR / f"{NAME}.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.n_portable, args.n_curve_fit, args.n_atomap = 5000, 2000, 100, 30
        args.gpu_n = min(args.gpu_n, 100_000)
        args.runs = min(args.runs, 2)

    previous: dict[str, Any] = {}
    if args.output.exists():
        try:
            previous = json.loads(args.output.read_text()).get("results", {})
        except (OSError, ValueError):
            previous = {}

    results: dict[str, Any] = dict(previous)
    if not args.gpu_only:
        results["cpu"] = run_cpu(args)
        results["accuracy"] = oracle_and_monte_carlo(args)
        if not args.skip_neighbours:
            results["neighbour_bias_wse2"] = neighbour_bias(args)
    if args.gpu or args.gpu_only:
        results["gpu"] = run_gpu(args)
    elif "gpu" not in results:
        results["gpu"] = {"measured": False, "reason": "no GPU in this session (run with --gpu)"}

    cpu7 = results.get("cpu", {}).get("sizes", {}).get("7x7", {})
    gpu = results.get("gpu", {})
    gpu7 = gpu.get("sizes", {}).get("7x7", {}) if gpu.get("measured") else {}
    acc = results.get("accuracy", {})
    targets = [
        target("CPU fits/s, 7x7 elliptical Gaussian + background, LSE, this machine (all cores)",
               CPU_TARGET, cpu7.get("numba_lse", {}).get("fits_per_s"), "fits/s"),
        target("GPU fits/s, 10^7 fits 7x7, one H100", GPU_TARGET, gpu7.get("fits_per_s"), "fits/s",
               note=None if gpu7 else gpu.get("reason", "not measured")),
        target("noiseless: max |x - least_squares x|", 1e-4,
               acc.get("noiseless_max_abs_dx_vs_least_squares_px"), "px", higher_is_better=False),
        target("Monte Carlo 10^4: |LSE spread of x / predicted SE - 1|", 0.10,
               None if "lse_x_spread_over_predicted_se" not in acc
               else abs(acc["lse_x_spread_over_predicted_se"] - 1), "fraction",
               higher_is_better=False),
        target("Monte Carlo 10^4: |MLE spread of x / CRLB - 1|", 0.10,
               None if "mle_x_spread_over_crlb" not in acc
               else abs(acc["mle_x_spread_over_crlb"] - 1),
               "fraction", higher_is_better=False),
    ]
    if gpu7:
        targets.append(target("GPU fraction of memory-bandwidth roofline (7x7)", 0.0,
                              gpu7.get("fraction_of_bandwidth_roofline"), "fraction",
                              note="reported, no target"))
        targets.append(target("GPU fraction of FP32 roofline (7x7)", 0.0,
                              gpu7.get("fraction_of_fp32_roofline"), "fraction",
                              note="reported, no target"))
    params = {"sizes": args.sizes, "n_fits": args.n, "n_portable": args.n_portable,
              "n_curve_fit": args.n_curve_fit, "n_atomap": args.n_atomap, "runs": args.runs,
              "model": "gauss2d_elliptic", "noise": "Poisson, background 30 counts",
              "amplitude_counts": [300, 1200], "max_iterations": 25, "tolerance": 1e-4,
              "start_values": "estimate_initial from rounded true positions (same for all methods)",
              "peers_quoted": PEERS_QUOTED, "gpu_n": args.gpu_n, "quick": args.quick}
    path = write_results(NAME, parameters=params, results=results, targets=targets,
                         extra_versions=("pandas", "array_api_compat"), path=args.output)
    print_targets(targets)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
