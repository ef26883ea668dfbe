"""Versioned run folders: run.json, resuming, refusing to mix configurations."""

from __future__ import annotations

import json

import pytest

import stemscale
from stemscale.errors import InputError
from stemscale.pipeline.runfolder import RunFolder, config_digest, read_run

CONFIG = {"kind": "demo", "name": "t", "detect": {"tta": True}, "cluster": {"kind": "local"},
          "output": {"dir": None}}


def test_run_json_records_configuration_version_and_status(tmp_path):
    run = RunFolder(tmp_path / "r", CONFIG, source="p.yaml", overrides=["detect.tta=true"])
    rec = read_run(tmp_path / "r")
    assert rec["status"] == "running" and rec["finished"] is None
    assert rec["config"] == CONFIG
    assert rec["version"] == stemscale.__version__
    assert rec["overrides"] == ["detect.tta=true"]
    assert len(rec["config_sha256"]) == 64
    assert rec["git"] is None or len(rec["git"]["commit"]) == 40
    run.set_cluster({"kind": "local", "workers": 2})
    run.stage("find", "done", seconds=1.0)
    run.finish("complete", summary={"find": {"atom_columns": 3}})
    rec = read_run(tmp_path / "r")
    assert rec["status"] == "complete" and rec["finished"] >= rec["started"]
    assert rec["cluster"]["kind"] == "local"
    assert rec["stages"]["find"]["status"] == "done"
    assert [a["status"] for a in rec["attempts"]] == ["complete"]


def test_same_configuration_resumes_and_keeps_history(tmp_path):
    RunFolder(tmp_path, CONFIG).finish("failed", error="boom")
    again = RunFolder(tmp_path, {**CONFIG, "cluster": {"kind": "tcp://x:1"}})  # other cluster: same run
    assert again.resumed
    assert [a["status"] for a in read_run(tmp_path)["attempts"]] == ["failed"]


def test_other_configuration_is_refused_unless_overwrite(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(InputError, match="not a stemscale run folder"):
        RunFolder(tmp_path, CONFIG)
    run_dir = tmp_path / "run"
    RunFolder(run_dir, CONFIG)
    (run_dir / "old-output.txt").write_text("old")
    other = {**CONFIG, "detect": {"tta": False}}
    with pytest.raises(InputError, match="different configuration"):
        RunFolder(run_dir, other)
    RunFolder(run_dir, other, overwrite=True)
    assert not (run_dir / "old-output.txt").exists()
    assert json.loads((run_dir / "run.json").read_text())["config"]["detect"]["tta"] is False


def test_digest_ignores_where_it_runs_but_not_what_it_computes():
    base = config_digest(CONFIG)
    assert config_digest({**CONFIG, "cluster": {"kind": "slurm"}, "output": {"dir": "x"}}) == base
    assert config_digest({**CONFIG, "detect": {"tta": False}}) != base
