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
