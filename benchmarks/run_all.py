"""Regenerate every benchmark result and the benchmark tables of README.md.

    python benchmarks/run_all.py                  # run every benchmarks/bench_*.py, then the tables
    python benchmarks/run_all.py --only fit,detect
    python benchmarks/run_all.py --tables-only    # only rewrite README from results/*.json

Each ``bench_<name>.py`` writes ``benchmarks/results/bench_<name>.json`` with
its hardware, versions, parameters, results and a ``targets`` list.  The
README's tables are rendered from those files by :func:`render_tables` and
written between the ``<!-- benchmarks:start -->`` and
``<!-- benchmarks:end -->`` markers; nothing else in the README changes.
A script that fails is reported and the others still run; the exit status
is non-zero if any failed.  ``bench_mos2_real.py`` compares with atomap (GPL,
kept out of this environment) when ``$ATOMAP_PYTHON`` names an interpreter
that has it, and records atomap as unavailable otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
README = ROOT / "README.md"
START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"

#: Benchmarks shown first, in this order (the rest follow alphabetically).
ORDER = ("fit", "detect", "scaling", "precision", "mos2_real", "simulate")
TITLES = {"fit": "Fitting", "detect": "Detection", "scaling": "Scaling", "precision": "Precision",
          "simulate": "Simulation", "mos2_real": "Real data (MoS2)", "import": "Import cost"}


def scripts(only: Iterable[str] | None = None) -> list[Path]:
    """The ``bench_*.py`` scripts to run (all, or those named in ``only``)."""
    found = {p.stem.removeprefix("bench_"): p for p in sorted(HERE.glob("bench_*.py"))}
    if only:
        unknown = sorted(set(only) - set(found))
        if unknown:
            raise SystemExit(f"unknown benchmark(s) {unknown}; available: {sorted(found)}")
        return [found[n] for n in _ordered(only)]
    return [found[n] for n in _ordered(found)]


def _ordered(names: Iterable[str]) -> list[str]:
    names = list(names)
    return [n for n in ORDER if n in names] + sorted(n for n in names if n not in ORDER)


def run_scripts(paths: list[Path], timeout: float | None = None) -> dict[str, dict[str, Any]]:
    """Run each script in its own process from the repository root; return status per script."""
    status: dict[str, dict[str, Any]] = {}
    for path in paths:
        print(f"=== {path.name}", flush=True)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, str(path)], cwd=ROOT, timeout=timeout)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
        seconds = time.perf_counter() - t0
        status[path.name] = {"returncode": code, "seconds": round(seconds, 1)}
        print(f"=== {path.name}: {'ok' if code == 0 else f'FAILED ({code})'} in {seconds:.0f} s",
              flush=True)
    return status


def load_results(folder: Path = RESULTS) -> list[dict[str, Any]]:
    """Every ``bench_*.json`` in ``folder``, in display order, each with its ``_name``."""
    by_name = {}
    for path in folder.glob("bench_*.json"):
        data = json.loads(path.read_text())
        data["_name"] = path.stem.removeprefix("bench_")
        by_name[data["_name"]] = data
    return [by_name[n] for n in _ordered(by_name)]


def _num(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        v = float(value)
        if not math.isfinite(v):
            return "–"
        if v == 0:
            return "0"
        if abs(v) >= 1e6 or abs(v) < 1e-3:
            return f"{v:.3g}"
        if abs(v) >= 100:
            return f"{v:,.0f}"
        return f"{v:.3g}"
    return str(value)


def _hardware(hw: dict[str, Any] | None) -> str:
    if not hw:
        return "hardware not recorded"
    parts = [f"{hw.get('cpu', 'unknown CPU')}, {hw.get('cores', '?')} cores"]
    if hw.get("memory_gib"):
        parts.append(f"{hw['memory_gib']} GiB")
    gpu = hw.get("gpu")
    if gpu:
        parts.append("GPU: " + ("; ".join(gpu) if isinstance(gpu, list) else str(gpu)))
    return ", ".join(parts)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_tables(results: list[dict[str, Any]]) -> str:
    """Markdown for the README: per benchmark, its hardware and a table of its targets."""
    if not results:
        return "_No benchmark results yet: run `python benchmarks/run_all.py`._\n"
    out: list[str] = []
    for data in results:
        name = data.get("_name") or str(data.get("benchmark", "")).removeprefix("bench_")
        date = str(data.get("date", ""))[:10]
        out.append(f"### {TITLES.get(name, name.replace('_', ' ').capitalize())}\n")
        out.append(f"{_hardware(data.get('hardware'))}" + (f"; {date}" if date else "")
                   + f" (`benchmarks/results/bench_{name}.json`)\n")
        targets = data.get("targets") or []
        if not targets:
            out.append("_No targets recorded._\n")
            continue
        rows = ["| target | goal | measured | unit | met |", "| --- | ---: | ---: | --- | :---: |"]
        notes = []
        for t in targets:
            label = _cell(t.get("name", ""))
            if t.get("note"):
                notes.append(t["note"])
                label += f" [{len(notes)}]"
            met = "✅" if t.get("met") else ("–" if t.get("measured") is None else "❌")
            rows.append(f"| {label} | {_num(t.get('target'))} | {_num(t.get('measured'))} | "
                        f"{_cell(t.get('unit', ''))} | {met} |")
        out.append("\n".join(rows) + "\n")
        if notes:
            out.append("\n".join(f"[{i}] {_cell(n)}  " for i, n in enumerate(notes, 1)) + "\n")
    return "\n".join(out)


def update_readme(text: str, tables: str) -> str:
    """``text`` with everything between the benchmark markers replaced by ``tables``."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ValueError(f"README must contain {START} followed by {END}, once each")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{tables.rstrip()}\n{END}{tail}"


def write_readme_tables(readme: Path = README, folder: Path = RESULTS) -> None:
    readme.write_text(update_readme(readme.read_text(), render_tables(load_results(folder))))
    print(f"updated the benchmark tables in {readme.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=None, help="comma-separated names, e.g. fit,detect")
    parser.add_argument("--tables-only", action="store_true",
                        help="do not run benchmarks; only rewrite the README tables")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per script")
    args = parser.parse_args(argv)
    failed = []
    if not args.tables_only:
        only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
        status = run_scripts(scripts(only), timeout=args.timeout)
        failed = [name for name, s in status.items() if s["returncode"] != 0]
    write_readme_tables()
    if failed:
        print("failed:", ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
