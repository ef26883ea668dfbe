"""Keep credentials out of everything stemscale writes or prints.

Run records (``run.json``), reports, ``summary.json``, block-run manifests,
mosaic provenance and one-line error messages may mention storage options and
URLs.  :func:`redact` returns a copy of any JSON-like value in which

* the value of every mapping key that names a credential (``key``, ``secret``,
  ``token``, ``password``, ``credentials``, ``aws_secret_access_key``,
  ``session_token`` ...) is replaced by ``"***"``, at any depth;
* ``KEY=VALUE`` strings (``--set input.storage_options.secret=...``) whose key
  names a credential keep the key and lose the value;
* URLs lose embedded credentials (``s3://KEY:SECRET@bucket`` becomes
  ``s3://***@bucket``) and the values of credential-like query parameters
  (pre-signed URLs, SAS tokens).

Only the standard library is imported, so every layer can use it.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["MASK", "is_sensitive_key", "redact", "redact_text"]

#: What a redacted value is replaced by.
MASK = "***"

#: Words that make a key a credential wherever they appear in it.
_ALWAYS = ("secret", "password", "passwd", "passphrase", "token", "credential", "authorization",
           "signature", "private")
#: Words that make a key a credential when they are a whole part of it (``aws_access_key_id``,
#: ``key``, ``sas_key``), but not inside another word (``monkey``).
_PARTS = frozenset({"key", "pwd", "auth", "sig", "apikey", "accesskey", "secretkey", "sas"})
_SPLIT = re.compile(r"[^a-z0-9]+")

# scheme://userinfo@host: everything between the scheme and the last '@' before the path.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/\s@'\"]+)@")
# name=value (a URL query, a KEY=VALUE assignment), then name: value (YAML, a dict's repr).
_VALUE = r"""(?P<value>'[^']*'|"[^"]*"|[^&\s'",;{}\[\]]*)"""
_NAME = r"""(?P<name>['"]?[A-Za-z0-9_.\-]+['"]?)"""
_ASSIGNMENTS = (
    re.compile(_NAME + r"(?P<sep>\s*=\s*)" + _VALUE),
    re.compile(_NAME + r"""(?P<sep>\s*:\s+|(?<=['"]):\s*)""" + _VALUE),
)


def is_sensitive_key(name: Any) -> bool:
    """Whether a mapping key (or the last part of a dotted key path) names a credential."""
    if not isinstance(name, str):
        return False
    last = name.strip("'\" ").lower().rsplit(".", 1)[-1]
    if any(word in last for word in _ALWAYS):
        return True
    return any(part in _PARTS for part in _SPLIT.split(last) if part)


def _mask_assignment(m: re.Match[str]) -> str:
    value = m["value"]
    bare = value.strip("'\"")
    if not bare or set(bare) <= {"."} or bare == MASK or not is_sensitive_key(m["name"]):
        return m[0]  # nothing there, a placeholder (key=...), or not a credential
    quote = value[0] if value[0] in "'\"" else ""
    return f"{m['name']}{m['sep']}{quote}{MASK}{quote}"


def redact_text(text: str) -> str:
    """``text`` without URL credentials and without the values of credential assignments."""
    if not isinstance(text, str) or not text:
        return text
    out = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    for pattern, sep in zip(_ASSIGNMENTS, "=:"):
        if sep in out:
            out = pattern.sub(_mask_assignment, out)
    return out


def redact(value: Any) -> Any:
    """A copy of a JSON-like ``value`` without credentials (see the module docstring).

    Mappings, lists and tuples are copied; strings are cleaned with
    :func:`redact_text`; everything else is returned as it is.
    """
    if isinstance(value, dict):
        return {k: (MASK if is_sensitive_key(k) and value[k] not in (None, "") else redact(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, tuple):
        return tuple(redact(v) for v in value)
    if isinstance(value, str):
        return redact_text(value)
    return value
