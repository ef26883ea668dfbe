"""Benchmark of FCN detection: throughput, accuracy on held-out simulations, F1 vs dose, real data.

Usage::

    python benchmarks/bench_detect.py                 # CPU, everything (slow on 2 cores)
    python benchmarks/bench_detect.py --quick         # a smoke run
    python benchmarks/bench_detect.py --device cuda   # GPU throughput (an H100 target)

Writes ``benchmarks/results/bench_detect.json`` (and an overlay PNG of the
real Se-implanted MoS2 frame from temul-toolkit, which is never copied here).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import RESULTS_DIR, print_table, target, write_results  # noqa: E402
from stemscale.classes import DEFECT_CLASSES  # noqa: E402
from stemscale.detect import available_models, get_model, model_ref, predict_proba  # noqa: E402
from stemscale.detect.evaluate import (dose_curve, eval_data_section, evaluate_frames,  # noqa: E402
                                       simulate_eval_frame)

F1_TARGETS = {"SV": 0.98, "2Te": 0.98, "DV": 0.95, "TeSe": 0.95, "MV": 0.95, "MSub": 0.95}
GPU_TARGET_MPX_S = 20.0


def throughput(loaded, *, size: int, tta: bool, repeats: int, amp: bool = False) -> dict:
    """Best-of-``repeats`` Mpx/s of :func:`predict_proba` on a simulated frame."""
    frame = simulate_eval_frame(10_000, shape=(size, size), dose=7300.0)
    img = frame.image
    dev = loaded.device
    predict_proba(img[:256, :256], loaded, tta=tta, amp=amp)  # warm-up
    times = []
    for _ in range(repeats):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        predict_proba(img, loaded, tta=tta, amp=amp)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - t0)
    best = min(times)
    return {"size": size, "tta": tta, "amp": amp, "seconds_best": best,
            "seconds_all": times, "mpx_per_s": img.size / 1e6 / best}


def amp_check(loaded, size: int = 512) -> dict:
    """Largest probability difference between float16 autocast and float32 (CUDA only)."""
    img = simulate_eval_frame(10_001, shape=(size, size)).image
    p32 = predict_proba(img, loaded, tta=True)
    p16 = predict_proba(img, loaded, tta=True, amp=True)
    agree = float(np.mean(p32.argmax(0) == p16.argmax(0)))
    return {"max_abs_prob_diff": float(np.abs(p32 - p16).max()), "argmax_agreement": agree}


def real_frame(model_name: str | None, tta: bool) -> dict:
    """Detect on the Se-implanted MoS2 frame of temul-toolkit; overlay PNG + substitution count."""
    from stemscale.detect import detect
    from stemscale.detect.plot import save_overlay
    from stemscale.io import read_frame, temul_mos2_frame_path

    path = temul_mos2_frame_path(install=True)
    fr = read_frame(path, lazy=False)
    img = np.asarray(fr.data, dtype=np.float32)
    name = model_name or ("mos2" if "mos2" in available_models() else "wse2")
    loaded = get_model(name)
    t0 = time.perf_counter()
    found = detect(img, fr.pixel_size_angstrom, model=loaded, tta=tta, resample=True)
    seconds = time.perf_counter() - t0
    counts = {c: int((found.defects["class"] == c).sum()) for c in DEFECT_CLASSES}
    mos2 = loaded.manifest.material == "MoS2"
    names = {"2Te": "Se2", "TeSe": "SeS", "SV": "S vacancy", "DV": "S2 vacancy",
             "MV": "Mo vacancy", "MSub": "W on Mo"} if mos2 else None
    png = RESULTS_DIR / "detect_mos2_overlay.png"
    save_overlay(img, found.defects, png, class_names=names,
                 title=f"temul-toolkit example_Se_implanted_MoS2.dm3, model {name} "
                 f"({loaded.manifest.material}, resampled x{found.zoom:.3f}), TTA={tta}")
    subs = counts["2Te"] + counts["TeSe"]
    return {
        "file": "temul-toolkit 0.1.9: temul/example_data/experimental/example_Se_implanted_MoS2.dm3",
        "pixel_size_angstrom": fr.pixel_size_angstrom, "shape": list(img.shape),
        "model": name, "model_material": loaded.manifest.material, "zoom": found.zoom,
        "tta": tta, "seconds": seconds, "defect_counts": counts,
        "class_meaning": names or "WSe2 names (2Te/TeSe = double/single heavier-chalcogen "
                                  "substitution)",
        "substituted_chalcogen_sites": subs,
        "substituted_chalcogen_sites_double": counts["2Te"],
        "substituted_chalcogen_sites_single": counts["TeSe"],
        "atom_columns": int(len(found.columns)),
        "overlay_png": str(png.relative_to(RESULTS_DIR.parent.parent)),
    }


def _targets(results: dict, device_type: str) -> list[dict]:
    """One entry per target of the issue, from whatever sections ``results`` holds."""
    out = []
    tp = results.get("throughput", [])
    gpu_rows = [r for r in tp if r.get("device", "cpu").startswith("cuda") and r["tta"]]
    if gpu_rows:
        out.append(target("Mpx/s with 8x TTA on one H100", GPU_TARGET_MPX_S,
                          max(r["mpx_per_s"] for r in gpu_rows), "Mpx/s",
                          note=f"measured on {gpu_rows[0].get('device_name')}"))
    else:
        out.append(target("Mpx/s with 8x TTA on one H100", GPU_TARGET_MPX_S, None, "Mpx/s",
                          note="not measured: no GPU in this session (run with --device cuda)"))
    acc = results.get("accuracy_7300")
    for c in DEFECT_CLASSES:
        if acc is None:
            out.append(target(f"F1 {c} at 7,300 e-/Å²", F1_TARGETS[c], None, "F1",
                              note="not measured"))
            continue
        row = next(r for r in acc["scores"] if r["class"] == c)
        f1 = row["f1"]
        out.append(target(
            f"F1 {c} at 7,300 e-/Å² (held-out, {acc['frames']} frames of {acc['size']}², "
            f"TTA={acc['tta']})", F1_TARGETS[c], None if f1 != f1 else float(f1), "F1",
            note=f"n_true={int(row['n_true'])}, precision={row['precision']:.4f}, "
                 f"recall={row['recall']:.4f}"))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model name or manifest (default: shipped wse2)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=1024, help="frame edge for throughput and accuracy")
    ap.add_argument("--frames", type=int, default=20, help="held-out frames at 7,300 e-/Å²")
    ap.add_argument("--no-accuracy-tta", action="store_true",
                    help="score the 7,300 e-/Å² frames without TTA (8x faster)")
    ap.add_argument("--doses", default="500,1000,2000,4000,7300,15000,30000")
    ap.add_argument("--curve-frames", type=int, default=4)
    ap.add_argument("--curve-tta", action="store_true", help="TTA for the dose curve too")
    ap.add_argument("--only", default="throughput,accuracy,curve,real",
                    help="comma-separated sections to run (throughput, accuracy, curve, real)")
    ap.add_argument("--update", action="store_true",
                    help="keep the other sections of an existing results file")
    ap.add_argument("--real-model", default=None,
                    help="model for the real MoS2 frame (default: shipped mos2, else wse2)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, for checking the script")
    ap.add_argument("--out", default=None, help="results JSON (default benchmarks/results/bench_detect.json)")
    args = ap.parse_args(argv)
    if args.quick:
        args.size, args.frames, args.curve_frames, args.repeats = 256, 1, 1, 1
        args.doses = "2000,7300"
    only = {v.strip() for v in args.only.split(",") if v.strip()}
    out_path = Path(args.out) if args.out else RESULTS_DIR / "bench_detect.json"

    loaded = get_model(args.model, device=args.device)
    ref = model_ref(args.model)
    manifest = loaded.manifest
    previous = {}
    if args.update and out_path.exists():
        previous = json.loads(out_path.read_text())
    params = dict(previous.get("parameters", {}))
    params.update({"model": manifest.name, "sha256": ref.sha256, "model_config": manifest.model,
                   "match_radius_px": 7.5, "border_px": 8.0, "window": 256, "overlap": 64,
                   "eval_seed_stream": "stemscale.detect.evaluate.EVAL_SEED (disjoint from "
                                       "training and validation)"})
    results: dict = dict(previous.get("results", {}))
    if previous and previous.get("parameters", {}).get("sha256") not in (None, ref.sha256):
        results = {}  # another model: start afresh
    results["model_training"] = manifest.training

    if "throughput" in only:
        load_before = os.getloadavg()[0]
        rows = []
        for tta in (False, True):
            amps = (False, True) if loaded.device.type == "cuda" else (False,)
            for amp in amps:
                r = throughput(loaded, size=args.size, tta=tta, repeats=args.repeats, amp=amp)
                row = {k: r[k] for k in ("size", "tta", "amp", "seconds_best", "mpx_per_s")}
                row["device"] = str(loaded.device)
                row["threads"] = torch.get_num_threads()
                if loaded.device.type == "cuda":
                    row["device_name"] = torch.cuda.get_device_name(loaded.device)
                rows.append(row)
        print_table(rows, f"throughput on {loaded.device} ({torch.get_num_threads()} threads)")
        keep = [r for r in results.get("throughput", []) if r.get("device") != str(loaded.device)]
        results["throughput"] = keep + rows
        results["throughput_note"] = (
            "best of --repeats runs of predict_proba on a simulated frame (256 px windows, 64 px "
            "overlap); the machine is shared with other jobs, see load_average. Paper reference: "
            "a 1024² frame in 8-16 s per class model with 8x TTA on a hosted GPU, about 0.1 Mpx/s.")
        results["throughput_load_average"] = {"before": load_before, "after": os.getloadavg()[0]}
        if loaded.device.type == "cuda":
            results["amp_vs_fp32"] = amp_check(loaded)
        params["repeats"] = args.repeats

    data = eval_data_section(material=manifest.material,
                             pixel_size_angstrom=loaded.pixel_size_angstrom)
    if "accuracy" in only:
        tta = not args.no_accuracy_tta
        t0 = time.perf_counter()
        frames = (simulate_eval_frame(i, shape=(args.size, args.size), dose=7300.0, data=data)
                  for i in range(args.frames))
        ev = evaluate_frames(loaded, frames, tta=tta)
        s = ev["scores"]
        print_table([{"class": c, **{k: (int(s.loc[c, k]) if k in ("n_true", "tp", "fp", "fn")
                                         else float(s.loc[c, k]))
                                     for k in ("n_true", "tp", "fp", "fn", "precision", "recall", "f1")}}
                     for c in s.index], f"{args.frames} held-out frames, 7,300 e-/Å², TTA={tta}")
        print(ev["confusion"].to_string())
        print("columns:", ev["columns"])
        section = {
            "frames": ev["frames"], "size": args.size, "tta": tta, "dose_e_per_A2": 7300.0,
            "concentrations": "stemscale.simulate.DEFAULT_CONCENTRATIONS",
            "scores": s.reset_index().to_dict(orient="records"),
            "confusion": {"rows_true_cols_predicted": ev["confusion"].to_dict(orient="index")},
            "columns": ev["columns"], "wall_seconds": time.perf_counter() - t0,
        }
        key = "accuracy_7300" if tta else "accuracy_7300_no_tta"
        results[key] = section
        if not tta and "accuracy_7300" not in results:
            results["accuracy_7300"] = section

    if "curve" in only:
        doses = [float(v) for v in args.doses.split(",") if v.strip()]
        t0 = time.perf_counter()
        curve = dose_curve(loaded, doses, n_frames=args.curve_frames, shape=(args.size, args.size),
                           tta=args.curve_tta, data=data)
        print(curve.round(3).to_string(index=False))
        results["f1_vs_dose"] = {"tta": args.curve_tta, "frames_per_dose": args.curve_frames,
                                 "size": args.size, "rows": curve.to_dict(orient="records"),
                                 "wall_seconds": time.perf_counter() - t0}

    if "real" in only:
        try:
            results["real_mos2"] = real_frame(args.real_model, tta=True)
            print(json.dumps(results["real_mos2"], indent=2))
        except Exception as exc:  # the frame needs temul-toolkit; report, do not hide
            results["real_mos2"] = {"error": f"{type(exc).__name__}: {exc}"}
            print("real frame skipped:", exc)

    targets = _targets(results, loaded.device.type)
    path = write_results("bench_detect", parameters=params, results=results, targets=targets,
                         path=out_path)
    print_table([{k: v for k, v in t.items() if k != "note"} for t in targets], "targets")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
