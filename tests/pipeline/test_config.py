"""Pipeline YAML validation: typos, types, paths, overrides, every shipped pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stemscale.errors import InputError, MosaicNotFoundError
from stemscale.pipeline import PipelineConfig, TrainPipeline, load_pipeline
from stemscale.pipeline.config import apply_overrides, parse_override

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = sorted((ROOT / "pipelines").glob("*.yaml"))


def write(tmp_path: Path, data, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def error_of(path: Path, overrides=()) -> str:
    with pytest.raises(InputError) as info:
        load_pipeline(path, overrides)
    return str(info.value)


@pytest.mark.parametrize("path", PIPELINES, ids=[p.name for p in PIPELINES])
def test_every_shipped_pipeline_validates(path):
    config = load_pipeline(path)
    assert isinstance(config, (PipelineConfig, TrainPipeline))
    assert yaml.safe_load(yaml.safe_dump(config.to_dict()))["kind"] == config.kind


def test_the_four_product_pipelines_exist():
    names = {p.name for p in PIPELINES}
    assert {"demo.yaml", "defect_strain.yaml", "train_fcn.yaml", "mos2_real.yaml"} <= names


def test_typo_in_a_key_names_the_key_and_the_closest_spelling(tmp_path):
    msg = error_of(write(tmp_path, {"kind": "demo", "detect": {"ttaa": False}}))
    assert "'detect.ttaa'" in msg
    assert "did you mean 'detect.tta'" in msg
    assert str(tmp_path / "p.yaml") in msg  # which file


def test_typo_in_a_section_name(tmp_path):
    msg = error_of(write(tmp_path, {"kind": "demo", "detecor": {"tta": False}}))
    assert "'detecor'" in msg and "'detect'" in msg


def test_a_section_of_another_kind_is_an_error_not_ignored(tmp_path):
    msg = error_of(write(tmp_path, {"kind": "demo", "spacing": {}}))
    assert "'spacing'" in msg and "real_frame" in msg


def test_wrong_types_name_the_expected_type(tmp_path):
    assert "'fit.window' must be an integer" in error_of(
        write(tmp_path, {"kind": "demo", "fit": {"window": "seven"}}))
    assert "'detect.tta' must be true or false" in error_of(
        write(tmp_path, {"kind": "demo", "detect": {"tta": "yes please"}}))
    msg = error_of(write(tmp_path, {"kind": "demo", "simulate": {"shape": [512]}}))
    assert "'simulate.shape'" in msg and "2 integers" in msg
    msg = error_of(write(tmp_path, {"kind": "demo", "detect": {"detector": "peak"}}))
    assert "'detect.detector'" in msg and "did you mean 'peaks'" in msg


def test_values_out_of_range(tmp_path):
    assert "odd" in error_of(write(tmp_path, {"kind": "demo", "fit": {"window": 8}}))
    msg = error_of(write(tmp_path, {"kind": "demo", "simulate": {"concentrations": {"SVV": 0.1}}}))
    assert "'SVV'" in msg and "did you mean 'SV'" in msg


def test_cluster_kind_is_checked_with_a_suggestion(tmp_path):
    msg = error_of(write(tmp_path, {"kind": "demo", "cluster": {"kind": "slrm"}}))
    assert "did you mean 'slurm'" in msg
    for kind in ("local", "tcp://10.0.0.1:8786", "scheduler-42.json"):
        assert load_pipeline(write(tmp_path, {"kind": "demo", "cluster": {"kind": kind}})).cluster.kind == kind


def test_kind_is_required_and_checked(tmp_path):
    assert "missing 'kind'" in error_of(write(tmp_path, {"detect": {}}))
    assert "did you mean 'demo'" in error_of(write(tmp_path, {"kind": "dmeo"}))


def test_input_needs_exactly_one_source(tmp_path):
    assert "needs an 'input' section" in error_of(write(tmp_path, {"kind": "real_frame"}))
    msg = error_of(write(tmp_path, {"kind": "real_frame",
                                    "input": {"mosaic": "a.zarr", "files": ["b.tif"]}}))
    assert "exactly one" in msg


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(MosaicNotFoundError, match="nope.yaml"):
        load_pipeline(tmp_path / "nope.yaml")
    assert "not valid YAML" in error_of(write(tmp_path, "kind: demo\n  detect: [\n"))
    assert "empty" in error_of(write(tmp_path, ""))


def test_relative_paths_are_relative_to_the_yaml_file(tmp_path, monkeypatch):
    sub = tmp_path / "configs"
    sub.mkdir()
    path = write(sub, {"kind": "defect_strain", "input": {"mosaic": "../data/m.zarr"},
                       "output": {"dir": "runs/a"}})
    monkeypatch.chdir(tmp_path.parent)  # the working folder must not matter
    config = load_pipeline(path)
    assert Path(config.input.mosaic) == (tmp_path / "data" / "m.zarr").resolve()
    assert Path(config.output.dir) == (sub / "runs" / "a").resolve()
    remote = load_pipeline(write(sub, {"kind": "defect_strain",
                                       "input": {"mosaic": "s3://bucket/m.zarr"}}, "r.yaml"))
    assert remote.input.mosaic == "s3://bucket/m.zarr"
    shipped = load_pipeline(write(sub, {"kind": "demo", "detect": {"model": "wse2"}}, "m.yaml"))
    assert shipped.detect.model == "wse2"  # a shipped model name is not a path
    files = load_pipeline(write(sub, {"kind": "real_frame", "input": {"files": ["a.dm4", "/x/b.dm4"]}},
                                "f.yaml"))
    assert files.input.files == [str(sub / "a.dm4"), "/x/b.dm4"]


def test_overrides(tmp_path):
    path = write(tmp_path, {"kind": "demo", "detect": {"tta": True}})
    config = load_pipeline(path, ["detect.tta=false", "simulate.shape=[256, 512]",
                                  "fit.tolerance=1e-6", "cluster.workers=3", "detect.model=null"])
    assert config.detect.tta is False
    assert config.simulate.shape == (256, 512)
    assert config.fit.tolerance == pytest.approx(1e-6)
    assert config.cluster.workers == 3
    assert config.overrides[0] == "detect.tta=false"
    assert "did you mean 'detect.tta'" in error_of(path, ["detect.ttaa=false"])
    assert "key.path=value" in error_of(path, ["detect.tta"])
    assert "is a value, not a section" in error_of(path, ["detect.tta.x=1"])
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    assert apply_overrides({"a": {"b": 1}}, ["a.c=x"]) == {"a": {"b": 1, "c": "x"}}


def test_resolved_configuration_has_every_default(tmp_path):
    config = load_pipeline(write(tmp_path, {"kind": "demo"}))
    d = config.to_dict()
    assert d["fit"]["window"] == 7 and d["detect"]["tta"] is True
    assert set(d) >= {"simulate", "detect", "fit", "blocks", "score", "average", "strain",
                      "report", "cluster", "output"}


def test_train_fcn_dispatches_to_the_detection_package():
    from stemscale.detect import load_train_config

    path = ROOT / "pipelines" / "train_fcn.yaml"
    config = load_pipeline(path)
    assert isinstance(config, TrainPipeline)
    assert config.train == load_train_config(path)
    steps = load_pipeline(path, ["optim.steps=3"]).train.optim.steps
    assert steps == 3
    msg = error_of(path, ["optim.stepz=3"])
    assert "'optim.stepz'" in msg and "did you mean 'optim.steps'" in msg


def test_train_fcn_with_an_explicit_kind(tmp_path):
    data = yaml.safe_load((ROOT / "pipelines" / "train_fcn.yaml").read_text())
    path = write(tmp_path, {"kind": "train_fcn", **data, "output": {"dir": "out"}})
    config = load_pipeline(path)
    assert isinstance(config, TrainPipeline)
    assert config.train.name == data["name"]
    assert Path(config.output.dir) == tmp_path / "out"


def test_probability_map_options(tmp_path):
    config = load_pipeline(write(tmp_path, {"kind": "demo", "detect": {
        "labels": True, "probabilities": True, "labels_store": "out/labels.zarr"}}))
    assert config.detect.wants_labels and config.detect.probabilities
    assert Path(config.detect.labels_store) == (tmp_path / "out" / "labels.zarr").resolve()
    assert load_pipeline(write(tmp_path, {"kind": "demo"}, "d.yaml")).detect.wants_labels is False
    assert "'detect.labels' must be true or false" in error_of(
        write(tmp_path, {"kind": "demo", "detect": {"labels": "yes"}}, "t.yaml"))
    peaks = {"kind": "demo", "detect": {"detector": "peaks", "labels": True}}
    assert "peaks detector has none" in error_of(write(tmp_path, peaks, "p.yaml"))
    assert "did you mean 'detect.labels'" in error_of(
        write(tmp_path, {"kind": "demo", "detect": {"lables": True}}, "k.yaml"))
