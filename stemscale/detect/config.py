"""Training configuration: nested dataclasses loaded from YAML and validated.

Unknown keys are errors that name the key and its section, so a typo in
``pipelines/train_fcn.yaml`` never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..classes import DEFECT_CLASSES
from ..errors import InputError

__all__ = ["ModelSection", "DataSection", "OptimSection", "RunSection", "TrainConfig",
           "load_train_config"]


@dataclass
class ModelSection:
    """Network shape (see :class:`stemscale.detect.model.ModelConfig`)."""

    base_filters: int = 16
    depth: int = 4
    dropout: float = 0.1
    # start from these weights (shipped model name or manifest path) instead of random ones
    init_from: str | None = None


@dataclass
class DataSection:
    """How training frames are simulated and cut into patches."""

    material: str = "WSe2"
    pixel_size_angstrom: float = 0.2074
    frame_size: int = 384
    patch_size: int = 256
    patches_per_frame: int = 4
    frame_pool: int = 8
    new_frames_per_step: float = 1.0
    dose_range: list[float] = field(default_factory=lambda: [500.0, 30000.0])
    # per-image concentration of each defect class (fraction of its sites), drawn uniformly
    concentrations: dict[str, list[float]] = field(default_factory=lambda: {
        "SV": [0.005, 0.05], "DV": [0.002, 0.02], "2Te": [0.005, 0.05], "TeSe": [0.005, 0.05],
        "MV": [0.002, 0.02], "MSub": [0.002, 0.02],
    })
    # uniform support / contamination signal (fraction of incident electrons) and its variation
    background_fraction: list[float] = field(default_factory=lambda: [0.0, 0.008])
    background_variation: list[float] = field(default_factory=lambda: [0.0, 0.6])
    random_microscope: bool = True
    # fixed microscope fields (e.g. high_tension_kv: 60), applied on top of the random draw
    microscope: dict[str, float] = field(default_factory=dict)
    scan_distortions: bool = True
    rotation: bool = True
    dihedral: bool = True
    resample_factors: list[float] = field(default_factory=lambda: [1.0, 0.5, 0.25])
    resample_probs: list[float] = field(default_factory=lambda: [0.5, 0.3, 0.2])
    standardise_jitter: float = 0.05
    train_seed: int = 1
    val_seed: int = 2
    val_frames: int = 4


@dataclass
class OptimSection:
    """Adam, a class-weighted cross-entropy plus soft Dice, cosine learning-rate decay."""

    lr: float = 1e-3
    min_lr_fraction: float = 0.05
    warmup_steps: int = 20
    batch_size: int = 8
    steps: int = 1000
    weight_decay: float = 0.0
    class_weight_power: float = 0.5
    class_weight_max: float = 30.0
    dice_weight: float = 1.0


@dataclass
class RunSection:
    """Where and how long to run."""

    device: str = "cpu"
    threads: int = 2
    amp: bool = False
    max_minutes: float | None = None
    checkpoint_every: int = 25
    val_every: int = 100
    log_every: int = 10


@dataclass
class TrainConfig:
    """The whole training run; ``name`` names the exported model."""

    name: str = "wse2"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    run: RunSection = field(default_factory=RunSection)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, source: str = "config") -> "TrainConfig":
        cfg = _build(cls, d or {}, source)
        cfg.validate(source)
        return cfg

    def validate(self, source: str = "config") -> None:
        d = self.data
        if d.patch_size % (2**self.model.depth):
            raise InputError(f"{source}: data.patch_size ({d.patch_size}) must be a multiple of "
                             f"2**model.depth = {2**self.model.depth}")
        if d.frame_size < d.patch_size:
            raise InputError(f"{source}: data.frame_size ({d.frame_size}) < data.patch_size "
                             f"({d.patch_size})")
        lo, hi = d.dose_range
        if not 0 < lo <= hi:
            raise InputError(f"{source}: data.dose_range must be [low, high] with 0 < low <= high")
        for name in ("background_fraction", "background_variation"):
            v = getattr(d, name)
            if len(v) != 2 or not 0 <= v[0] <= v[1]:
                raise InputError(f"{source}: data.{name} must be [low, high] with 0 <= low <= high")
        if d.background_variation[1] >= 1:
            raise InputError(f"{source}: data.background_variation must stay below 1")
        if len(d.resample_factors) != len(d.resample_probs) or not d.resample_factors:
            raise InputError(f"{source}: data.resample_factors and data.resample_probs must "
                             "have the same, non-zero length")
        if any(not 0 < f <= 1 for f in d.resample_factors):
            raise InputError(f"{source}: data.resample_factors must lie in (0, 1]")
        from dataclasses import fields as _fields

        from ..simulate import Microscope

        bad = set(d.microscope) - {f.name for f in _fields(Microscope)} - {"pixel_size_A"}
        if bad:
            raise InputError(f"{source}: data.microscope has unknown field(s) {sorted(bad)}; "
                             "expected fields of stemscale.simulate.Microscope")
        if "pixel_size_A" in d.microscope:
            raise InputError(f"{source}: set the pixel size with data.pixel_size_angstrom, "
                             "not data.microscope.pixel_size_A")
        unknown = set(d.concentrations) - set(DEFECT_CLASSES)
        if unknown:
            raise InputError(f"{source}: data.concentrations has unknown defect class(es) "
                             f"{sorted(unknown)}; expected among {list(DEFECT_CLASSES)}")
        for k, v in d.concentrations.items():
            if len(v) != 2 or not 0 <= v[0] <= v[1] <= 1:
                raise InputError(f"{source}: data.concentrations.{k} must be [low, high] in [0, 1]")
        if self.optim.batch_size < 1 or self.optim.steps < 1:
            raise InputError(f"{source}: optim.batch_size and optim.steps must be >= 1")


def _build(cls: type, d: Any, where: str) -> Any:
    if not isinstance(d, dict):
        raise InputError(f"{where}: expected a mapping for {cls.__name__}, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise InputError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(names))}"
        )
    kwargs = {}
    for name, value in d.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, f"{where}.{name}")
        else:
            kwargs[name] = _coerce(value, hint, f"{where}.{name}")
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except InputError:
                continue
        raise InputError(f"{where}: {value!r} is not a valid {hint}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise InputError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise InputError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): _coerce(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise InputError(f"{where}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise InputError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except ValueError:
            raise InputError(f"{where}: expected a number, got {value!r}") from None
    if hint is str:
        if not isinstance(value, str):
            raise InputError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def load_train_config(path: str | Path) -> TrainConfig:
    """Read and validate a training YAML file."""
    path = Path(path)
    try:
        d = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InputError(f"training config {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise InputError(f"training config {path} is not valid YAML: {exc}") from None
    return TrainConfig.from_dict(d, source=str(path))
