"""Write the GPU check's summary: each step's outcome and time, the tests, the three GPU targets.

    python benchmarks/gpu/report.py --steps STEPS.tsv --out DIR

``STEPS.tsv`` (written by check.sh) has one line per step: name, status (passed, failed, cut,
skipped), seconds, limit, exit code, command.  ``DIR`` holds the run's outputs (the pytest JUnit
file and the benchmark JSONs); ``DIR/summary.txt`` is written and printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

#: (results file in the output folder, target name starts with, short label)
GPU_TARGETS = (
    ("bench_fit_gpu.json", "GPU fits/s", "fits/s, 10^7 fits 7x7 (CuPy fused kernel)"),
    ("bench_detect_gpu.json", "Mpx/s with 8x TTA", "FCN Mpx/s with 8x TTA"),
    ("bench_scaling_gpu.json", "H100 block pipeline", "block pipeline Mpx/s (FCN+TTA+fit)"),
)


def read_steps(path: Path) -> list[dict[str, str]]:
    keys = ("step", "status", "seconds", "limit", "rc", "command")
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            rows.append(dict(zip(keys, line.split("\t", len(keys) - 1))))
    return rows


def pytest_counts(path: Path) -> tuple[str, list[str]]:
    """A one-line count and the names of failed/errored tests from a JUnit XML file."""
    if not path.exists():
        return "no JUnit file", []
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        return f"unreadable JUnit file ({exc})", []
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors",
                                                               "skipped")}
    passed = total["tests"] - total["failures"] - total["errors"] - total["skipped"]
    bad, skipped = [], []
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        for tag in ("failure", "error"):
            el = case.find(tag)
            if el is not None:
                msg = (el.get("message") or "").splitlines()[0][:160] if el.get("message") else ""
                bad.append(f"{tag.upper()} {name}: {msg}")
        el = case.find("skipped")
        if el is not None:
            skipped.append(f"SKIPPED {name}: {(el.get('message') or '')[:160]}")
    line = (f"{passed} passed, {total['failures']} failed, {total['errors']} errors, "
            f"{total['skipped']} skipped")
    return line, bad + skipped


def target_rows(out: Path) -> list[str]:
    rows = []
    for fname, prefix, label in GPU_TARGETS:
        path = out / fname
        if not path.exists():
            rows.append(f"  {label:<42} not measured ({fname} missing)")
            continue
        try:
            record = json.loads(path.read_text())
        except ValueError as exc:
            rows.append(f"  {label:<42} unreadable {fname}: {exc}")
            continue
        t = next((t for t in record.get("targets", []) if t["name"].startswith(prefix)), None)
        if t is None:
            rows.append(f"  {label:<42} no target '{prefix}...' in {fname}")
            continue
        m = t.get("measured")
        if m is None:
            rows.append(f"  {label:<42} not measured: {t.get('note', '')}")
        else:
            verdict = "MET" if t.get("met") else "MISSED"
            rows.append(f"  {label:<42} {m:,.4g} {t['unit']} (target {t['target']:,.4g}): "
                        f"{verdict}")
    return rows


def card(out: Path) -> str:
    env = out / "env.txt"
    if env.exists():
        lines = env.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.startswith("name, driver_version") and i + 1 < len(lines):
                return lines[i + 1].strip()
    return "unknown (see env.txt)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--total", type=float, default=None, help="wall seconds of the whole check")
    args = ap.parse_args(argv)
    steps = read_steps(args.steps)
    lines = ["GPU check (benchmarks/gpu/check.sh)", f"card: {card(args.out)}", "",
             f"{'step':<14} {'status':<8} {'seconds':>8} {'limit':>6}  rc"]
    for s in steps:
        lines.append(f"{s.get('step', '?'):<14} {s.get('status', '?'):<8} "
                     f"{float(s.get('seconds', 'nan') or 'nan'):>8.1f} {s.get('limit', ''):>6}  "
                     f"{s.get('rc', '')}")
    if args.total is not None:
        lines.append(f"{'total':<14} {'':<8} {args.total:>8.1f}")
    count, details = pytest_counts(args.out / "pytest-gpu.xml")
    lines += ["", f"pytest -m gpu: {count}", *(f"  {d}" for d in details)]
    lines += ["", "GPU targets:", *target_rows(args.out)]
    text = "\n".join(lines) + "\n"
    (args.out / "summary.txt").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
