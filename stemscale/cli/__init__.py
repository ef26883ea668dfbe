"""The ``stemscale`` command line.

Each subcommand lives in its own module with a ``register(subparsers)``
function; this module only assembles them and turns stemscale's own errors
into one readable line instead of a traceback (:mod:`stemscale.cli.errors`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from typing import Sequence, TextIO

from .._version import __version__
from ..errors import StemscaleError, StemscaleWarning
from ..redact import redact_text
from .errors import one_line

# Modules that provide subcommands, in the order they appear in --help.
_SUBCOMMAND_MODULES = [
    "stemscale.cli.demo",
    "stemscale.cli.simulate",
    "stemscale.cli.ingest",
    "stemscale.cli.info",
    "stemscale.cli.find",
    "stemscale.cli.detect",
    "stemscale.cli.run",
]

DESCRIPTION = """\
stemscale: picometre strain maps around single-atom defects in 2D materials,
from one HAADF-STEM frame to terabyte mosaics on Dask.

Start with `stemscale demo`; every subcommand has --help."""


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="stemscale",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"stemscale {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks instead of one-line errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # subcommand not written yet
                continue
            raise
        module.register(sub)
    return parser


def _one_line_warnings(command: str) -> None:
    """Show stemscale's own warnings as one line each, like its errors."""
    previous = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None) -> None:
        if issubclass(category, StemscaleWarning):
            print(f"stemscale {command}: warning: {redact_text(str(message))}", file=sys.stderr)
        else:
            previous(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stemscale`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    debug = bool(args.debug or os.environ.get("STEMSCALE_DEBUG"))
    if not debug:
        _one_line_warnings(str(args.command))
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted; finished blocks are kept and a rerun resumes", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        print(f"stemscale {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2 if isinstance(exc, StemscaleError) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
