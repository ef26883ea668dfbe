"""``stemscale run PIPELINE.yaml``: a whole run from one configuration file."""

from __future__ import annotations

import argparse
from typing import Any

from .storage import add_storage_option, storage_options

EPILOG = """\
examples:
  stemscale run pipelines/demo.yaml
  stemscale run pipelines/mos2_real.yaml --set detect.detector=peaks
  stemscale run pipelines/defect_strain.yaml --cluster slurm --set input.mosaic=/data/wse2.zarr
  stemscale run pipelines/defect_strain.yaml --cluster scheduler-1234.json   # inside sbatch
  stemscale run pipelines/demo.yaml --check        # validate and print the resolved configuration
  stemscale run pipelines/defect_strain.yaml --set input.mosaic=s3://bucket/wse2.zarr \
      --storage-option endpoint_url=http://minio:9000   # = input.storage_options.endpoint_url

Rerunning with the same configuration and --out resumes (finished blocks are skipped).
Every run folder holds run.json (resolved configuration, version, git commit, cluster,
times, stages), summary.json, the tables, figures/ and the report; credentials (storage
options such as key, secret or token, user:password@ in URLs) are never written there."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run a pipeline YAML (demo, defect_strain, real_frame, train_fcn) on a cluster",
        description="Validate a pipeline YAML file (a typo in a key is an error that names it) "
        "and run it on a Dask cluster into a versioned run folder.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("pipeline", help="pipeline YAML file, e.g. pipelines/demo.yaml")
    p.add_argument("--cluster", default=None,
                   help="local | cuda | slurm | kubernetes | tcp://host:port | scheduler.json "
                   "(default: the file's cluster.kind, else local)")
    p.add_argument("--out", default=None,
                   help="run folder (default: the file's output.dir, else "
                   "./stemscale-output/<name>-<date-time>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set detect.tta=false (repeatable; "
                   "values are YAML)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a run folder that holds a run of another configuration")
    p.add_argument("--check", action="store_true",
                   help="only validate and print the resolved configuration")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_storage_option(p, "the input mosaic (sets input.storage_options.KEY)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import yaml
    from rich.console import Console
    from rich.table import Table

    from ..pipeline import load_pipeline
    from ..pipeline.config import check_cluster_kind
    from ..pipeline.runner import run_pipeline
    from ..redact import redact

    console = Console()
    config = load_pipeline(args.pipeline, args.overrides)
    options = storage_options(getattr(args, "storage_option", None))  # `demo` passes none
    if options:
        config = _with_storage_options(config, options, args.pipeline)
    if args.cluster is not None:
        check_cluster_kind(args.cluster, "--cluster")
    if args.check:
        console.print(f"# {args.pipeline}: valid ({config.kind})")
        print(yaml.safe_dump(redact(config.to_dict()), sort_keys=False, allow_unicode=True),
              end="")
        return 0
    outcome = run_pipeline(config, cluster=args.cluster, out=args.out,
                           overwrite=True if args.overwrite else None,
                           progress=not args.no_progress, console=console)
    table = Table(title=f"{config.kind} '{config.name}': results")
    table.add_column("result")
    table.add_column("value", justify="right")
    for key, value in _headline(outcome.summary):
        table.add_row(key, value)
    if table.row_count:
        console.print(table)
    for note in outcome.notes:
        console.print(f"[yellow]note[/yellow]: {note}")
    console.print(f"finished in {outcome.seconds:.1f} s")
    if outcome.report is not None:
        console.print(f"report: [bold]{outcome.report}[/bold]")
    console.print(f"run folder: [bold]{outcome.folder}[/bold]")
    return 0


def _with_storage_options(config: Any, options: dict[str, Any], where: str) -> Any:
    """``--storage-option KEY=VALUE`` as ``input.storage_options.KEY`` (recorded redacted)."""
    from ..errors import InputError
    from ..pipeline.config import PipelineConfig

    if not isinstance(config, PipelineConfig) or "input" not in config.SECTIONS:
        raise InputError(
            f"--storage-option: '{where}' (kind {config.kind}) reads no input mosaic; it applies "
            "to pipelines with an input section (defect_strain, real_frame)")
    merged = {**config.input.storage_options, **options}
    return config.with_settings({"input.storage_options": merged},
                                recorded=[f"input.storage_options.{k}={v}" for k, v in options.items()])


def _headline(summary: dict) -> list[tuple[str, str]]:
    """The few numbers worth printing on the terminal (the report has them all)."""
    rows: list[tuple[str, str]] = []
    find = summary.get("find") or {}
    if find:
        rows.append(("detector", str(find.get("detector"))))
        rows.append(("atom columns", f"{find.get('atom_columns', 0):,}"))
        rows.append(("defects", f"{find.get('defects', 0):,}"))
        excluded = sum((find.get("excluded_fits") or {}).values())
        if excluded:
            rows.append(("unreliable fits (excluded)",
                         f"{excluded:,} ({100 * excluded / max(find.get('atom_columns') or 1, 1):.1f} %)"))
        if find.get("median_position_error_pm") is not None:
            rows.append(("median fit uncertainty (converged)",
                         f"{find['median_position_error_pm']:.2f} pm"))
        if find.get("megapixels_per_second"):
            rows.append(("throughput", f"{find['megapixels_per_second']:.2f} Mpx/s"))
    score = summary.get("score") or {}
    cols = score.get("columns") or {}
    if cols.get("n_true"):
        rows.append(("columns found / true", f"{cols['matched']:,} / {cols['n_true']:,}"))
    for site, p in (score.get("precision_pm") or {}).items():
        rows.append((f"precision {site} (vs truth)", f"{p['sigma_x_pm']:.2f} / {p['sigma_y_pm']:.2f} pm (x / y)"))
    for cls, s in (score.get("defects") or {}).items():
        if s.get("n_true"):
            f1 = s.get("f1")
            rows.append((f"F1 {cls}", "–" if f1 is None else f"{f1:.3f} (n = {s['n_true']})"))
    sp = summary.get("spacing") or {}
    if sp.get("bonds"):
        rows.append(("pristine M-M bonds", f"{sp['bonds']:,}"))
        rows.append(("M-M spacing", f"{sp['mean_pm']:.1f} pm, spread {sp['spread_pm']:.1f} pm"))
        for d in sp.get("directions", []):
            rows.append((f"  direction {d['direction']} ({d['angle_deg']:.0f}°)",
                         f"{d['mean_pm']:.1f} ± {d['spread_pm']:.1f} pm"))
        rows.append(("substituted chalcogen columns", f"{sp['substituted_chalcogen_columns']:,}"))
    return rows
