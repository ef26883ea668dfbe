"""The documentation runs: every Python example, every `stemscale` command line parses.

Python blocks of docs/python-api.md and docs/deployment.md are run as plain scripts
(`python example_N.py`), one after the other in a temporary working folder, as a reader
would; blocks marked "needs the shipped detection model" run only where such a model is
installed, and blocks that name a GPU or a remote cluster are not run.  Every Python block
of the docs and the README starts a Dask cluster only under `if __name__ == "__main__":`.  Every `stemscale ...` line in the docs and deploy READMEs is parsed by the
real argument parser, and `stemscale run` lines naming a shipped pipeline are validated
with their --set overrides.
"""

from __future__ import annotations

import ast
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md")) + sorted((ROOT / "deploy").glob("*/README.md"))
FENCE = re.compile(r"```(\w+)\n(.*?)```", re.S)


def blocks(path: Path, lang: str) -> list[str]:
    return [body for kind, body in FENCE.findall(path.read_text()) if kind == lang]


def _model_available() -> bool:
    from stemscale.detect import available_models

    return "wse2" in available_models()


def test_the_four_pages_exist():
    names = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert {"concepts.md", "file-formats.md", "deployment.md", "python-api.md"} <= names


def _command_lines(text: str) -> list[str]:
    text = text.replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("stemscale "):
            out.append(line.split(" #")[0].strip())
    return out


@pytest.mark.parametrize("path", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_every_command_line_parses(path, monkeypatch):
    from stemscale.cli import build_parser
    from stemscale.pipeline import load_pipeline

    monkeypatch.setenv("USER", "someone")
    parser = build_parser()
    for block in blocks(path, "bash") + blocks(path, "yaml"):
        for line in _command_lines(block):
            argv = shlex.split(line.replace("$USER", "someone").replace("$SLURM_JOB_ID", "1"))[1:]
            try:
                args = parser.parse_args(argv)
            except SystemExit as exc:  # argparse's way to reject
                raise AssertionError(f"{path.name}: `{line}` does not parse") from exc
            if args.command == "run" and (ROOT / args.pipeline).exists():
                load_pipeline(ROOT / args.pipeline, args.overrides)


CLUSTER_STARTS = ("connect", "make_cluster", "run_pipeline", "LocalCluster", "Client")


def _is_main_guard(node: ast.stmt) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")


@pytest.mark.parametrize("path", [*DOCS, ROOT / "README.md"],
                         ids=[str(p.relative_to(ROOT)) for p in [*DOCS, ROOT / "README.md"]])
def test_cluster_starts_are_guarded(path):
    """A LocalCluster's worker processes import the script again: start it under the guard."""
    for n, code in enumerate(blocks(path, "python"), 1):
        for stmt in ast.parse(code).body:
            if _is_main_guard(stmt):
                continue
            for node in ast.walk(stmt):
                if isinstance(node, ast.Call):
                    name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                    assert name not in CLUSTER_STARTS, (
                        f"{path.name} example {n}: {name}(...) outside "
                        "`if __name__ == \"__main__\":`")


def _runnable(code: str) -> bool:
    if "needs the shipped detection model" in code and not _model_available():
        return False
    return not ("needs a GPU" in code or "needs a cluster" in code)


@pytest.mark.slow
@pytest.mark.parametrize("page", ["docs/python-api.md", "docs/deployment.md", "README.md"])
def test_python_examples_run_as_scripts(page, tmp_path):
    """Every example is a plain script: `python example_N.py`, in order, in an empty folder."""
    outputs: dict[int, str] = {}
    for n, code in enumerate(blocks(ROOT / page, "python"), 1):
        if not _runnable(code):
            continue
        script = tmp_path / f"example_{n:02d}.py"
        script.write_text(code)
        proc = subprocess.run([sys.executable, script.name], cwd=tmp_path, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, (f"{page} example {n} failed as a script:\n"
                                      f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        outputs[n] = proc.stdout
    assert outputs
    if page == "docs/python-api.md":
        assert (tmp_path / "demo-run" / "run.json").exists()
        assert (tmp_path / "wse2.zarr").is_dir() and (tmp_path / "wse2-find").is_dir()
        # the restartable run: the second call skipped every block of the first
        n = next(i for i, c in enumerate(blocks(ROOT / page, "python"), 1)
                 if "again = run_mosaic" in c)
        first, skipped = outputs[n].splitlines()[:2]
        assert int(skipped) == int(first.split()[0]) > 0
