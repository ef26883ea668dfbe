"""One readable line for every failure a user can cause at the command line.

stemscale's own errors already say what is wrong and what to do.  Errors
from the layers below (the file system, object storage, zarr, Dask workers)
are translated here into the same one-line form; anything unexpected still
gets one line, with a pointer to ``--debug`` for the traceback.  No line
shows a credential: URLs lose their ``user:password@`` and the values of
``secret=...``-like assignments are masked (:func:`stemscale.redact.redact_text`).
"""

from __future__ import annotations

import errno
from typing import Iterator

from ..errors import StemscaleError
from ..redact import redact_text

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
        return (f"cannot reach the object-storage endpoint ({text}); check that it is up, or "
                "pass --storage-option endpoint_url=http://host:port (or set AWS_ENDPOINT_URL)")
    if name == "ParamValidationError":
        detail = " ".join(line.strip() for line in str(exc).splitlines()[1:2])
        bucket = detail.split('"')[1] if detail.count('"') >= 2 else ""
        if detail.startswith("Invalid bucket name") and "@" in bucket:
            # s3://KEY:SECRET@bucket: the credentials ended up in the bucket name
            return ("the s3:// URL holds credentials (user:password@); object storage takes "
                    "them as --storage-option key=... --storage-option secret=... (or "
                    "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), not in the URL")
        return f"object storage rejected the request: {detail.split(': Bucket name must')[0] or text}"
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
        Never empty, never more than one line, no credentials.
    """
    return redact_text(_describe(exc))


def _describe(exc: BaseException) -> str:
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
