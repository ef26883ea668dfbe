"""``stemscale train``, ``stemscale detect`` and ``stemscale evaluate``: the FCN detector."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:  # pragma: no cover
    from rich.progress import Progress

from ..errors import InputError
from .storage import add_storage_option, storage_options


def register(sub: argparse._SubParsersAction) -> None:
    _register_train(sub)
    _register_detect(sub)
    _register_evaluate(sub)


# ----------------------------------------------------------------------------- train
def _register_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train the defect-detection FCN on simulated frames",
        description="Train a ResUNet on frames simulated on the fly (random microscope, dose, "
        "distortions, defects). Writes checkpoint.pt, metrics.csv and, at the end, "
        "<name>.pt + <name>.json (weights and manifest with sha256) into --out. "
        "Rerunning with the same --out resumes from the checkpoint.",
    )
    p.add_argument("config", help="training YAML, e.g. pipelines/train_fcn.yaml")
    p.add_argument("--out", required=True, help="output folder (checkpoint, metrics, weights)")
    p.add_argument("--steps", type=int, default=None, help="override optim.steps")
    p.add_argument("--max-minutes", type=float, default=None, help="override run.max_minutes")
    p.add_argument("--device", default=None, help="override run.device (cpu, cuda, cuda:1)")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if a checkpoint exists")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from ..detect.config import load_train_config
    from ..detect.training import train

    cfg = load_train_config(args.config)
    if args.steps is not None:
        cfg.optim.steps = args.steps
    if args.max_minutes is not None:
        cfg.run.max_minutes = args.max_minutes
    if args.device is not None:
        cfg.run.device = args.device
    cfg.validate(args.config)
    res = train(cfg, args.out, resume=not args.no_resume)
    print(f"trained {res.steps} steps; model: {res.model_ref.manifest_path if res.model_ref else '-'}")
    return 0


# ---------------------------------------------------------------------------- detect
def _register_detect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect",
        help="find and classify defects and atom columns in an image",
        description="Run the FCN on a TIFF, DM3/DM4 or EMD frame (or a small mosaic .zarr) and "
        "write defects.csv and columns.csv (pixel and Å coordinates) into --out. Large mosaics "
        "go through the Dask pipeline instead.",
    )
    p.add_argument("input", help="image file (.tif, .dm3, .dm4, .emd) or mosaic .zarr")
    p.add_argument("--out", default=None, help="output folder (default: <input stem>-detect)")
    p.add_argument("--pixel-size", type=float, default=None,
                   help="pixel size in Å (overrides the file's calibration)")
    p.add_argument("--model", default=None,
                   help="shipped model name or manifest .json path (default: the shipped model "
                   "for --material)")
    p.add_argument("--material", default=None,
                   help="specimen material, e.g. MoS2 (default: the mosaic's, else WSe2)")
    p.add_argument("--no-tta", action="store_true", help="skip 8x test-time augmentation")
    p.add_argument("--resample", action="store_true",
                   help="resample when the pixel size differs from the model's by > 10 %%")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<i>")
    p.add_argument("--amp", action="store_true", help="float16 autocast on CUDA")
    p.add_argument("--frame", type=int, default=None, help="frame index of a stack")
    p.add_argument("--overlay", action="store_true", help="also write overlay.png")
    p.add_argument("--no-progress", action="store_true",
                   help="hide the progress bar (shown on stderr when it is a terminal)")
    add_storage_option(p, "a mosaic .zarr on object storage")
    p.set_defaults(func=_run_detect)


def _progress(args: argparse.Namespace) -> "Progress":
    """A rich progress display on stderr; drawn only on a terminal and without --no-progress."""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    console = Console(stderr=True)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                    disable=getattr(args, "no_progress", False) or not console.is_terminal)


def _resamples(pixel_size: float, model: Any, resample: bool) -> bool:
    """Whether :func:`stemscale.detect.detect` will resample this image for this model."""
    if not resample:
        return False
    from ..detect.inference import check_pixel_size
    from ..detect.weights import model_ref

    try:
        model_ps = model_ref(model).manifest.pixel_size_angstrom
        return check_pixel_size(pixel_size, model_ps, resample=True) != 1.0
    except InputError:  # detect itself reports it
        return False


def _window_callback(bar: "Progress", task: Any, label: str = "windows"
                     ) -> Callable[[int, int], None]:
    """``progress(done, total)`` of :func:`stemscale.detect.detect` drawn as ``task``."""
    def advance(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total,
                   description=label if done < total else f"{label} (finding columns)")
    return advance


def _load_image(args: argparse.Namespace):
    import numpy as np

    path = args.input
    if path.rstrip("/").endswith(".zarr"):
        from ..io import open_mosaic

        mosaic = open_mosaic(path, storage_options=storage_options(args.storage_option) or None)
        if mosaic.size > 64 * 2**20:
            raise InputError(f"mosaic {path} has {mosaic.size / 1e6:.0f} Mpx; `stemscale detect` "
                             "loads one image into memory, use the Dask pipeline for mosaics")
        ps = args.pixel_size or float(mosaic.attrs["pixel_size_angstrom"])
        if args.material is None and mosaic.attrs.get("material"):
            args.material = str(mosaic.attrs["material"])
        return np.asarray(mosaic.values, dtype=np.float32), ps
    from ..io import read_frame
    from ..io.frames import FrameStackError

    try:
        frame = read_frame(path, pixel_size=args.pixel_size, frame=args.frame, lazy=False)
    except FrameStackError as exc:  # its advice names ingest's --sum, which detect lacks
        raise InputError(
            f"{exc.what}; pick one frame with --frame N (0..{exc.n_frames - 1}), or add them "
            f"into a mosaic first with `stemscale ingest {path} OUT.zarr --sum` and detect "
            "on OUT.zarr"
        ) from None
    return np.asarray(frame.data, dtype=np.float32), frame.pixel_size_angstrom


def _run_detect(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..classes import DEFECT_CLASSES
    from ..detect import detect
    from ..detect.plot import save_overlay

    from ..detect.checks import check_sampling
    from ..detect.weights import model_for_material, model_ref
    from ..redact import redact_text

    image, ps = _load_image(args)
    model = args.model or model_for_material(args.material)
    check_sampling(ps, material=args.material, model_material=model_ref(model).manifest.material,
                   where=f"'{args.input}'")
    with _progress(args) as bar:
        task = bar.add_task("resampling" if _resamples(ps, model, args.resample)
                            else "loading model", total=None)
        found = detect(image, ps, model=model, tta=not args.no_tta, device=args.device,
                       resample=args.resample, amp=args.amp,
                       progress=_window_callback(bar, task))
        bar.update(task, description="windows")
    out = Path(args.out or (Path(args.input.rstrip("/")).stem + "-detect"))
    out.mkdir(parents=True, exist_ok=True)
    found.defects.to_csv(out / "defects.csv", index=False)
    found.columns.to_csv(out / "columns.csv", index=False)
    summary = {"input": redact_text(args.input), "pixel_size_angstrom": ps, "shape": list(image.shape),
               "model": found.model, "tta": not args.no_tta, "resampled_zoom": found.zoom,
               "defects": {c: int((found.defects["class"] == c).sum()) for c in DEFECT_CLASSES},
               "columns": int(len(found.columns))}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.overlay:
        save_overlay(image, found.defects, out / "overlay.png", title=Path(args.input).name)
    table = Table(title=f"defects in {summary['input']}")
    table.add_column("class")
    table.add_column("count", justify="right")
    for c, n in summary["defects"].items():
        table.add_row(c, str(n))
    table.add_row("atom columns", str(summary["columns"]))
    Console().print(table)
    print(f"wrote {out}")
    return 0


# -------------------------------------------------------------------------- evaluate
def _register_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score a detection model on held-out simulated frames",
        description="Simulate held-out frames (seeds, microscopes and distortions never used in "
        "training), detect, and report per-class precision, recall and F1 (one-to-one matching "
        "within --radius px), a confusion matrix, missed/spurious columns, and optionally F1 "
        "against dose.",
    )
    p.add_argument("--model", default=None, help="shipped model name or manifest .json path")
    p.add_argument("--frames", type=int, default=20, help="number of frames (default 20)")
    p.add_argument("--size", type=int, default=1024, help="frame edge in px (default 1024)")
    p.add_argument("--dose", type=float, default=7300.0, help="dose in e-/Å² (default 7300)")
    p.add_argument("--doses", default=None,
                   help="comma-separated doses for an F1-vs-dose curve, e.g. 500,2000,7300,30000")
    p.add_argument("--curve-frames", type=int, default=4, help="frames per dose of the curve")
    p.add_argument("--material", default=None, help="material of the frames (default: the model's)")
    p.add_argument("--no-tta", action="store_true", help="skip 8x test-time augmentation")
    p.add_argument("--radius", type=float, default=7.5, help="match radius in px (default 7.5)")
    p.add_argument("--border", type=float, default=8.0,
                   help="ignore objects closer than this to the edge, px (default 8)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<i>")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--no-progress", action="store_true",
                   help="hide the progress bars (shown on stderr when it is a terminal)")
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..detect import get_model
    from ..detect.evaluate import dose_curve, eval_data_section, evaluate_frames, simulate_eval_frame

    if args.frames < 1 or args.size < 32:
        raise InputError("--frames must be >= 1 and --size >= 32")
    loaded = get_model(args.model, device=args.device)
    data = eval_data_section(material=args.material or loaded.manifest.material,
                             pixel_size_angstrom=loaded.pixel_size_angstrom)
    with _progress(args) as bar:
        done = bar.add_task("frames", total=args.frames)
        windows = bar.add_task("simulating", total=None)

        def frames() -> Iterator[Any]:
            for i in range(args.frames):
                bar.update(windows, description="simulating", completed=0, total=None)
                yield simulate_eval_frame(i, shape=(args.size, args.size), dose=args.dose,
                                          data=data)

        res = evaluate_frames(loaded, frames(), tta=not args.no_tta, radius=args.radius,
                              border=args.border,
                              progress=lambda n: bar.update(done, completed=n),
                              window_progress=_window_callback(bar, windows))
        bar.update(windows, description="windows")
    console = Console()
    t = Table(title=f"{args.frames} held-out frames of {args.size}², {args.dose:g} e-/Å²")
    for col in ("class", "n_true", "tp", "fp", "fn", "precision", "recall", "f1"):
        t.add_column(col, justify="right")
    s = res["scores"]
    for c in s.index:
        r = s.loc[c]
        t.add_row(c, *(str(int(r[k])) for k in ("n_true", "tp", "fp", "fn")),
                  *(f"{r[k]:.3f}" for k in ("precision", "recall", "f1")))
    console.print(t)
    console.print(res["confusion"].to_string())
    console.print(f"columns: {res['columns']}")
    out = {"model": loaded.manifest.name, "frames": args.frames, "size": args.size,
           "dose_e_per_A2": args.dose, "tta": not args.no_tta, "radius_px": args.radius,
           "border_px": args.border, "scores": s.reset_index().to_dict(orient="records"),
           "confusion": res["confusion"].to_dict(), "columns": res["columns"],
           "megapixels_per_second": res["megapixels"] / res["seconds"]}
    if args.doses:
        doses = [float(v) for v in args.doses.split(",") if v.strip()]
        with _progress(args) as bar:
            done = bar.add_task("dose curve: frames", total=len(doses) * args.curve_frames)
            windows = bar.add_task("windows", total=None)
            curve = dose_curve(loaded, doses, n_frames=args.curve_frames,
                               shape=(args.size, args.size), tta=not args.no_tta, data=data,
                               radius=args.radius, border=args.border,
                               progress=lambda n: bar.update(done, completed=n),
                               window_progress=_window_callback(bar, windows))
            bar.update(windows, description="windows")
        console.print(curve.round(3).to_string(index=False))
        out["dose_curve"] = curve.to_dict(orient="records")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2, default=float) + "\n")
        print(f"wrote {args.out}")
    return 0
