"""The command line: help, version and readable errors."""

import subprocess
import sys

from stemscale.cli import build_parser, main


def test_help_lists_subcommands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "info" in out


def test_missing_mosaic_is_one_line_error(tmp_path, capsys):
    code = main(["info", str(tmp_path / "nope.zarr")])
    err = capsys.readouterr().err
    assert code == 2
    assert "nope.zarr" in err and "does not exist" in err
    assert "Traceback" not in err


def test_console_script_runs():
    result = subprocess.run(
        [sys.executable, "-m", "stemscale.cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert result.stdout.startswith("stemscale ")


def test_every_subcommand_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, subparser in sub.choices.items():
        assert subparser.format_help().strip(), name


def test_find_rejects_bad_arguments(tmp_path, capsys):
    assert main(["find", str(tmp_path / "missing.zarr"), str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_find_runs_block_pipeline(tmp_path, capsys):
    import numpy as np

    from stemscale import AcquisitionMetadata
    from stemscale.io import write_array
    from stemscale.parallel.run import load_tables
    from stemscale.simulate import simulate_frame

    frame = simulate_frame((192, 192), seed=3, labels=False)
    url = tmp_path / "m.zarr"
    write_array(url, frame.image, AcquisitionMetadata(0.2074), chunks=(64, 64), shards=(128, 128))
    code = main(["find", str(url), str(tmp_path / "out"), "--detector", "peaks", "--workers", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "atom columns" in out and "dashboard" in out.lower()
    atoms, _ = load_tables(tmp_path / "out")
    w = frame.truth[frame.truth["species"] == "W"]
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(atoms[["x_px", "y_px"]].to_numpy()).query(w[["x_px", "y_px"]].to_numpy())
    assert np.median(dist) < 0.5
