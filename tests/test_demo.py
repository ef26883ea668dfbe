"""`stemscale demo`: the packaged preset and the command's argument checks.

The full demo run is exercised by `stemscale run` tests on a small mosaic
(tests/pipeline); here we check the wiring and the bad-argument messages.
"""

from pathlib import Path

from stemscale.cli import main
from stemscale.cli.demo import preset_path
from stemscale.pipeline import load_pipeline

ROOT = Path(__file__).resolve().parents[1]


def test_packaged_preset_is_the_repository_pipeline():
    assert preset_path().read_text() == (ROOT / "pipelines" / "demo.yaml").read_text()
    config = load_pipeline(preset_path(), [])
    assert config.kind == "demo"


def test_demo_rejects_bad_arguments(capsys):
    assert main(["demo", "--size", "10"]) == 2
    assert "--size" in capsys.readouterr().err
    assert main(["demo", "--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err


def test_demo_small_run_end_to_end(tmp_path, capsys):
    code = main(["demo", "--size", "512", "--workers", "1", "--no-tta", "--out", str(tmp_path / "d")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "run folder" in out and (tmp_path / "d" / "run.json").exists()
    assert "F1" in out or "columns found" in out
