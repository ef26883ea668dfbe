"""Stage results are kept by their own inputs; a failed stage still leaves the report of what ran."""

from __future__ import annotations

import contextlib
import json

import pytest

from stemscale.errors import InputError
from stemscale.pipeline import runner
from stemscale.pipeline.adapters import StageFailed, StageUnavailable
from stemscale.pipeline.config import from_dict
from stemscale.pipeline.runfolder import RunFolder, read_run, stage_digests

PLAN = runner.STAGE_INPUTS["demo"]
CONFIG = {"kind": "demo", "name": "t", "simulate": {"shape": [64, 64]}, "detect": {"tta": True},
          "fit": {"window": 7}, "blocks": {"shape": None}, "score": {"border_px": 8},
          "average": {"options": {}}, "strain": {"options": {}}, "cluster": {"kind": "local"},
          "output": {"dir": None}}


def with_(section: str, **values):
    return {**CONFIG, section: {**CONFIG[section], **values}}


def test_a_change_reaches_its_stage_and_the_ones_after_it_only():
    base = stage_digests(CONFIG, PLAN)
    changed = stage_digests(with_("average", options={"margin_px": 12}), PLAN)
    assert {s for s in PLAN if base[s] != changed[s]} == {"average", "strain"}
    changed = stage_digests(with_("fit", window=9), PLAN)
    assert {s for s in PLAN if base[s] != changed[s]} == {"find", "score", "average", "strain", "figures"}
    # where it runs is no input of any stage
    assert stage_digests({**CONFIG, "cluster": {"kind": "slurm"}}, PLAN) == base


def test_changing_an_averaging_option_resumes_the_folder(tmp_path):
    RunFolder(tmp_path, CONFIG, stages=PLAN, keep=runner.KEEP).finish("complete")
    (tmp_path / "tables").mkdir()
    run = RunFolder(tmp_path, with_("average", options={"margin_px": 12}), stages=PLAN, keep=runner.KEEP)
    assert run.resumed and run.rerun == {"average", "strain"} and not run.replace
    assert run.changes == ["average.options.margin_px: null -> 12"]
    assert (tmp_path / "tables").exists()
    rec = read_run(tmp_path)
    assert rec["stage_inputs"] == stage_digests(with_("average", options={"margin_px": 12}), PLAN)


def test_changing_what_find_computes_is_refused_unless_overwrite(tmp_path):
    RunFolder(tmp_path, CONFIG, stages=PLAN, keep=runner.KEEP).finish("complete")
    (tmp_path / "mosaic.zarr").mkdir()
    with pytest.raises(InputError, match=r"different configuration for the find stage \(fit.window: 7 -> 9\)"):
        RunFolder(tmp_path, with_("fit", window=9), stages=PLAN, keep=runner.KEEP)
    run = RunFolder(tmp_path, with_("fit", window=9), stages=PLAN, keep=runner.KEEP, overwrite=True)
    assert run.replace == {"find"} and "average" in run.rerun
    assert (tmp_path / "mosaic.zarr").exists()  # the simulated mosaic is kept


def test_another_data_source_empties_the_folder_with_overwrite(tmp_path):
    RunFolder(tmp_path, CONFIG, stages=PLAN, keep=runner.KEEP).finish("complete")
    (tmp_path / "mosaic.zarr").mkdir()
    with pytest.raises(InputError, match="simulate stage"):
        RunFolder(tmp_path, with_("simulate", shape=[128, 128]), stages=PLAN, keep=runner.KEEP)
    run = RunFolder(tmp_path, with_("simulate", shape=[128, 128]), stages=PLAN, keep=runner.KEEP,
                    overwrite=True)
    assert not run.resumed and not (tmp_path / "mosaic.zarr").exists()


# ----------------------------------------------------------------------------- failing stages
@contextlib.contextmanager
def no_cluster(section):
    yield None, {"kind": "none", "scheduler": None, "dashboard": None, "workers": 0}


def ok(name):
    def stage(ctx):
        return {"ran": name}
    return stage


def fails(exc):
    def stage(ctx):
        raise exc
    return stage


def run_with(monkeypatch, tmp_path, stages, fmt="markdown"):
    monkeypatch.setattr(runner, "open_cluster", no_cluster)
    monkeypatch.setitem(runner.STAGES, "demo", stages)
    config = from_dict({"kind": "demo", "name": "t", "report": {"format": fmt}})
    return runner.run_pipeline(config, out=tmp_path / "run", progress=False)


def test_a_failing_stage_is_reported_and_the_report_still_written(monkeypatch, tmp_path):
    error = InputError("the class average and the pristine average share fewer than 6 sites")
    stages = [("simulate", ok("simulate"), None), ("find", ok("find"), None),
              ("score", ok("score"), None), ("average", ok("average"), "average"),
              ("strain", fails(error), "strain"), ("figures", ok("figures"), None)]
    with pytest.raises(StageFailed) as info:
        run_with(monkeypatch, tmp_path, stages)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("stage 'strain' failed: the class average")
    assert "report.md" in msg and info.value.__cause__ is error
    out = tmp_path / "run"
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "failed" and record["error"].startswith("stage 'strain' failed")
    status = {k: v["status"] for k, v in record["stages"].items()}
    assert status == {"simulate": "done", "find": "done", "score": "done", "average": "done",
                      "strain": "failed", "figures": "done", "report": "done"}
    assert record["stages"]["strain"]["note"] == str(error)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"simulate", "find", "score", "average", "figures"}
    report = (out / "report.md").read_text()
    assert "| strain | failed: the class average" in report
    assert "the strain stage failed: the class average" in report


def test_stages_that_need_a_failed_one_are_not_run(monkeypatch, tmp_path):
    stages = [("simulate", ok("simulate"), None), ("find", fails(RuntimeError("boom\nmore")), None),
              ("score", ok("score"), None), ("average", fails(StageUnavailable("x")), "average"),
              ("strain", ok("strain"), "strain"), ("figures", ok("figures"), None)]
    with pytest.raises(StageFailed, match=r"^stage 'find' failed: RuntimeError: boom \(the report"):
        run_with(monkeypatch, tmp_path, stages, fmt="html")
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    status = {k: v["status"] for k, v in record["stages"].items()}
    assert status == {"simulate": "done", "find": "failed", "score": "not run", "average": "not run",
                      "strain": "not run", "figures": "not run", "report": "done"}
    assert record["stages"]["strain"]["note"] == "needs the results of the average stage"
    assert (tmp_path / "run" / "report.html").exists()


def test_an_interrupt_is_not_turned_into_a_report(monkeypatch, tmp_path):
    stages = [("simulate", fails(KeyboardInterrupt()), None)]
    with pytest.raises(KeyboardInterrupt):
        run_with(monkeypatch, tmp_path, stages)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "failed"
    assert not (tmp_path / "run" / "report.md").exists()
