"""Exceptions that carry messages a microscopist can act on.

Every error raised for bad input names the file, block or parameter that is
wrong and says what was expected.  They derive from the built-in exception a
Python user would expect (``ValueError``, ``FileNotFoundError``) so generic
``except`` clauses keep working.
"""

from __future__ import annotations

__all__ = [
    "StemscaleError",
    "InputError",
    "MetadataError",
    "MosaicNotFoundError",
    "IncompleteMosaicError",
    "CorruptBlockError",
    "StemscaleWarning",
]


class StemscaleError(Exception):
    """Base class of every error stemscale raises on purpose."""


class InputError(StemscaleError, ValueError):
    """A parameter or an input array is wrong (shape, dtype, range, NaN ...)."""


class MetadataError(InputError):
    """A file or store lacks metadata stemscale needs (pixel size, NGFF axes ...)."""


class MosaicNotFoundError(StemscaleError, FileNotFoundError):
    """A path or URL does not point to an existing file or store."""


class IncompleteMosaicError(StemscaleError, RuntimeError):
    """A store was left half-written by an interrupted run."""


class CorruptBlockError(StemscaleError, RuntimeError):
    """A chunk of a mosaic cannot be read or decoded."""


class StemscaleWarning(UserWarning):
    """Something a user should know that does not stop the work (shown as one line by the CLI)."""
