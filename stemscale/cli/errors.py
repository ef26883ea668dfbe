"""One readable line for every failure a user can cause at the command line.

stemscale's own errors already say what is wrong and what to do.  Errors
from the layers below (the file system, object storage, zarr, Dask workers)
are translated here into the same one-line form; anything unexpected still
gets one line, with a pointer to ``--debug`` for the traceback.
"""

from __future__ import annotations

import errno
from typing import Iterator

from ..errors import StemscaleError

__all__ = ["one_line"]


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and its causes / contexts (a worker error wraps the real one)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def _storage_hint(exc: BaseException) -> str | None:
    """Object-storage problems (botocore / aiohttp / s3fs) in words, or None."""
    name = type(exc).__name__
    text = _first_line(str(exc))
    if name in {"NoCredentialsError", "PartialCredentialsError"}:
        return ("no credentials for object storage; pass --storage-option key=... "
                "--storage-option secret=... or set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")
    if name in {"EndpointConnectionError", "ClientConnectorError", "ConnectTimeoutError",
                "ServerDisconnectedError"}:
        return (f"cannot reach the object-storage endpoint ({text}); pass "
                "--storage-option endpoint_url=http://host:port (or set AWS_ENDPOINT_URL)")
    if name == "ClientError" and ("AccessDenied" in text or "Forbidden" in text):
        return f"object storage refused access ({text}); check the credentials and bucket policy"
    if name == "NoSuchBucket" or "NoSuchBucket" in text:
        return f"the bucket does not exist ({text})"
    return None


def one_line(exc: BaseException) -> str:
    """A single line that says what went wrong and, where known, what to do.

    Parameters
    ----------
    exc
        The exception that ended the command.

    Returns
    -------
    str
        Never empty, never more than one line.
    """
    chain = list(_chain(exc))
    for e in chain:  # stemscale's own message wins, wherever it sits in the chain
        if isinstance(e, StemscaleError):
            return _first_line(str(e)) or type(e).__name__
    for e in chain:
        hint = _storage_hint(e)
        if hint:
            return hint
    for e in chain:
        if isinstance(e, PermissionError) or (isinstance(e, OSError) and e.errno in (errno.EACCES, errno.EROFS)):
            where = getattr(e, "filename", None)
            what = f"'{where}'" if where else "the output location"
            return f"cannot write to {what}: permission denied (read-only?); choose another output folder"
        if isinstance(e, OSError) and e.errno in (errno.ENOTDIR, errno.EEXIST):
            where = getattr(e, "filename", None)
            return (f"cannot create '{where}': a file is in the way; choose another output "
                    "folder")
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return "no space left on the output device; free space or choose another output folder"
        if isinstance(e, FileNotFoundError):
            where = getattr(e, "filename", None)
            return f"no such file or folder: '{where}'" if where else _first_line(str(e))
    root = chain[-1] if chain else exc
    text = _first_line(str(root))
    return (f"unexpected {type(root).__name__}{': ' + text if text else ''} "
            "(rerun with --debug for the traceback, and please report it)")
