"""Training configuration: nested pydantic models loaded from YAML and validated.

Unknown keys are errors that name the key, its section and the closest valid
spelling, so a typo in ``pipelines/train_fcn.yaml`` never silently falls back
to a default.  Loading and the error messages are shared with the pipeline
files (:mod:`stemscale.config_base`).
"""

from __future__ import annotations

from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, model_validator

from ..classes import DEFECT_CLASSES
from ..config_base import Bool, ConfigModel, Float, Int, Invalid, Str, closest, read_yaml, validate
from ..errors import InputError
from ..lattice import PAPER_PIXEL_SIZE_A

__all__ = ["ModelSection", "DataSection", "OptimSection", "RunSection", "TrainConfig",
           "load_train_config"]


class _Section(ConfigModel):
    # Not frozen: ``stemscale train --steps`` and friends set fields; assignments are validated.
    model_config = ConfigDict(validate_assignment=True)


class ModelSection(_Section):
    """Network shape (see :class:`stemscale.detect.model.ModelConfig`)."""

    base_filters: Int = 16
    depth: Int = 4
    dropout: Float = 0.1
    # start from these weights (shipped model name or manifest path) instead of random ones
    init_from: Str | None = None


class DataSection(_Section):
    """How training frames are simulated and cut into patches."""

    material: Str = "WSe2"
    pixel_size_angstrom: Float = PAPER_PIXEL_SIZE_A
    frame_size: Int = 384
    patch_size: Int = 256
    patches_per_frame: Int = 4
    frame_pool: Int = 8
    new_frames_per_step: Float = 1.0
    dose_range: list[Float] = Field(default_factory=lambda: [500.0, 30000.0])
    # per-image concentration of each defect class (fraction of its sites), drawn uniformly
    concentrations: dict[str, list[Float]] = Field(default_factory=lambda: {
        "SV": [0.005, 0.05], "DV": [0.002, 0.02], "2Te": [0.005, 0.05], "TeSe": [0.005, 0.05],
        "MV": [0.002, 0.02], "MSub": [0.002, 0.02],
    })
    # uniform support / contamination signal (fraction of incident electrons) and its variation
    background_fraction: list[Float] = Field(default_factory=lambda: [0.0, 0.008])
    background_variation: list[Float] = Field(default_factory=lambda: [0.0, 0.6])
    random_microscope: Bool = True
    # fixed microscope fields (e.g. high_tension_kv: 60), applied on top of the random draw
    microscope: dict[str, Float] = Field(default_factory=dict)
    scan_distortions: Bool = True
    rotation: Bool = True
    dihedral: Bool = True
    resample_factors: list[Float] = Field(default_factory=lambda: [1.0, 0.5, 0.25])
    resample_probs: list[Float] = Field(default_factory=lambda: [0.5, 0.3, 0.2])
    standardise_jitter: Float = 0.05
    train_seed: Int = 1
    val_seed: Int = 2
    val_frames: Int = 4


class OptimSection(_Section):
    """Adam, a class-weighted cross-entropy plus soft Dice, cosine learning-rate decay."""

    lr: Float = 1e-3
    min_lr_fraction: Float = 0.05
    warmup_steps: Int = 20
    batch_size: Int = 8
    steps: Int = 1000
    weight_decay: Float = 0.0
    class_weight_power: Float = 0.5
    class_weight_max: Float = 30.0
    dice_weight: Float = 1.0


class RunSection(_Section):
    """Where and how long to run."""

    device: Str = "cpu"
    threads: Int = 2
    amp: Bool = False
    max_minutes: Float | None = None
    checkpoint_every: Int = 25
    val_every: Int = 100
    log_every: Int = 10


class TrainConfig(_Section):
    """The whole training run; ``name`` names the exported model."""

    name: Str = "wse2"
    model: ModelSection = Field(default_factory=ModelSection)
    data: DataSection = Field(default_factory=DataSection)
    optim: OptimSection = Field(default_factory=OptimSection)
    run: RunSection = Field(default_factory=RunSection)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, source: str = "config") -> TrainConfig:
        """Validate a mapping (``source`` names it in messages)."""
        return validate(cls, d or {}, label=source, style="dotted")

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        problem = _problem(self)
        if problem:
            raise Invalid(problem)
        return self

    def validate(self, source: str = "config") -> None:  # type: ignore[override]
        """Check the settings again after they were changed (e.g. ``cfg.optim.steps = 3``)."""
        problem = _problem(self)
        if problem:
            raise InputError(f"{source}: {problem}")


def _problem(cfg: TrainConfig) -> str | None:
    """What is wrong with the settings taken together, or ``None``."""
    d = cfg.data
    if d.patch_size % (2**cfg.model.depth):
        return (f"data.patch_size ({d.patch_size}) must be a multiple of "
                f"2**model.depth = {2**cfg.model.depth}")
    if d.frame_size < d.patch_size:
        return f"data.frame_size ({d.frame_size}) < data.patch_size ({d.patch_size})"
    if len(d.dose_range) != 2 or not 0 < d.dose_range[0] <= d.dose_range[1]:
        return "data.dose_range must be [low, high] with 0 < low <= high"
    for name in ("background_fraction", "background_variation"):
        v = getattr(d, name)
        if len(v) != 2 or not 0 <= v[0] <= v[1]:
            return f"data.{name} must be [low, high] with 0 <= low <= high"
    if d.background_variation[1] >= 1:
        return "data.background_variation must stay below 1"
    if len(d.resample_factors) != len(d.resample_probs) or not d.resample_factors:
        return ("data.resample_factors and data.resample_probs must have the same, "
                "non-zero length")
    if any(not 0 < f <= 1 for f in d.resample_factors):
        return "data.resample_factors must lie in (0, 1]"
    from ..simulate import Microscope

    if "pixel_size_A" in d.microscope:
        return ("set the pixel size with data.pixel_size_angstrom, "
                "not data.microscope.pixel_size_A")
    allowed = [f.name for f in dataclass_fields(Microscope) if f.name != "pixel_size_A"]
    for key in d.microscope:
        if key not in allowed:
            near = closest(key, allowed)
            return (f"data.microscope has unknown field {key!r}"
                    f"{f'; did you mean {near!r}?' if near else ''} "
                    "(expected fields of stemscale.simulate.Microscope)")
    for key in d.concentrations:
        if key not in DEFECT_CLASSES:
            near = closest(key, DEFECT_CLASSES)
            return (f"data.concentrations has unknown defect class {key!r}"
                    f"{f'; did you mean {near!r}?' if near else ''} "
                    f"(expected among {list(DEFECT_CLASSES)})")
    for key, v in d.concentrations.items():
        if len(v) != 2 or not 0 <= v[0] <= v[1] <= 1:
            return f"data.concentrations.{key} must be [low, high] in [0, 1]"
    if cfg.optim.batch_size < 1 or cfg.optim.steps < 1:
        return "optim.batch_size and optim.steps must be >= 1"
    return None


def load_train_config(path: str | Path) -> TrainConfig:
    """Read and validate a training YAML file.

    Raises
    ------
    InputError
        The file does not exist, is not YAML, or has an unknown key (with the
        closest valid spelling), a value of the wrong type or out of range.
    """
    data = read_yaml(path, what="training config")
    return validate(TrainConfig, data, label=str(path), style="dotted")
