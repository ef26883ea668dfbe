"""Rough edges of the command line: advice that fits the command, Å in --check, help texts,
progress bars of `detect` and `evaluate`."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from stemscale.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return dict(sub.choices)


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def _model_available() -> bool:
    from stemscale.detect import available_models

    return "wse2" in available_models()


needs_model = pytest.mark.skipif(not _model_available(), reason="no shipped weights")


# ---------------------------------------------------------------- stacks: --frame vs --sum
@pytest.fixture()
def stack_tif(tmp_path):
    import tifffile

    path = tmp_path / "stack.tif"
    stack = np.random.default_rng(0).poisson(20, size=(3, 32, 40)).astype(np.uint16)
    tifffile.imwrite(path, stack, photometric="minisblack")
    return path


def test_detect_on_a_stack_advises_only_what_detect_accepts(stack_tif, capsys):
    code = main(["detect", str(stack_tif), "--pixel-size", "0.2074"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "stack of 3 frames" in err and "--frame N (0..2)" in err
    # flags offered to `stemscale detect` exist there; --sum is named only with `stemscale ingest`
    own = re.sub(r"`stemscale ingest[^`]*`", "", err)
    assert set(re.findall(r"--[a-z][a-z-]*", own)) <= _flags(_subparsers()["detect"])
    assert "--sum" not in own
    assert f"`stemscale ingest {stack_tif} OUT.zarr --sum`" in err


def test_ingest_on_a_stack_still_advises_its_own_flags(stack_tif, tmp_path, capsys):
    code = main(["ingest", str(stack_tif), str(tmp_path / "out.zarr"), "--pixel-size", "0.2074",
                 "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert {"--frame", "--sum"} <= set(re.findall(r"--[a-z][a-z-]*", err))
    assert {"--frame", "--sum"} <= _flags(_subparsers()["ingest"])
    assert not (tmp_path / "out.zarr").exists()
    assert main(["ingest", str(stack_tif), str(tmp_path / "out.zarr"), "--pixel-size", "0.2074",
                 "--sum", "--quiet"]) == 0


def test_detect_accepts_the_frame_it_advises(stack_tif, tmp_path):
    # the advice is usable: --frame N gets past the stack (no model needed to reach the check)
    from stemscale.cli.detect import _load_image

    args = build_parser().parse_args(["detect", str(stack_tif), "--pixel-size", "0.2074",
                                      "--frame", "2"])
    image, ps = _load_image(args)
    assert image.shape == (32, 40) and ps == 0.2074


# ---------------------------------------------------------------------- run --check and Å
def test_run_check_prints_unicode_not_escapes(capsys):
    assert main(["run", str(ROOT / "pipelines" / "demo.yaml"), "--check"]) == 0
    out = capsys.readouterr().out
    assert "\\x" not in out and "\\u" not in out
    assert "Å" in out
    loaded = yaml.safe_load(out)        # still YAML, and it reads back to the same text
    assert "e-/Å²" in loaded["description"]


# ------------------------------------------------------------------------- help texts
def test_no_help_line_states_its_default_twice():
    for name, parser in _subparsers().items():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.help or action.help == argparse.SUPPRESS:
                continue
            text = formatter._expand_help(action)
            assert text.count("default") <= 1, f"stemscale {name} {action.option_strings}: {text}"


def test_simulate_help_shows_the_real_defaults():
    parser = _subparsers()["simulate"]
    help_text = " ".join(parser.format_help().split())
    assert "(default: None)" not in help_text and "(default: False)" not in help_text
    for action in parser._actions:
        m = re.search(r"\(default: ([-0-9. ]+)\)", action.help or "")
        if not m:
            continue
        shown = [float(v) for v in m.group(1).split()]
        real = action.default if isinstance(action.default, list) else [action.default]
        assert shown == [float(v) for v in real], action.option_strings


# ------------------------------------------------------------------------ progress bars
@pytest.fixture()
def no_forced_terminal(monkeypatch):
    """Rich's own switches off: the captured stderr of a test is then no terminal."""
    for name in ("TTY_COMPATIBLE", "FORCE_COLOR", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)


def _sim_tif(tmp_path: Path, pixel_size: float) -> Path:
    import tifffile

    from stemscale.simulate import Microscope, simulate_frame

    frame = simulate_frame((256, 256), microscope=Microscope(pixel_size_A=pixel_size), seed=5,
                           labels=False)
    path = tmp_path / "frame.tif"
    tifffile.imwrite(path, frame.image.astype(np.float32))
    return path


@needs_model
def test_detect_resample_shows_progress_on_a_terminal(tmp_path, capsys, monkeypatch,
                                                       no_forced_terminal):
    tif = _sim_tif(tmp_path, 0.15)
    argv = ["detect", str(tif), "--pixel-size", "0.15", "--resample", "--no-tta",
            "--out", str(tmp_path / "out")]
    monkeypatch.setenv("TTY_COMPATIBLE", "1")        # rich: stderr counts as a terminal
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "resampling" in captured.err and "windows" in captured.err
    assert "windows" not in captured.out             # bars go to stderr, results to stdout
    assert main([*argv, "--no-progress"]) == 0
    assert capsys.readouterr().err == ""
    monkeypatch.delenv("TTY_COMPATIBLE")             # captured stderr is no terminal: no bar
    assert main(argv) == 0
    assert capsys.readouterr().err == ""


@needs_model
def test_evaluate_shows_frames_and_windows_on_a_terminal(capsys, monkeypatch,
                                                         no_forced_terminal):
    argv = ["evaluate", "--frames", "2", "--size", "128", "--no-tta", "--doses", "2000",
            "--curve-frames", "1"]
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "frames" in err and "2/2" in err and "windows" in err
    assert "dose curve: frames" in err
    assert main([*argv, "--no-progress"]) == 0
    assert capsys.readouterr().err == ""
    monkeypatch.delenv("TTY_COMPATIBLE")
    assert main(argv) == 0
    assert capsys.readouterr().err == ""
