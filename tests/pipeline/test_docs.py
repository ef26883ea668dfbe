"""The documentation runs: every Python example, every `stemscale` command line parses.

Python blocks of docs/python-api.md and docs/deployment.md are executed in order in one
namespace (a temporary working folder); blocks marked "needs the shipped detection model"
run only where such a model is installed, and blocks that name a GPU or a remote cluster
are not run.  Every `stemscale ...` line in the docs and deploy READMEs is parsed by the
real argument parser, and `stemscale run` lines naming a shipped pipeline are validated
with their --set overrides.
"""

from __future__ import annotations

import re
import shlex
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


@pytest.mark.slow
@pytest.mark.parametrize("page", ["python-api.md", "deployment.md"])
def test_python_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pipelines").symlink_to(ROOT / "pipelines")
    namespace: dict = {"__name__": "__docs__"}
    ran = 0
    for code in blocks(ROOT / "docs" / page, "python"):
        if "needs the shipped detection model" in code and not _model_available():
            continue
        if "needs a GPU" in code or "needs a cluster" in code:
            continue
        exec(compile(code, f"{page} example {ran + 1}", "exec"), namespace)
        ran += 1
    assert ran >= 1
    if page == "python-api.md":
        assert (tmp_path / "demo-run" / "run.json").exists()
        assert namespace["again"].skipped == namespace["result"].n_blocks
