"""A small typed validator that turns YAML mappings into dataclasses.

Every pipeline section is a dataclass with type hints; :func:`build` checks a
mapping against it and reports mistakes in words a person can act on:

* an unknown key names its full path (``detect.ttaa``) and the closest valid
  spelling (``did you mean 'detect.tta'?``), so a typo never silently falls
  back to a default;
* a value of the wrong type names the expected type (``an integer``, ``a list
  of 2 integers``, ``true or false``);
* fields marked as paths (``field(metadata={"path": True})``) are resolved
  relative to the folder of the YAML file, unless they are absolute or URLs.

Only the types the pipeline sections use are supported: ``bool``, ``int``,
``float``, ``str``, ``Literal``, optional (``X | None``), ``list[X]``,
``tuple[X, ...]`` / ``tuple[X, Y]``, ``dict[str, X]``, ``Any`` and nested
dataclasses.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal

from ..errors import InputError

__all__ = ["build", "check_keys", "closest", "describe_type", "resolve_path", "to_plain"]

_NONE = type(None)


def closest(word: str, choices: typing.Iterable[str]) -> str | None:
    """The valid spelling closest to ``word`` (difflib), or ``None`` if nothing is close."""
    options = list(choices)
    hits = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not hits:  # case slips ("TTA") and prefixes ("thr" for "threads_per_worker")
        low = {o.lower(): o for o in options}
        if word.lower() in low:
            return low[word.lower()]
        starts = [o for o in options if o.startswith(word) and len(word) >= 3]
        return starts[0] if len(starts) == 1 else None
    return hits[0]


def describe_type(hint: Any) -> str:
    """Words for a type hint, for error messages ("an integer", "a list of numbers")."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        inner = [describe_type(a) for a in args if a is not _NONE]
        text = " or ".join(inner)
        return f"{text} or null" if _NONE in args else text
    if origin in (list, tuple) and args:
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(args[0])}"
        if origin is tuple:
            if len(set(args)) == 1:
                return f"a list of {len(args)} {_plural(args[0])}"
            return "a list of " + ", ".join(describe_type(a) for a in args)
        return f"a list of {_plural(args[0])}"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(hint):
        return "a mapping (section)"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            Any: "any value"}.get(hint, getattr(hint, "__name__", str(hint)))


def _plural(hint: Any) -> str:
    return {bool: "true/false values", int: "integers", float: "numbers",
            str: "strings"}.get(hint, describe_type(hint))


def _wrong(where: str, hint: Any, value: Any) -> InputError:
    shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return InputError(f"'{where}' must be {describe_type(hint)}, got {shown}")


def resolve_path(value: str, base: Path | None) -> str:
    """``value`` relative to ``base`` unless it is absolute, a URL or ``~``-relative."""
    if "://" in value or base is None:
        return value
    p = Path(os.path.expanduser(value))
    return str(p if p.is_absolute() else (base / p).resolve())


def _coerce(value: Any, hint: Any, where: str, base: Path | None, path_kind: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if _NONE in args:
                return None
            raise _wrong(where, hint, value)
        errors = []
        for a in args:
            if a is _NONE:
                continue
            try:
                return _coerce(value, a, where, base, path_kind)
            except InputError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise _wrong(where, hint, value)
    if origin is Literal:
        if value in args:
            return value
        near = closest(str(value), [str(a) for a in args])
        hint_text = f"; did you mean {near!r}?" if near else ""
        raise InputError(f"'{where}' must be {describe_type(hint)}, got {value!r}{hint_text}")
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where, base)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _wrong(where, hint, value)
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise InputError(f"'{where}' must be {describe_type(hint)}, got {len(value)} item(s)")
            return tuple(_coerce(v, a, f"{where}[{i}]", base, path_kind)
                         for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{where}[{i}]", base, path_kind) for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise _wrong(where, hint, value)
        item = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, item, f"{where}.{k}", base, None) for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise _wrong(where, hint, value)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise _wrong(where, hint, value)
        return value
    if hint is float:
        if isinstance(value, bool):
            raise _wrong(where, hint, value)
        try:
            # YAML 1.1 reads "1e-3" as a string; accept numbers written that way.
            number = float(value)
        except (TypeError, ValueError):
            raise _wrong(where, hint, value) from None
        if not math.isfinite(number):
            raise InputError(f"'{where}' must be a finite number, got {value!r}")
        return number
    if hint is str:
        if not isinstance(value, str):
            raise _wrong(where, hint, value)
        if path_kind is True or (path_kind == "maybe" and _looks_like_path(value)):
            return resolve_path(value, base)
        return value
    raise TypeError(f"schema type {hint!r} at {where} is not supported")  # programming error


def _looks_like_path(value: str) -> bool:
    return "/" in value or os.sep in value or value.endswith((".json", ".pt", ".zarr", ".yaml"))


def build(cls: type, data: Any, where: str = "", base: Path | None = None) -> Any:
    """Validate a mapping against dataclass ``cls`` and build it.

    Parameters
    ----------
    cls
        A dataclass whose fields carry type hints.
    data
        The mapping read from YAML (``None`` means "all defaults").
    where
        Key path of this mapping, for messages (``""`` at the top).
    base
        Folder that relative path fields are resolved against.

    Raises
    ------
    InputError
        Unknown keys (with the closest valid spelling), missing required keys,
        values of the wrong type.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"'{where or 'the file'}' must be a mapping of keys to values, "
                         f"got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    prefix = f"{where}." if where else ""
    for key in data:
        if key not in fields:
            near = closest(str(key), fields)
            suggestion = f"; did you mean '{prefix}{near}'?" if near else ""
            raise InputError(
                f"unknown key '{prefix}{key}'{suggestion} (valid keys"
                f"{' of ' + repr(where) if where else ''}: {', '.join(fields)})"
            )
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], f"{prefix}{name}", base,
                                   f.metadata.get("path"))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise InputError(f"missing required key '{prefix}{name}' ({describe_type(hints[name])})")
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if callable(check):
        check(where)
    return obj


def check_keys(cls: type, data: Any, where: str = "") -> None:
    """Only the unknown-key check of :func:`build`, recursing into nested dataclasses.

    For configurations another package builds and validates itself (the
    detection package's training file), so its typos get the same
    "did you mean" message as every other pipeline.
    """
    if not isinstance(data, dict):
        return
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    prefix = f"{where}." if where else ""
    for key, value in data.items():
        if key not in names:
            near = closest(str(key), names)
            suggestion = f"; did you mean '{prefix}{near}'?" if near else ""
            raise InputError(f"unknown key '{prefix}{key}'{suggestion} (valid keys"
                             f"{' of ' + repr(where) if where else ''}: {', '.join(names)})")
        if dataclasses.is_dataclass(hints[key]):
            check_keys(hints[key], value, f"{prefix}{key}")


def to_plain(obj: Any) -> Any:
    """Dataclasses, tuples and paths as JSON/YAML-friendly dicts, lists and strings."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj
