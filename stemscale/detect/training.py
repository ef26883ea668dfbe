"""Training loop for the detection ResUNet on simulated frames.

Frames are simulated on the fly into a small rolling pool; every step draws a
batch of augmented patches from it.  The loss is a class-weighted
cross-entropy (weights ~ frequency^-power, estimated from the first frames,
so the rare defect classes count) plus a soft Dice term over the
non-background classes.  Adam with warm-up and cosine decay.  Validation on
frames from a separate seed stream reports the loss and per-class detection
F1 (components matched within 7.5 px).  Progress goes to a bar on a terminal
or to log lines otherwise, metrics to ``metrics.csv``; a checkpoint written
every few steps lets an interrupted run resume where it stopped.
"""

from __future__ import annotations

import csv
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..classes import DEFECT_CLASSES
from ..errors import InputError
from .config import TrainConfig
from .data import FrameSource, SimulatedFrames, make_patch, seed_for
from .metrics import match_points, prf
from .model import OUTPUT_CLASSES, ModelConfig, ResUNet, count_parameters
from .postprocess import find_defects
from .weights import ModelRef, write_model

__all__ = ["TrainResult", "train", "class_weights", "detection_loss", "true_defects"]


@dataclass
class TrainResult:
    """What a training run produced."""

    model_ref: ModelRef | None
    steps: int
    history: list[dict[str, Any]] = field(default_factory=list)
    val: dict[str, Any] = field(default_factory=dict)
    network: ResUNet | None = None


def class_weights(counts: np.ndarray, power: float = 0.5, max_weight: float = 30.0) -> np.ndarray:
    """Per-class loss weights ~ frequency**-power, scaled to an average pixel weight of 1."""
    f = np.asarray(counts, dtype=np.float64)
    f = (f + 1.0) / (f.sum() + len(f))
    w = f ** (-power)
    w = w / np.sum(w * f)
    return np.minimum(w, max_weight * w.min())


def detection_loss(
    logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, dice_weight: float = 1.0,
) -> torch.Tensor:
    """Weighted cross-entropy + ``dice_weight`` x (1 - soft Dice) over non-background classes present."""
    ce = F.cross_entropy(logits.float(), target, weight=weights)
    if dice_weight <= 0:
        return ce
    p = torch.softmax(logits.float(), dim=1)
    onehot = F.one_hot(target, p.shape[1]).permute(0, 3, 1, 2).to(p.dtype)
    dims = (0, 2, 3)
    inter = (p * onehot).sum(dims)
    denom = p.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + 1.0) / (denom + 1.0)
    present = onehot.sum(dims) > 0
    present[0] = False
    if not bool(present.any()):
        return ce
    return ce + dice_weight * (1 - dice[present]).mean()


def true_defects(class_map: np.ndarray, classes=OUTPUT_CLASSES) -> list[tuple[str, float, float]]:
    """Centroids ``(class, x, y)`` of the defect regions of a class map."""
    from scipy import ndimage

    out = []
    for c in DEFECT_CLASSES:
        if c not in classes:
            continue
        lab, n = ndimage.label(class_map == classes.index(c))
        if n:
            for y, x in ndimage.center_of_mass(np.ones_like(lab), lab, np.arange(1, n + 1)):
                out.append((c, x, y))
    return out


def _lr_factor(step: int, cfg: TrainConfig, elapsed_s: float = 0.0) -> float:
    """Warm-up, then cosine decay over the steps or the time budget, whichever runs out first."""
    o = cfg.optim
    if step < o.warmup_steps:
        return (step + 1) / o.warmup_steps
    t = min(1.0, (step - o.warmup_steps) / max(1, o.steps - o.warmup_steps))
    if cfg.run.max_minutes:
        t = max(t, min(1.0, elapsed_s / (60 * cfg.run.max_minutes)))
    return o.min_lr_fraction + (1 - o.min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * t))


class _Log:
    """A rich progress bar on a terminal, plain flushed lines otherwise."""

    def __init__(self, total: int, start: int, enabled: bool) -> None:
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.progress = None
        if self.tty:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self.progress = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TimeRemainingColumn(),
                                     TextColumn("{task.fields[info]}"))
            self.progress.start()
            self.task = self.progress.add_task("train", total=total, completed=start, info="")

    def update(self, step: int, info: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step, info=info)

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        if self.progress is not None:
            self.progress.console.print(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _validate(net: ResUNet, val: list[tuple[np.ndarray, np.ndarray]], weights: torch.Tensor,
              cfg: TrainConfig, device: torch.device) -> dict[str, Any]:
    net.eval()
    losses, counts = [], {c: [0, 0, 0] for c in DEFECT_CLASSES}
    with torch.inference_mode():
        for i in range(0, len(val), cfg.optim.batch_size):
            xs = np.stack([v[0] for v in val[i : i + cfg.optim.batch_size]])[:, None]
            ys = np.stack([v[1] for v in val[i : i + cfg.optim.batch_size]])
            x = torch.from_numpy(xs).to(device)
            y = torch.from_numpy(ys).to(device)
            logits = net(x)
            losses.append(float(detection_loss(logits, y, weights, cfg.optim.dice_weight)) * len(xs))
            proba = torch.softmax(logits.float(), 1).cpu().numpy()
            for p, t in zip(proba, ys):
                pred = find_defects(p, OUTPUT_CLASSES)
                truth = true_defects(t)
                for c in DEFECT_CLASSES:
                    P = pred.loc[pred["class"] == c, ["x_px", "y_px"]].to_numpy()
                    T = np.array([(x, y) for k, x, y in truth if k == c]).reshape(-1, 2)
                    m = len(match_points(P, T, 7.5))
                    counts[c][0] += m
                    counts[c][1] += len(P) - m
                    counts[c][2] += len(T) - m
    net.train()
    out: dict[str, Any] = {"val_loss": sum(losses) / len(val)}
    for c, (tp, fp, fn) in counts.items():
        out[f"val_f1_{c}"] = prf(tp, fp, fn)["f1"]
        out[f"val_n_{c}"] = tp + fn
    return out


def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    source: FrameSource | None = None,
    val_source: FrameSource | None = None,
    resume: bool = True,
    progress: bool = True,
    export: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train (or resume training) a detection ResUNet.

    Parameters
    ----------
    cfg
        The configuration (see ``pipelines/train_fcn.yaml``).
    out_dir
        Receives ``checkpoint.pt``, ``metrics.csv`` and, at the end, the
        exported ``<name>.pt`` + ``<name>.json``.
    source, val_source
        Frame sources ``seed -> (image, class_map)``; default: the simulator.
    resume
        Continue from ``out_dir/checkpoint.pt`` when present.
    progress
        Show a progress bar / log lines.
    export
        Write the weights and manifest when done.
    on_step
        Called with ``(step, loss)`` after every step (tests, dashboards).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    d, o, r = cfg.data, cfg.optim, cfg.run
    if r.threads:
        torch.set_num_threads(int(r.threads))
    device = torch.device(r.device)
    source = source or SimulatedFrames(d)
    val_source = val_source or source

    torch.manual_seed(d.train_seed)
    net = ResUNet(ModelConfig(base_filters=cfg.model.base_filters, depth=cfg.model.depth,
                              dropout=cfg.model.dropout)).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=o.lr, weight_decay=o.weight_decay)
    use_amp = r.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    step, frame_index, elapsed0 = 0, 0, 0.0
    weights_np: np.ndarray | None = None
    ckpt_path = out / "checkpoint.pt"
    history: list[dict[str, Any]] = []
    if cfg.model.init_from and not (resume and ckpt_path.exists()):
        from .weights import get_model

        init = get_model(cfg.model.init_from, device="cpu")
        a, b = init.manifest.config, net.config
        if (a.base_filters, a.depth, a.classes) != (b.base_filters, b.depth, b.classes):
            raise InputError(f"model.init_from {cfg.model.init_from!r} has shape "
                             f"{init.manifest.model}, the config asks for {net.config.to_dict()}")
        net.load_state_dict(init.network.state_dict())
        init_sha = init.manifest.sha256
    else:
        init_sha = None
    if resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device, weights_only=True)
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optim"])
        step, frame_index, elapsed0 = int(ck["step"]), int(ck["frame_index"]), float(ck["elapsed"])
        weights_np = np.asarray(ck["class_weights"], dtype=np.float64)
        history = list(ck.get("history", []))
    rng = np.random.default_rng([d.train_seed, step])

    def new_frame() -> tuple[np.ndarray, np.ndarray]:
        nonlocal frame_index
        fr = source(seed_for(d.train_seed, frame_index))
        frame_index += 1
        return fr

    def patch(fr: tuple[np.ndarray, np.ndarray], r_: np.random.Generator, train_aug: bool = True):
        return make_patch(fr[0], fr[1], r_, patch_size=d.patch_size,
                          dihedral=d.dihedral and train_aug,
                          resample_factors=d.resample_factors if train_aug else (1.0,),
                          resample_probs=d.resample_probs if train_aug else None,
                          standardise_jitter=d.standardise_jitter if train_aug else 0.0)

    t0 = time.perf_counter()
    pool = [new_frame() for _ in range(max(1, min(d.frame_pool, 2)))]
    if weights_np is None:
        counts = np.sum([np.bincount(fr[1].ravel(), minlength=len(OUTPUT_CLASSES)) for fr in pool],
                        axis=0)
        weights_np = class_weights(counts, o.class_weight_power, o.class_weight_max)
    weights = torch.tensor(weights_np, dtype=torch.float32, device=device)
    vrng = np.random.default_rng([d.val_seed, 0])
    val = [patch(fr, vrng, train_aug=False)
           for fr in (val_source(seed_for(d.val_seed, i)) for i in range(d.val_frames))
           for _ in range(d.patches_per_frame)]

    log = _Log(o.steps, step, progress)
    log.line(f"training {cfg.name}: ResUNet base {cfg.model.base_filters} depth "
             f"{cfg.model.depth}, {count_parameters(net):,} parameters, class weights "
             + ", ".join(f"{c}={w:.2f}" for c, w in zip(OUTPUT_CLASSES, weights_np)))
    csv_path = out / "metrics.csv"
    val_metrics: dict[str, Any] = {}
    fields = ["step", "elapsed_s", "lr", "train_loss", "frames", "val_loss",
              *[f"val_f1_{c}" for c in DEFECT_CLASSES]]
    new_csv = not csv_path.exists() or step == 0
    fh = open(csv_path, "w" if new_csv else "a", newline="")
    writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
    if new_csv:
        writer.writeheader()

    def save_checkpoint() -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"model": net.state_dict(), "optim": opt.state_dict(), "step": step,
                    "frame_index": frame_index, "class_weights": weights_np.tolist(),
                    "elapsed": elapsed0 + time.perf_counter() - t0, "history": history,
                    "config": cfg.to_dict()}, tmp)
        tmp.replace(ckpt_path)

    net.train()
    pending, running = 0.0, []
    stopped_early = False
    try:
        while step < o.steps:
            if r.max_minutes is not None and (elapsed0 + time.perf_counter() - t0) > 60 * r.max_minutes:
                stopped_early = True
                log.line(f"time budget of {r.max_minutes} min reached at step {step}")
                break
            pending += d.new_frames_per_step
            while pending >= 1:
                pool.append(new_frame())
                pending -= 1
            del pool[: max(0, len(pool) - d.frame_pool)]
            batch = [patch(pool[int(rng.integers(len(pool)))], rng) for _ in range(o.batch_size)]
            x = torch.from_numpy(np.stack([b[0] for b in batch])[:, None]).to(device)
            y = torch.from_numpy(np.stack([b[1] for b in batch])).to(device)
            for g in opt.param_groups:
                g["lr"] = o.lr * _lr_factor(step, cfg, elapsed0 + time.perf_counter() - t0)
            with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=use_amp):
                logits = net(x)
            loss = detection_loss(logits, y, weights, o.dice_weight)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            step += 1
            lv = float(loss.detach())
            running.append(lv)
            if on_step:
                on_step(step, lv)
            row: dict[str, Any] = {}
            if step % r.val_every == 0 or step == o.steps:
                val_metrics = _validate(net, val, weights, cfg, device)
                row.update(val_metrics)
                log.line(f"step {step}: val loss {val_metrics['val_loss']:.4f}, F1 "
                         + ", ".join(f"{c} {val_metrics[f'val_f1_{c}']:.3f}" for c in DEFECT_CLASSES))
            if step % r.log_every == 0 or row:
                elapsed = elapsed0 + time.perf_counter() - t0
                row.update(step=step, elapsed_s=round(elapsed, 1),
                           lr=opt.param_groups[0]["lr"], train_loss=float(np.mean(running)),
                           frames=frame_index)
                writer.writerow(row)
                fh.flush()
                history.append({k: v for k, v in row.items() if v == v})
                running = []
                if not log.tty:
                    log.line(f"step {step}/{o.steps} loss {row['train_loss']:.4f} "
                             f"lr {row['lr']:.2e} frames {frame_index} {elapsed / 60:.1f} min")
            log.update(step, f"loss {lv:.3f}")
            if step % r.checkpoint_every == 0:
                save_checkpoint()
    finally:
        fh.close()
        log.close()
    save_checkpoint()
    if not val_metrics or stopped_early:
        val_metrics = _validate(net, val, weights, cfg, device)
    ref = None
    if export:
        wall = elapsed0 + time.perf_counter() - t0
        training = {
            "config": cfg.to_dict(),
            "steps_done": step,
            "patches_seen": step * o.batch_size,
            "frames_simulated": frame_index,
            "wall_minutes": round(wall / 60, 1),
            "stopped_by_time_budget": stopped_early,
            "parameters": count_parameters(net),
            "device": str(device),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "class_weights": dict(zip(OUTPUT_CLASSES, map(float, weights_np))),
            "loss": "class-weighted cross-entropy + soft Dice",
        }
        if cfg.model.init_from:
            training["init_from_sha256"] = init_sha or "(resumed from checkpoint)"
        net.eval()
        ref = write_model(net, out, cfg.name, pixel_size_angstrom=d.pixel_size_angstrom,
                          material=d.material, training=training,
                          metrics={"validation": val_metrics})
    return TrainResult(model_ref=ref, steps=step, history=history, val=val_metrics, network=net)
