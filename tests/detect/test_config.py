"""Training YAML: the shipped pipeline loads; unknown keys and bad values are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from stemscale.detect import TrainConfig, load_train_config
from stemscale.errors import InputError

PIPELINE = Path(__file__).resolve().parents[2] / "pipelines" / "train_fcn.yaml"


def test_shipped_pipeline_is_valid():
    cfg = load_train_config(PIPELINE)
    assert cfg.data.patch_size == 256
    assert cfg.data.dose_range == [500.0, 30000.0]


def test_unknown_key_is_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("optim:\n  lr: 0.001\n  learning_rate: 0.1\n")
    with pytest.raises(InputError, match=r"c\.yaml\.optim: unknown key\(s\) 'learning_rate'"):
        load_train_config(p)
    p.write_text("optimiser: {}\n")
    with pytest.raises(InputError, match="unknown key.*'optimiser'"):
        load_train_config(p)


@pytest.mark.parametrize("section,value,match", [
    ({"data": {"patch_size": 250}}, None, "multiple of"),
    ({"data": {"dose_range": [0, 10]}}, None, "dose_range"),
    ({"data": {"concentrations": {"XX": [0, 0.1]}}}, None, "unknown defect class"),
    ({"optim": {"steps": "many"}}, None, "expected an integer"),
    ({"run": {"amp": "yes"}}, None, "true/false"),
])
def test_bad_values_are_refused(section, value, match):
    with pytest.raises(InputError, match=match):
        TrainConfig.from_dict(section)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_train_config(tmp_path / "none.yaml")
