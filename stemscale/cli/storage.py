"""``--storage-option KEY=VALUE``: fsspec options for mosaics on object storage.

Every subcommand that reads or writes a store (``simulate``, ``ingest``,
``info``, ``find``, ``detect``, ``run``) takes the same repeatable option; the
values go to fsspec unchanged (``endpoint_url``, ``key``, ``secret``,
``anon``, ``profile`` ...), ``true`` / ``false`` become booleans.  Credentials
given this way are used, never recorded (:mod:`stemscale.redact`).
"""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import InputError

__all__ = ["add_storage_option", "storage_options"]


def add_storage_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup,
                       what: str = "a remote store") -> None:
    """Add the repeatable ``--storage-option KEY=VALUE`` to a subcommand's parser."""
    parser.add_argument(
        "--storage-option", action="append", default=[], metavar="KEY=VALUE",
        help=f"fsspec option for {what} (s3://...), repeatable: e.g. endpoint_url=URL, "
        "key=..., secret=..., anon=true (credentials are used, never recorded)",
    )


def storage_options(items: list[str] | None) -> dict[str, Any]:
    """``["endpoint_url=http://h:9000", "anon=true"]`` as a dict (``{}`` for none)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            # the value is not echoed: it may be a secret typed without its key
            raise InputError("--storage-option expects KEY=VALUE (e.g. endpoint_url=http://"
                             f"host:9000); one was given without {'a KEY' if sep else '='}")
        lowered = value.lower()
        out[key] = True if lowered == "true" else False if lowered == "false" else value
    return out
