"""Credentials given to a pipeline run are used, never written: not in run.json, the report,
summary.json, the tables' manifest or any other file of the run folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from stemscale.cli import main

SECRET = "SUPERSECRET123"
KEY = "AKIAKEY4567890"
TOKEN = "TOKENVALUE0987"


def _frame_config(tmp_path: Path) -> Path:
    from stemscale import AcquisitionMetadata
    from stemscale.io import write_array
    from stemscale.simulate import simulate_frame

    frame = simulate_frame((320, 320), seed=7, labels=False)
    mosaic = tmp_path / "frame.zarr"
    write_array(mosaic, frame.image, AcquisitionMetadata(0.2074, material="WSe2"),
                chunks=(160, 160), shards=(160, 160))
    config = {
        "kind": "real_frame",
        "name": "secrets",
        "input": {"mosaic": str(mosaic), "storage_options": {"anon": False}},
        "detect": {"detector": "peaks"},
        "report": {"format": "html"},
        "cluster": {"kind": "local", "workers": 1, "memory_limit": "3GiB"},
    }
    path = tmp_path / "frame.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _files_with(folder: Path, *values: str) -> list[str]:
    hits = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path.relative_to(folder)}: {v}" for v in values if v.encode() in data]
    return hits


def test_check_prints_no_credentials(tmp_path, capsys):
    path = _frame_config(tmp_path)
    assert main(["run", str(path), "--check", "--set", f"input.storage_options.secret={SECRET}",
                 "--storage-option", f"key={KEY}"]) == 0
    out = capsys.readouterr().out
    resolved = yaml.safe_load(out[out.index("kind:"):])
    assert resolved["input"]["storage_options"] == {"anon": False, "secret": "***", "key": "***"}
    assert SECRET not in out and KEY not in out


def test_storage_option_needs_an_input_section(tmp_path, capsys):
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump({"kind": "demo"}))
    assert main(["run", str(path), "--check", "--storage-option", "anon=true"]) == 2
    assert "input section" in capsys.readouterr().err


@pytest.mark.slow
def test_no_credential_in_any_file_of_the_run_folder(tmp_path, capsys):
    path = _frame_config(tmp_path)
    out = tmp_path / "run"
    args = ["run", str(path), "--out", str(out), "--no-progress",
            "--set", f"input.storage_options.secret={SECRET}",
            "--set", f"input.storage_options.client_kwargs={{aws_session_token: {TOKEN}}}",
            "--storage-option", f"key={KEY}"]
    assert main(args) == 0
    printed = capsys.readouterr()
    assert SECRET not in printed.out + printed.err and KEY not in printed.out + printed.err

    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "complete"
    options = record["config"]["input"]["storage_options"]
    assert options["secret"] == options["key"] == "***" and options["anon"] is False
    assert options["client_kwargs"] == {"aws_session_token": "***"}
    assert "input.storage_options.secret=***" in record["overrides"]
    assert (out / "report.html").exists() and (out / "tables" / "manifest.json").exists()
    assert _files_with(out, SECRET, KEY, TOKEN) == []

    # Rotated credentials are the same configuration: the run resumes instead of refusing.
    args[args.index(f"input.storage_options.secret={SECRET}")] = "input.storage_options.secret=NEW1"
    assert main(args) == 0
    record = json.loads((out / "run.json").read_text())
    assert [a["status"] for a in record["attempts"]] == ["complete", "complete"]
    assert _files_with(out, SECRET, KEY, TOKEN, "NEW1") == []
