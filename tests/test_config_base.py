"""The shared configuration helper: strict types, one-line errors with did-you-mean, YAML files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pytest
from pydantic import AfterValidator, Field

from stemscale.config_base import (
    Bool,
    ConfigModel,
    Float,
    Int,
    Str,
    closest,
    dataclass_options,
    read_yaml,
    validate,
)
from stemscale.errors import InputError, MosaicNotFoundError


@dataclass(frozen=True)
class LibrarySettings:
    size: int = 8
    mode: str = "fast"

    def __post_init__(self) -> None:
        if self.mode not in ("fast", "slow"):
            raise InputError(f"LibrarySettings.mode must be 'fast' or 'slow', got {self.mode!r}")


class Inner(ConfigModel):
    window: Int = 7
    rate: Float = 1.0
    on: Bool = True
    shape: tuple[Int, Int] = (1, 2)
    method: Literal["lse", "mle"] = "lse"
    positive: Annotated[Float, Field(gt=0)] = 1.0
    options: Annotated[dict[str, Any], AfterValidator(
        lambda o: dataclass_options(LibrarySettings, o))] = Field(default_factory=dict)


class Outer(ConfigModel):
    name: Str = "x"
    inner: Inner = Field(default_factory=Inner)


def message(data, **kw) -> str:
    with pytest.raises(InputError) as info:
        validate(Outer, data, label="f.yaml", **kw)
    return str(info.value)


def test_closest():
    assert closest("ttaa", ["tta", "model"]) == "tta"
    assert closest("WSE2", ["WS2", "WSe2"]) == "WSe2"  # a case slip beats a near spelling
    assert closest("thr", ["threads_per_worker", "jobs"]) == "threads_per_worker"
    assert closest("zzz", ["tta", "model"]) is None


def test_unknown_keys_name_the_path_and_the_closest_spelling():
    assert message({"inner": {"windw": 3}}) == (
        "f.yaml: unknown key 'inner.windw'; did you mean 'inner.window'? (valid keys of "
        "'inner': window, rate, on, shape, method, positive, options)")
    assert message({"innr": {}}).startswith("f.yaml: unknown key 'innr'; did you mean 'inner'?")
    dotted = message({"inner": {"windw": 3}}, style="dotted")
    assert dotted.startswith("f.yaml.inner: unknown key(s) 'windw'; did you mean 'window'?")
    # An unknown key is reported before the other problems of the file.
    assert "unknown key 'inner.x'" in message({"inner": {"window": "a", "x": 1}})


def test_types_are_strict_and_named():
    assert message({"inner": {"window": "7"}}) == "f.yaml: 'inner.window' must be an integer, got '7'"
    assert "must be an integer, got True" in message({"inner": {"window": True}})
    assert "'inner.on' must be true or false, got 'yes'" in message({"inner": {"on": "yes"}})
    assert "'inner.rate' must be a number, got True" in message({"inner": {"rate": True}})
    assert "must be a finite number" in message({"inner": {"rate": float("inf")}})
    assert "'name' must be a string, got 5" in message({"name": 5})
    assert "'inner.shape' must be a list of 2 integers, got 3 item(s)" in message(
        {"inner": {"shape": [1, 2, 3]}})
    assert "'inner.shape[1]' must be an integer" in message({"inner": {"shape": [1, "b"]}})
    assert "did you mean 'mle'" in message({"inner": {"method": "MLE"}})
    assert "'inner.positive' must be > 0, got 0" in message({"inner": {"positive": 0}})
    assert "'inner' must be a mapping (section), got list" in message({"inner": [1]})
    assert "f.yaml.inner.on: expected true/false, got 'yes'" == message(
        {"inner": {"on": "yes"}}, style="dotted")


def test_yaml_spellings_of_numbers_are_accepted():
    cfg = validate(Outer, {"inner": {"window": 9.0, "rate": "1e-3"}})
    assert cfg.inner.window == 9 and isinstance(cfg.inner.window, int)
    assert cfg.inner.rate == pytest.approx(1e-3)
    assert validate(Outer, None) == Outer()


def test_prefix_places_a_section_inside_its_file():
    with pytest.raises(InputError, match=r"f\.yaml: unknown key 'output\.inner\.x'"):
        validate(Outer, {"inner": {"x": 1}}, label="f.yaml", prefix=("output",))


def test_options_are_checked_against_the_library_dataclass():
    msg = message({"inner": {"options": {"sise": 3}}})
    assert "unknown key 'inner.options.sise'; did you mean 'inner.options.size'?" in msg
    assert "'inner.options.size' must be an integer, got 'big'" in message(
        {"inner": {"options": {"size": "big"}}})
    assert "LibrarySettings.mode must be 'fast' or 'slow'" in message(
        {"inner": {"options": {"mode": "medium"}}})
    cfg = validate(Outer, {"inner": {"options": {"size": 4.0}}})
    assert cfg.inner.options == {"size": 4}
    assert LibrarySettings(**cfg.inner.options).size == 4


def test_read_yaml(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_yaml(tmp_path / "none.yaml")
    with pytest.raises(MosaicNotFoundError, match="pipeline file .*none.yaml"):
        read_yaml(tmp_path / "none.yaml", what="pipeline file", not_found=MosaicNotFoundError)
    with pytest.raises(InputError, match="is a folder"):
        read_yaml(tmp_path)
    path = tmp_path / "a.yaml"
    for text, match in (("", "is empty"), ("[1, 2]", "mapping"), ("a: [\n", "not valid YAML")):
        path.write_text(text)
        with pytest.raises(InputError, match=match):
            read_yaml(path)
    path.write_text("a: 1\n")
    assert read_yaml(path) == {"a": 1}
