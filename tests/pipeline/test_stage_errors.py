"""A missing module fails a stage (never "skipped"); stage outputs are typed attributes."""

from __future__ import annotations

from pathlib import Path

import pytest

from stemscale.pipeline.adapters import MissingDependencyError, StageUnavailable
from stemscale.pipeline.config import DemoPipeline
from stemscale.pipeline.runner import _run_stage
from stemscale.pipeline.stages import Context, StageOutputs


class Run:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.stages: dict[str, dict] = {}

    def stage(self, name: str, status: str, **details) -> None:
        self.stages[name] = {"status": status, **details}


class Console:
    def print(self, *args, **kwargs) -> None:
        pass


def context(tmp_path: Path) -> Context:
    return Context(config=DemoPipeline(), run=Run(tmp_path), console=Console())


def raising(exc: BaseException):
    def stage(ctx: Context) -> dict:
        raise exc
    return stage


def test_a_missing_optional_module_fails_the_stage_and_names_the_extra(tmp_path):
    ctx = context(tmp_path)
    exc = ModuleNotFoundError("No module named 'dask_jobqueue'", name="dask_jobqueue")
    with pytest.raises(MissingDependencyError) as info:
        _run_stage(ctx, "find", raising(exc), None)
    msg = str(info.value)
    assert "dask_jobqueue" in msg and "pip install 'stemscale[deploy]'" in msg
    assert info.value.__cause__ is exc
    assert ctx.run.stages["find"]["status"] == "failed"
    assert "dask_jobqueue" in ctx.run.stages["find"]["error"]
    assert not ctx.notes  # no "skipped" note


def test_a_missing_dependency_names_the_module(tmp_path):
    ctx = context(tmp_path)
    with pytest.raises(MissingDependencyError, match="'zarr'.*reinstall"):
        _run_stage(ctx, "find", raising(ModuleNotFoundError("x", name="zarr")), None)


def test_a_missing_stemscale_module_is_a_programming_error(tmp_path):
    ctx = context(tmp_path)
    exc = ModuleNotFoundError("No module named 'stemscale.nope'", name="stemscale.nope")
    with pytest.raises(ModuleNotFoundError) as info:
        _run_stage(ctx, "average", raising(exc), "average")
    assert info.value is exc
    assert ctx.run.stages["average"]["status"] == "failed"


def test_nothing_to_work_on_is_a_skip(tmp_path):
    ctx = context(tmp_path)
    _run_stage(ctx, "average", raising(StageUnavailable("no defects")), "average")
    assert ctx.run.stages["average"] == {"status": "skipped", "note": "no defects"}
    assert ctx.notes == ["average skipped: no defects"]


def test_stage_outputs_are_typed_attributes(tmp_path):
    ctx = context(tmp_path)
    assert ctx.outputs == StageOutputs()
    assert ctx.outputs.averages is None and ctx.outputs.strain == {}
    assert not hasattr(ctx, "extras")


def test_the_averaging_adapter_imports_the_library_directly():
    import stemscale.pipeline.adapters as adapters

    assert not hasattr(adapters, "require")
    from stemscale.parallel.averaging import average_classes  # where it lives now

    assert callable(average_classes)
