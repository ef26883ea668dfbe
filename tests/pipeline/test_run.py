"""`stemscale run` end to end on a real LocalCluster: a tiny demo, resume, versioned outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from stemscale.cli import build_parser, main
from stemscale.parallel.run import load_tables

TINY = {
    "kind": "demo",
    "name": "tiny",
    "simulate": {"shape": [384, 384], "chunks": [192, 192], "shards": [192, 192], "seed": 5},
    "detect": {"detector": "peaks"},
    "average": {"defects": "detected"},   # the peaks detector finds none: the stage is skipped
    "cluster": {"kind": "local", "workers": 2, "memory_limit": "3GiB"},
}


def test_run_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--cluster", "--set", "--out", "--overwrite", "--check", "slurm", "kubernetes"):
        assert flag in out
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert "run" in sub.choices


def test_run_rejects_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["run"])  # no pipeline
    assert info.value.code == 2
    capsys.readouterr()
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({**TINY, "fit": {"windw": 7}}))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "'fit.windw'" in err and "did you mean 'fit.window'" in err and "Traceback" not in err
    path.write_text(yaml.safe_dump(TINY))
    assert main(["run", str(path), "--cluster", "kubernetis"]) == 2
    assert "did you mean 'kubernetes'" in capsys.readouterr().err
    assert main(["run", str(path), "--set", "detect"]) == 2
    assert "key.path=value" in capsys.readouterr().err


def test_check_prints_the_resolved_configuration(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(TINY))
    assert main(["run", str(path), "--check", "--set", "fit.window=9"]) == 0
    out = capsys.readouterr().out
    resolved = yaml.safe_load(out[out.index("kind:"):])
    assert resolved["fit"]["window"] == 9 and resolved["detect"]["tta"] is True
    assert not (tmp_path / "stemscale-output").exists()


@pytest.mark.slow
def test_tiny_demo_end_to_end_then_resume(tmp_path, capsys, local_cluster):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed.replace("\n", "") and "report:" in printed

    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "complete" and record["kind"] == "demo"
    assert record["config"]["simulate"]["shape"] == [384, 384]
    assert record["config"]["fit"]["window"] == 7  # defaults are recorded too
    assert record["cluster"]["kind"] == "local" and record["cluster"]["workers"] == 2
    assert record["version"] and record["started"] <= record["finished"]
    assert {k: v["status"] for k, v in record["stages"].items()} == {
        "simulate": "done", "find": "done", "score": "done", "average": "skipped",
        "strain": "skipped", "figures": "done", "report": "done"}
    assert "peaks detector finds columns only" in record["stages"]["average"]["note"]

    # Every column of the simulation is found once: compare with the truth independently.
    from stemscale.io.truth import read_truth

    atoms, defects = load_tables(out / "tables")
    truth = read_truth(str(out / "mosaic.zarr") + ".truth")
    truth = truth[truth["n_atoms"] > 0]
    inner = truth[truth["x_px"].between(8, 375) & truth["y_px"].between(8, 375)]
    summary = json.loads((out / "summary.json").read_text())
    cols = summary["score"]["columns"]
    assert cols["n_true"] == len(inner)
    assert cols["matched"] >= 0.9 * len(inner)
    assert abs(len(atoms) - len(truth)) <= 0.1 * len(truth)
    # Column positions: metal columns within tens of pm at this dose (the paper: ~4-9 pm).
    assert 1.0 < summary["score"]["precision_pm"]["M"]["sigma_x_pm"] < 20.0

    report = (out / "report.md").read_text()
    for fig in ("overview.png", "zoom.png", "position_errors.png"):
        assert f"figures/{fig}" in report
        from matplotlib.image import imread

        image = imread(out / "figures" / fig)
        assert image.shape[0] > 200 and image.shape[1] > 200
        assert np.std(image[..., :3]) > 0.05  # something is drawn, not a blank canvas

    # Same configuration into the same folder, on the shared cluster by address: resumes.
    address = local_cluster.scheduler_address
    assert main(["run", str(path), "--out", str(out), "--no-progress", "--cluster", address]) == 0
    record = json.loads((out / "run.json").read_text())
    assert [a["status"] for a in record["attempts"]] == ["complete", "complete"]
    assert record["cluster"]["kind"] == address
    again = json.loads((out / "summary.json").read_text())
    assert again["find"]["blocks_resumed"] == again["find"]["blocks"] == 4
    assert again["simulate"]["reused"] is True
    atoms2, _ = load_tables(out / "tables")
    assert len(atoms2) == len(atoms)

    # Another configuration is refused instead of mixing outputs.
    capsys.readouterr()
    assert main(["run", str(path), "--out", str(out), "--set", "fit.window=9",
                 "--cluster", address]) == 2
    assert "different configuration" in capsys.readouterr().err


@pytest.mark.slow
def test_train_fcn_pipeline_runs_through_the_detection_package(tmp_path):
    root = Path(__file__).resolve().parents[2]
    sets = ["optim.steps=1", "data.frame_pool=1", "data.val_frames=1", "data.frame_size=256",
            "model.base_filters=4", "optim.batch_size=1", "data.patches_per_frame=1",
            "run.val_every=1", "run.checkpoint_every=1", "run.max_minutes=null"]
    args = ["run", str(root / "pipelines" / "train_fcn.yaml"), "--out", str(tmp_path / "t"),
            "--no-progress"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    record = json.loads((tmp_path / "t" / "run.json").read_text())
    assert record["status"] == "complete" and record["kind"] == "train_fcn"
    assert record["config"]["optim"]["steps"] == 1
    manifest = json.loads((tmp_path / "t" / "wse2.json").read_text())
    assert manifest["sha256"]
