"""What every YAML configuration of stemscale shares: strict pydantic models, one-line errors.

The pipeline files (:mod:`stemscale.pipeline.config`) and the training files
(:mod:`stemscale.detect.config`) are pydantic v2 models derived from
:class:`ConfigModel` (unknown keys are errors: ``extra="forbid"``).  This
module reads their YAML (:func:`read_yaml`) and turns a pydantic
``ValidationError`` into one :class:`~stemscale.errors.InputError` line a
person can act on (:func:`validate`):

* an unknown key names its full path and the closest valid spelling
  (``unknown key 'detect.ttaa'; did you mean 'detect.tta'?``), so a typo never
  silently falls back to a default;
* a value of the wrong type names the expected type in words (``an integer``,
  ``a list of 2 integers``, ``true or false``), a value out of range the bound;
* every message starts with the file it is about.

Validators in the models raise :class:`Invalid` for semantic checks (its
``key`` extends the location, ``choices`` makes it an unknown-key message);
:func:`dataclass_options` validates a free ``options`` mapping against the
fields of the library dataclass it is passed to.

Two message layouts exist, both produced here: ``style="quoted"`` (pipeline
files: ``p.yaml: 'fit.window' must be an integer, got 'seven'``) and
``style="dotted"`` (training files, as :mod:`stemscale.detect` always wrote
them: ``c.yaml.optim.steps: expected an integer, got 'many'``).

Only pydantic, PyYAML, difflib and :mod:`stemscale.errors` are imported, so
every layer (the core ``detect`` package included) can use it.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Strict,
    StrictBool,
    StrictStr,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from .errors import InputError

__all__ = [
    "Bool",
    "ConfigModel",
    "Float",
    "Int",
    "Invalid",
    "Str",
    "Style",
    "closest",
    "dataclass_options",
    "describe_type",
    "read_yaml",
    "validate",
]

M = TypeVar("M", bound=BaseModel)
Style = Literal["quoted", "dotted"]
Loc = tuple[str | int, ...]
_NONE = type(None)


# ----------------------------------------------------------------------------- value types
def _integral(value: Any) -> Any:
    # YAML writes 1e3 as a float (or a string); a whole number is an integer all the same.
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):  # pydantic's lax float would read true as 1.0
        raise PydanticCustomError("float_type", "Input should be a valid number")
    return value


#: ``true``/``false`` only (not "yes", 1 or "on").
Bool = StrictBool
#: Integers (and whole floats such as ``8.0``), not booleans or strings.
Int = Annotated[int, Strict(), BeforeValidator(_integral)]
#: Numbers, also written as strings (YAML 1.1 reads ``1e-3`` as a string); not booleans,
#: NaN or infinity (:class:`ConfigModel` forbids those).
Float = Annotated[float, BeforeValidator(_not_bool)]
#: Strings only (a bare ``2020`` is not a name).
Str = StrictStr


class ConfigModel(BaseModel):
    """Base of every configuration model: unknown keys and non-finite numbers are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    def to_dict(self) -> dict[str, Any]:
        """Every field, defaults included, as plain YAML/JSON values (tuples as lists)."""
        return self.model_dump(mode="json")


class Invalid(ValueError):
    """A semantic check of a validator failed.

    Parameters
    ----------
    text
        What is wrong, without the location (``"must be odd, got 8"``).
    key
        Location below the value being validated (a model validator names the
        field it is about: ``key="window"``; a nested path is a tuple).
    choices
        Makes it an unknown-key problem: the last part of ``key`` is not one of
        ``choices`` (the message names the closest one).
    """

    def __init__(self, text: str = "", *, key: str | int | Loc = (),
                 choices: Sequence[str] | None = None) -> None:
        super().__init__(text or f"unknown key {key!r}")
        self.text = text
        self.key: Loc = key if isinstance(key, tuple) else (key,)
        self.choices = list(choices) if choices is not None else None


# ----------------------------------------------------------------------------- words
def closest(word: str, choices: Iterable[str]) -> str | None:
    """The valid spelling closest to ``word`` (difflib), or ``None`` if nothing is close."""
    options = [str(c) for c in choices]
    low = {o.lower(): o for o in options}  # case slips ("TTA", "WSE2")
    if word.lower() in low:
        return low[word.lower()]
    hits = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if hits:
        return hits[0]
    starts = [o for o in options if o.startswith(word) and len(word) >= 3]  # "thr" for "threads"
    return starts[0] if len(starts) == 1 else None


def _unwrap(hint: Any) -> Any:
    while typing.get_origin(hint) is Annotated:
        hint = typing.get_args(hint)[0]
    return hint


def _union_args(hint: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return None


def _strip_none(hint: Any) -> Any:
    """``X | None`` -> ``X`` (unions of several types stay as they are)."""
    hint = _unwrap(hint)
    args = _union_args(hint)
    if args is not None:
        rest = [a for a in args if a is not _NONE]
        if len(rest) == 1:
            return _unwrap(rest[0])
    return hint


def _is_record(hint: Any) -> bool:
    return isinstance(hint, type) and (issubclass(hint, BaseModel) or dataclasses.is_dataclass(hint))


def _fields(hint: Any) -> dict[str, Any]:
    """Field name -> type hint of a model or dataclass."""
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        return {name: f.annotation for name, f in hint.model_fields.items()}
    hints = typing.get_type_hints(hint, include_extras=True)
    return {f.name: hints[f.name] for f in dataclasses.fields(hint) if f.init}


def describe_type(hint: Any, style: Style = "quoted") -> str:
    """Words for a type hint ("an integer", "a list of 2 numbers", "true or false")."""
    hint = _unwrap(hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if _union_args(hint) is not None:
        inner = [describe_type(a, style) for a in args if a is not _NONE]
        text = " or ".join(inner)
        return f"{text} or null" if _NONE in args else text
    if origin in (list, tuple):
        items = [_unwrap(a) for a in args]
        if origin is tuple and items and not (len(items) == 2 and items[1] is Ellipsis):
            if len(set(items)) == 1:
                return f"a list of {len(items)} {_plural(items[0], style)}"
            return "a list of " + ", ".join(describe_type(a, style) for a in items)
        return f"a list of {_plural(items[0], style)}" if items else "a list"
    if origin is dict or hint is dict:
        return "a mapping"
    if _is_record(hint):
        return "a mapping (section)"
    words = {bool: "true/false" if style == "dotted" else "true or false", int: "an integer",
             float: "a number", str: "a string", Any: "any value"}
    return words.get(hint, getattr(hint, "__name__", str(hint)))


def _plural(hint: Any, style: Style) -> str:
    hint = _unwrap(hint)
    return {bool: "true/false values", int: "integers", float: "numbers",
            str: "strings"}.get(hint, describe_type(hint, style))


def _show(value: Any) -> str:
    return type(value).__name__ if isinstance(value, (dict, list, tuple)) else repr(value)


# ----------------------------------------------------------------------------- errors
@dataclasses.dataclass(frozen=True)
class _Problem:
    """One validation problem: where (key path), what, and the expected type there."""

    loc: Loc
    text: str = ""                       # ready-made text (validators, range checks)
    hint: Any = None                     # expected type (type errors)
    value: Any = None
    choices: list[str] | None = None     # unknown key: the valid keys of its parent
    kind: str = "type"                   # type | unknown | missing | text


def _walk(root: Any, loc: Loc) -> tuple[Loc, Any]:
    """Follow a pydantic error location through the models: (key path, type hint there).

    Parts that are neither keys nor indices (union member and validator tags)
    are dropped; a key that is not a field (an unknown key) ends with hint ``None``.
    """
    path: list[str | int] = []
    hint = root
    for part in loc:
        h = _strip_none(hint)
        origin, args = typing.get_origin(h), typing.get_args(h)
        if _is_record(h) and isinstance(part, str):
            path.append(part)
            hint = _fields(h).get(part)
        elif origin in (list, tuple) and isinstance(part, int):
            path.append(part)
            items = [a for a in args if a is not Ellipsis]
            if origin is tuple and len(items) > 1:
                hint = items[min(part, len(items) - 1)]
            else:
                hint = items[0] if items else Any
        elif origin is dict and isinstance(part, str) and part != "[key]":
            path.append(part)
            hint = args[1] if len(args) == 2 else Any
    return tuple(path), hint


def _problems(exc: ValidationError, root: Any) -> list[_Problem]:
    out: list[_Problem] = []
    for err in exc.errors():
        kind, loc = err["type"], tuple(err["loc"])
        path, hint = _walk(root, loc)
        ctx = err.get("ctx") or {}
        if kind == "extra_forbidden":
            parent, parent_hint = _walk(root, loc[:-1])
            parent_hint = _strip_none(parent_hint)
            names = list(_fields(parent_hint)) if _is_record(parent_hint) else []
            out.append(_Problem(parent + (str(loc[-1]),), choices=names, kind="unknown"))
        elif kind == "missing" and path and isinstance(path[-1], int):
            # A fixed-length list with too few items: the tuple field's problem.
            field_path, field_hint = _walk(root, loc[:-1])
            value = err["input"]
            out.append(_Problem(field_path, hint=field_hint, kind="text",
                                text=f"must be {describe_type(field_hint)}, got "
                                f"{len(value) if isinstance(value, (list, tuple)) else 0} item(s)"))
        elif kind == "missing":
            out.append(_Problem(path, hint=hint, kind="missing"))
        elif kind == "too_long" and path:
            value = err["input"]
            out.append(_Problem(path, hint=hint, kind="text",
                                text=f"must be {describe_type(hint)}, got {len(value)} item(s)"))
        elif kind in ("value_error", "assertion_error") and isinstance(ctx.get("error"), Invalid):
            inv: Invalid = ctx["error"]
            if inv.choices is not None:
                out.append(_Problem(path + inv.key, choices=inv.choices, kind="unknown"))
            else:
                out.append(_Problem(path + inv.key, text=inv.text, kind="text"))
        elif kind in ("value_error", "assertion_error"):
            text = str(ctx.get("error", err["msg"]))
            out.append(_Problem(path, text=text, kind="message"))
        elif kind in _BOUNDS:
            op, key = _BOUNDS[kind]
            out.append(_Problem(path, kind="text",
                                text=f"must be {op} {ctx[key]}, got {err['input']!r}"))
        elif kind == "finite_number":
            out.append(_Problem(path, kind="text", text=f"must be a finite number, got {err['input']!r}"))
        else:
            out.append(_Problem(path, hint=hint, value=err["input"]))
    # A typo often explains the other problems: unknown keys first.
    out.sort(key=lambda p: p.kind != "unknown")
    return out


_BOUNDS = {"greater_than": (">", "gt"), "greater_than_equal": (">=", "ge"),
           "less_than": ("<", "lt"), "less_than_equal": ("<=", "le")}


def _key(path: Loc) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _render(p: _Problem, label: str | None, style: Style) -> str:
    where = _key(p.loc)
    if style == "dotted":
        if p.kind == "unknown":
            parent = _key(p.loc[:-1])
            near = closest(str(p.loc[-1]), p.choices or [])
            text = (f"unknown key(s) {str(p.loc[-1])!r}"
                    + (f"; did you mean {near!r}?" if near else "")
                    + f" (allowed: {', '.join(sorted(p.choices or []))})")
            head = ".".join(x for x in (label, parent) if x)
        else:
            head = ".".join(x for x in (label, where) if x)
            if p.kind == "missing":
                text = f"missing required key ({describe_type(p.hint, style)})"
            elif p.kind in ("text", "message"):
                text = p.text
            else:
                text = f"expected {describe_type(p.hint, style)}, got {_show(p.value)}"
        return f"{head}: {text}" if head else text
    if p.kind == "unknown":
        parent = _key(p.loc[:-1])
        near = closest(str(p.loc[-1]), p.choices or [])
        full_near = f"{parent}.{near}" if parent and near else near
        text = (f"unknown key {where!r}" + (f"; did you mean {full_near!r}?" if near else "")
                + f" (valid keys{' of ' + repr(parent) if parent else ''}: "
                f"{', '.join(p.choices or [])})")
    elif p.kind == "missing":
        text = f"missing required key {where!r} ({describe_type(p.hint)})"
    elif p.kind == "text":
        text = f"{where!r} {p.text}" if where else p.text
    elif p.kind == "message":
        text = f"{where!r}: {p.text}" if where else p.text
    else:
        text = f"{where or 'the value'!r} must be {describe_type(p.hint)}, got {_show(p.value)}"
        literal = _strip_none(p.hint)
        if typing.get_origin(literal) is Literal and isinstance(p.value, str):
            near = closest(p.value, [str(a) for a in typing.get_args(literal)])
            text += f"; did you mean {near!r}?" if near else ""
    return f"{label}: {text}" if label else text


def validate(model: type[M], data: Any, *, label: str | None = None, prefix: Loc = (),
             context: dict[str, Any] | None = None, style: Style = "quoted") -> M:
    """Validate ``data`` against ``model``; any problem becomes one :class:`InputError` line.

    Parameters
    ----------
    model
        A :class:`ConfigModel` (or any pydantic model).
    data
        The mapping read from YAML (``None`` means "all defaults").
    label
        What the data came from (the file), first in every message.
    prefix
        Key path of ``data`` inside its file (``("output",)``), for messages.
    context
        Pydantic validation context (e.g. the folder relative paths are taken from).
    style
        ``"quoted"`` (``file: 'a.b' must be ...``) or ``"dotted"`` (``file.a.b: expected ...``).
    """
    try:
        return model.model_validate({} if data is None else data, context=context)
    except ValidationError as exc:
        problems = _problems(exc, model)
        if not problems:  # pragma: no cover - pydantic always reports at least one
            raise InputError(f"{label}: {exc}") from None
        first = problems[0]
        first = dataclasses.replace(first, loc=prefix + first.loc)
        raise InputError(_render(first, label, style)) from None


def dataclass_options(cls: type, options: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """Check a free ``options`` mapping against the fields of dataclass ``cls``.

    For configuration keys whose value goes unchanged to a library
    dataclass (``AveragingConfig(**options)``): unknown keys and values of the
    wrong type are found when the file is read, not when the stage runs.
    Meant to be called from a pydantic validator: raises :class:`Invalid`.

    Returns
    -------
    The options with their values converted to the fields' types.
    """
    if not options:
        return {}
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in options:
        if key not in names:
            raise Invalid(key=str(key), choices=names)
    try:
        built: Any = TypeAdapter(cls).validate_python(dict(options))
    except ValidationError as exc:
        p = _problems(exc, cls)[0]
        if p.kind == "message":  # the dataclass's own check (__post_init__)
            raise Invalid(f"is refused by {name or cls.__name__}: {p.text}") from None
        text = p.text or f"must be {describe_type(p.hint)}, got {_show(p.value)}"
        raise Invalid(text, key=p.loc) from None
    return {k: getattr(built, k) for k in options}


# ----------------------------------------------------------------------------- files
def read_yaml(path: str | Path, *, what: str = "configuration file",
              not_found: type[Exception] = InputError) -> dict[str, Any]:
    """The mapping in a YAML file, or an error naming the file.

    Parameters
    ----------
    path
        The file.
    what
        Words for the file in messages ("pipeline file", "training config").
    not_found
        Exception raised when the file does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise not_found(f"{what} '{path}' does not exist")
    if path.is_dir():
        raise InputError(f"'{path}' is a folder; give a {what} (YAML)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"{what} '{path}' is not valid YAML: {exc}") from None
    if data is None:
        raise InputError(f"{what} '{path}' is empty")
    if not isinstance(data, dict):
        raise InputError(f"{what} '{path}' must be a mapping of keys to values, got "
                         f"{type(data).__name__}")
    return data
