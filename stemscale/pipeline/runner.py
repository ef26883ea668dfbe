"""Run a validated pipeline: cluster, stages, versioned run folder, report.

:func:`run_pipeline` opens the cluster the configuration names (or the one
passed in), runs the stages of the pipeline's kind in order, records each
stage's outcome in ``run.json`` and finishes with ``summary.json``, figures
and the report.  A stage with nothing to work on (no defects to average) is
skipped with a note.  A stage that fails (a missing module included) is
marked ``failed`` with its reason in one line; the stages that need its
results are marked ``not run``, the others still run, the report of what did
run is written, and then :class:`~.adapters.StageFailed` is raised (the run is
``failed`` in ``run.json``).

Stage results are kept by their own inputs (:data:`STAGE_INPUTS`, see
:class:`~.runfolder.RunFolder`): rerunning a folder with a changed averaging
option resumes ``find`` (no block is redone) and reruns averaging and strain.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import StemscaleError
from .adapters import StageFailed, StageUnavailable, missing_dependency
from .config import ClusterSection, PipelineConfig, TrainPipeline
from .runfolder import RunFolder, StagePlan
from .stages import (
    Context,
    stage_average,
    stage_find,
    stage_input,
    stage_score,
    stage_simulate,
    stage_spacing,
    stage_strain,
)

__all__ = ["RunOutcome", "STAGES", "STAGE_INPUTS", "open_cluster", "default_output", "run_pipeline"]

log = logging.getLogger(__name__)


def _stage_figures(ctx: Context) -> dict[str, Any]:
    from ..io import open_mosaic
    from . import figures

    out = ctx.path / "figures"
    out.mkdir(exist_ok=True)
    assert ctx.mosaic_url is not None  # set by the input / simulate stage
    mosaic = open_mosaic(ctx.mosaic_url, storage_options=ctx.storage_options)
    made = [figures.overview_figure(mosaic, ctx.defects, out)]
    made_by = ctx.outputs
    if made_by.spacing is not None:
        assert ctx.pixel_size is not None and ctx.shape is not None
        made.append(figures.sites_figure(mosaic, made_by.spacing.columns, out))
        made.append(figures.spacing_figure(made_by.spacing, ctx.pixel_size, ctx.shape, out))
    else:
        made.append(figures.zoom_figure(mosaic, ctx.atoms, ctx.defects, out))
    if made_by.averages is not None:
        made.append(figures.class_average_figure(made_by.averages, out))
    if made_by.strain:
        made.append(figures.profile_figure(made_by.strain, out, made_by.injected or None))
    errors = made_by.position_errors
    if errors is not None and len(errors):
        made.append(figures.position_error_figure(errors, out))
    ctx.figures.extend(made)
    return {"files": [p.relative_to(ctx.path).as_posix() for p in made]}


#: Kind -> ordered (stage name, function, section that can disable it).
STAGES: dict[str, list[tuple[str, Callable[[Context], dict[str, Any]], str | None]]] = {
    "demo": [("simulate", stage_simulate, None), ("find", stage_find, None),
             ("score", stage_score, None), ("average", stage_average, "average"),
             ("strain", stage_strain, "strain"), ("figures", _stage_figures, None)],
    "defect_strain": [("input", stage_input, None), ("find", stage_find, None),
                      ("average", stage_average, "average"), ("strain", stage_strain, "strain"),
                      ("figures", _stage_figures, None)],
    "real_frame": [("input", stage_input, None), ("find", stage_find, None),
                   ("spacing", stage_spacing, "spacing"), ("figures", _stage_figures, None)],
}

_FIND = ("detect", "fit", "blocks")  # the sections the block tables are made of
#: Kind -> stage -> (configuration sections it reads, earlier stages whose results it uses).
#: A stage's results are kept while these are unchanged; a change reruns that stage and the
#: ones that use it (figures always run again).
STAGE_INPUTS: dict[str, StagePlan] = {
    "demo": {"simulate": (("simulate",), ()), "find": (_FIND, ("simulate",)),
             "score": (("score",), ("find",)), "average": (("average",), ("find",)),
             "strain": (("strain",), ("average",)), "figures": ((), ("find",))},
    "defect_strain": {"input": (("input",), ()), "find": (_FIND, ("input",)),
                      "average": (("average",), ("find",)), "strain": (("strain",), ("average",)),
                      "figures": ((), ("find",))},
    "real_frame": {"input": (("input",), ()), "find": (_FIND, ("input",)),
                   "spacing": (("spacing",), ("find",)), "figures": ((), ("find",))},
}
#: Stages whose results are expensive (the mosaic, the block tables): a change of their inputs
#: is refused unless --overwrite (which recomputes them in place).
KEEP = ("simulate", "input", "find")


def _needs(plan: StagePlan, name: str) -> list[str]:
    """Every earlier stage whose results ``name`` uses, directly or through another."""
    out: list[str] = []
    todo = list(plan.get(name, ((), ()))[1])
    while todo:
        stage = todo.pop(0)
        if stage not in out:
            out.append(stage)
            todo += list(plan.get(stage, ((), ()))[1])
    return out


def _reason(exc: BaseException) -> str:
    """One line saying why a stage failed (stemscale's own message, else the error's type and
    first line)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    first = lines[0] if lines else ""
    if isinstance(exc, StemscaleError):
        return first or type(exc).__name__
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


@dataclass
class RunOutcome:
    """What :func:`run_pipeline` returns."""

    folder: Path
    status: str
    summary: dict[str, Any]
    report: Path | None
    notes: list[str]
    seconds: float


def default_output(name: str) -> Path:
    """``./stemscale-output/<name>-<date-time>``."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("stemscale-output") / f"{name}-{stamp}"


@contextlib.contextmanager
def open_cluster(section: ClusterSection) -> Iterator[tuple[Any, dict[str, Any]]]:
    """A ``distributed.Client`` for the cluster a configuration names, and a description of it.

    ``local``, ``cuda``, ``slurm`` and ``kubernetes`` start a cluster (closed
    afterwards); a ``tcp://`` address or a scheduler ``.json`` file connects to
    a running scheduler (left running).
    """
    from distributed import Client

    from ..parallel import connect, make_cluster

    kind = section.kind
    cluster = None
    extra = dict(section.options)
    wait = float(extra.pop("wait_seconds", 600))  # for workers of batch / cloud clusters
    if kind == "local":
        options = {"threads_per_worker": section.threads_per_worker, **extra}
        if section.workers:
            options["n_workers"] = section.workers
        if section.memory_limit:
            options["memory_limit"] = section.memory_limit
        cluster = make_cluster("local", **options)
    elif kind == "cuda":
        cluster = make_cluster("cuda", **extra)
    elif kind == "slurm":
        cluster = make_cluster("slurm", **_jobqueue_options(extra))
        cluster.scale(jobs=section.jobs)
    elif kind == "kubernetes":
        cluster = make_cluster("kubernetes", **{"n_workers": section.jobs, **extra})
    if cluster is not None:
        client = Client(cluster)
    else:
        client = connect(kind)
    try:
        if kind in ("slurm", "kubernetes") or cluster is None:
            client.wait_for_workers(1, timeout=wait)
        info = {"kind": kind, "scheduler": client.scheduler.address,
                "dashboard": client.dashboard_link,
                "workers": len(client.scheduler_info().get("workers", {}))}
        yield client, info
    finally:
        # Workers busy in native code can take a moment to stop; that is not a problem.
        logging.getLogger("distributed.nanny").setLevel(logging.ERROR)
        client.close()
        if cluster is not None:
            cluster.close()


def _jobqueue_options(options: dict[str, Any]) -> dict[str, Any]:
    """Job sizes from the dask-jobqueue configuration (``jobqueue.yaml``), then ``options``.

    ``make_cluster("slurm")`` passes small defaults for cores, memory, processes and
    walltime explicitly, which would hide the values of a ``jobqueue.yaml``; reading them
    here keeps the file in charge unless the pipeline sets them.
    """
    import dask

    name = options.get("config_name", "slurm")
    conf = dask.config.get(f"jobqueue.{name}", default=None) or {}
    out = {k: conf[k] for k in ("cores", "memory", "processes", "walltime") if conf.get(k) is not None}
    return {**out, **options}


def _with_cluster(config: PipelineConfig, cluster: str | None) -> PipelineConfig:
    """Apply ``--cluster``; on a CUDA cluster the detector runs on the GPU."""
    if cluster is None:
        return config
    settings: dict[str, Any] = {"cluster.kind": cluster}
    recorded = [f"cluster.kind={cluster}"]
    if cluster == "cuda" and config.detect.device == "cpu":
        settings["detect.device"] = "cuda"
        recorded.append("detect.device=cuda (implied by --cluster cuda)")
    return config.with_settings(settings, recorded=recorded)


def run_pipeline(config: PipelineConfig | TrainPipeline, *, cluster: str | None = None,
                 out: str | Path | None = None, overwrite: bool | None = None,
                 progress: bool = True, console: Any = None) -> RunOutcome:
    """Run a pipeline into a versioned run folder.

    Parameters
    ----------
    config
        From :func:`~stemscale.pipeline.load_pipeline`.
    cluster
        Overrides ``cluster.kind`` (``local``, ``cuda``, ``slurm``,
        ``kubernetes``, ``tcp://host:port``, ``scheduler.json``).
    out
        Run folder (overrides ``output.dir``; default
        ``./stemscale-output/<name>-<date-time>``).  Running into an existing
        folder resumes it: stages whose inputs (:data:`STAGE_INPUTS`) are
        unchanged keep their results, the others run again.
    overwrite
        Recompute in place the mosaic or the block tables when their inputs
        changed (refused otherwise); a changed data source empties the folder.
    progress
        Progress bars.
    console
        A ``rich.console.Console`` for messages (default: a new one).

    Returns
    -------
    RunOutcome

    Raises
    ------
    StageFailed
        A stage failed: ``run.json`` says so, and the report (or ``summary.json``)
        of the stages that did run is written first.
    """
    from rich.console import Console

    console = console or Console()
    t0 = time.perf_counter()
    folder = Path(out) if out is not None else (
        Path(config.output.dir) if config.output.dir else default_output(config.name))
    overwrite = config.output.overwrite if overwrite is None else overwrite
    if isinstance(config, TrainPipeline):
        if cluster is not None:
            console.print(f"[yellow]note[/yellow]: training runs in this process; --cluster "
                          f"{cluster} is not used (set run.device for a GPU)")
        return _run_training(config, folder, overwrite, progress, console, t0)
    config = _with_cluster(config, cluster)
    plan = STAGE_INPUTS[config.kind]
    run = RunFolder(folder, config.to_dict(), source=config.source, overrides=config.overrides,
                    overwrite=overwrite, stages=plan, keep=KEEP)
    console.print(f"[bold]stemscale run[/bold] {config.kind} '{config.name}' -> {run.path}"
                  + (" (resuming)" if run.resumed else ""))
    if run.changes:
        console.print("changed since the last attempt: " + "; ".join(run.changes)
                      + f" (rerun: {', '.join(s for s in plan if s in run.rerun)})")
    ctx = Context(config=config, run=run, console=console, progress=progress)
    report = None
    failed: dict[str, str] = {}  # stage -> why, in one line
    first_error: Exception | None = None
    try:
        with open_cluster(config.cluster) as (client, info):
            run.set_cluster(info)
            console.print(f"cluster: {info['kind']}, {info['workers']} workers; "
                          f"dashboard {info['dashboard']}")
            for name, fn, section in STAGES[config.kind]:
                missing = [s for s in _needs(plan, name) if s in failed
                           or run.record["stages"].get(s, {}).get("status") == "not run"]
                if missing:
                    run.stage(name, "not run", note=f"needs the results of the {missing[0]} stage")
                    continue
                try:
                    _run_stage(ctx, name, fn, section)
                except Exception as exc:  # recorded; the report of what did run is still written
                    failed[name] = _reason(exc)
                    ctx.note(f"the {name} stage failed: {failed[name]}")
                    first_error = first_error or exc
        if config.report.enabled:
            from .report import write_report

            run.stage("report", "done")
            report = write_report(run.path, run.record, ctx.summary, ctx.notes, ctx.figures,
                                  fmt=config.report.format, extra_notes=config.report.notes)
        else:
            import json

            from ..redact import redact

            (run.path / "summary.json").write_text(
                json.dumps(redact(ctx.summary), indent=2, default=str) + "\n")
    except BaseException as exc:
        run.finish("failed", error=f"{type(exc).__name__}: {exc}", summary=ctx.summary)
        raise
    if failed:
        stage, why = next(iter(failed.items()))
        run.finish("failed", error=f"stage '{stage}' failed: {why}", summary=ctx.summary)
        written = report or (run.path / "summary.json")
        raise StageFailed(f"stage '{stage}' failed: {why} (the report of what did run: {written})",
                          stage=stage, reason=why, folder=run.path, report=report) from first_error
    run.finish("complete", summary=ctx.summary)
    return RunOutcome(run.path, "complete", ctx.summary, report, ctx.notes, time.perf_counter() - t0)


def _run_stage(ctx: Context, name: str, fn: Callable[[Context], dict[str, Any]],
               section: str | None) -> None:
    if name == "figures" and not ctx.config.report.figures:
        ctx.run.stage(name, "skipped", note="report.figures is false")
        return
    if section is not None and not getattr(getattr(ctx.config, section), "enabled", True):
        ctx.run.stage(name, "skipped", note=f"{section}.enabled is false")
        return
    ctx.console.print(f"[bold]{name}[/bold]")
    t0 = time.perf_counter()
    try:
        result = fn(ctx) or {}
    except StageUnavailable as exc:  # nothing to work on; never a missing module
        ctx.note(f"{name} skipped: {exc}")
        ctx.run.stage(name, "skipped", note=str(exc))
        return
    except BaseException as exc:
        error = missing_dependency(exc, name) if isinstance(exc, ModuleNotFoundError) else exc
        ctx.run.stage(name, "failed", error=f"{type(error).__name__}: {error}", note=_reason(error),
                      seconds=round(time.perf_counter() - t0, 2))
        if error is not exc:
            raise error from exc
        raise
    ctx.summary[name] = result
    # results kept from an earlier attempt (a complete mosaic, every block of find)
    reused = bool(result.get("reused")) or bool(result.get("blocks")
                                                and result.get("blocks_resumed") == result["blocks"])
    ctx.run.stage(name, "done", seconds=round(time.perf_counter() - t0, 2),
                  **({"reused": True} if reused else {}))


def _run_training(config: TrainPipeline, folder: Path, overwrite: bool, progress: bool,
                  console: Any, t0: float) -> RunOutcome:
    """``train_fcn``: the detection package's training loop, in this process."""
    from ..detect import train

    run = RunFolder(folder, config.to_dict(), source=config.source, overrides=config.overrides,
                    overwrite=overwrite)
    run.set_cluster({"kind": "none", "note": "training runs in this process "
                     f"on {config.train.run.device}", "workers": 0})
    console.print(f"[bold]stemscale run[/bold] train_fcn '{config.train.name}' -> {run.path}"
                  + (" (resuming from its checkpoint)" if run.resumed else ""))
    start = time.perf_counter()
    try:
        result = train(config.train, run.path, resume=True, progress=progress)
    except BaseException as exc:
        run.stage("train", "failed", error=f"{type(exc).__name__}: {exc}")
        run.finish("failed", error=f"{type(exc).__name__}: {exc}")
        raise
    ref = getattr(result, "model_ref", None)
    summary = {"train": {"steps": getattr(result, "steps", None),
                         "model_manifest": getattr(ref, "manifest_path", None) if ref else None}}
    run.stage("train", "done", seconds=round(time.perf_counter() - start, 2))
    run.finish("complete", summary=summary)
    return RunOutcome(run.path, "complete", summary, None, [], time.perf_counter() - t0)

