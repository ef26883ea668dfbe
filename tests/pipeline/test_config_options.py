"""Options passed to library dataclasses are checked when the file is read; frozen sections."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from stemscale.cli import main
from stemscale.detect import TrainConfig, load_train_config
from stemscale.errors import InputError
from stemscale.pipeline import PipelineConfig, load_pipeline
from stemscale.pipeline.runner import _with_cluster

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, data, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def error_of(path: Path, overrides=()) -> str:
    with pytest.raises(InputError) as info:
        load_pipeline(path, overrides)
    return str(info.value)


def test_a_typo_in_average_options_is_found_by_check(tmp_path, capsys):
    path = write(tmp_path, {"kind": "demo", "average": {"options": {"orientaton": "map"}}})
    msg = error_of(path)
    assert "'average.options.orientaton'" in msg
    assert "did you mean 'average.options.orientation'" in msg and str(path) in msg
    assert main(["run", str(path), "--check"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'average.options.orientation'" in err and "Traceback" not in err


def test_average_options_types_and_values(tmp_path):
    msg = error_of(write(tmp_path, {"kind": "demo", "average": {"options": {"margin_px": "8px"}}}))
    assert "'average.options.margin_px' must be an integer" in msg
    msg = error_of(write(tmp_path, {"kind": "demo", "average": {"options": {"orientation": "mapp"}}}))
    assert "'average.options'" in msg and "orientation must be 'map', 'reject' or 'off'" in msg
    config = load_pipeline(write(tmp_path, {"kind": "demo", "average": {
        "options": {"margin_px": 10.0, "min_correlation": "1e-1"}}}))
    assert config.average.options == {"margin_px": 10, "min_correlation": 0.1}
    from stemscale.average import AveragingConfig

    assert AveragingConfig(**config.average.options).margin_px == 10


def test_strain_options_are_checked_too(tmp_path):
    path = write(tmp_path, {"kind": "defect_strain", "input": {"mosaic": "m.zarr"},
                            "strain": {"options": {"windw": 9}}})
    assert "did you mean 'strain.options.window'" in error_of(path)
    assert "'strain.options.n_boot' must be an integer" in error_of(path, ["strain.options={n_boot: 1.5}"])
    assert load_pipeline(path, ["strain.options={window: 11}"]).strain.options == {"window": 11}


def test_sections_are_frozen_and_overrides_are_validated_again(tmp_path):
    config = load_pipeline(write(tmp_path, {"kind": "demo"}))
    assert isinstance(config, PipelineConfig)
    with pytest.raises(ValidationError):
        config.detect.tta = False
    cuda = _with_cluster(config, "cuda")
    assert cuda.cluster.kind == "cuda" and cuda.detect.device == "cuda"
    assert cuda.overrides == ["cluster.kind=cuda", "detect.device=cuda (implied by --cluster cuda)"]
    assert config.cluster.kind == "local"  # the original is unchanged
    with pytest.raises(InputError, match="did you mean 'kubernetes'"):
        _with_cluster(config, "kubernetis")


def test_training_typos_get_a_suggestion_everywhere(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("optim:\n  stepz: 3\n")
    with pytest.raises(InputError, match=r"t\.yaml\.optim: unknown key\(s\) 'stepz'; did you mean 'steps'"):
        load_train_config(path)
    with pytest.raises(InputError, match="did you mean 'optim.steps'"):
        load_pipeline(path)
    with pytest.raises(InputError, match="unknown defect class 'SVV'; did you mean 'SV'"):
        TrainConfig.from_dict({"data": {"concentrations": {"SVV": [0, 0.1]}}})
    with pytest.raises(InputError, match="did you mean 'defocus_nm'"):
        TrainConfig.from_dict({"data": {"microscope": {"defocs_nm": 1.0}}})


def test_training_settings_changed_after_loading_are_checked():
    cfg = load_train_config(ROOT / "pipelines" / "train_fcn.yaml")
    cfg.optim.steps = 0  # what `stemscale train --steps 0` does
    with pytest.raises(InputError, match="x.yaml: optim.batch_size and optim.steps must be >= 1"):
        cfg.validate("x.yaml")
    with pytest.raises(ValidationError):
        cfg.optim.steps = "many"  # assignments are type-checked
    assert TrainConfig.from_dict(cfg.to_dict() | {"optim": {"steps": 5}}).optim.steps == 5


def test_store_layout_is_checked_when_the_file_is_read(tmp_path):
    msg = error_of(write(tmp_path, {"kind": "demo", "simulate": {"chunks": [512, 512],
                                                                 "shards": [768, 768]}}))
    assert "'simulate.shards' must be whole multiples of the chunks [512, 512]" in msg
