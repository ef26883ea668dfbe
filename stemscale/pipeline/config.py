"""Pipeline configuration: typed sections, loading, ``--set`` overrides.

A pipeline YAML names its ``kind`` and holds one section per stage::

    kind: demo                 # demo | defect_strain | real_frame | train_fcn
    simulate: {shape: [2048, 2048], seed: 2020}
    detect:   {detector: auto, tta: true}
    fit:      {window: 7}
    cluster:  {kind: local}

Every section is a frozen pydantic model; each kind is a model with the
sections it uses (:data:`KINDS`), so a section of another kind is an error
(it would be silently ignored otherwise).  Unknown keys name the closest valid
spelling, ``options`` passed to a library dataclass are checked against its
fields, and every relative path is taken relative to the YAML file's folder.
``train_fcn`` files are the detection package's training configuration
(:class:`stemscale.detect.TrainConfig`), with or without a ``kind: train_fcn``
line.  Loading and messages: :mod:`stemscale.config_base`.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import yaml
from pydantic import AfterValidator, ConfigDict, Field, PrivateAttr, ValidationInfo, \
    field_validator, model_validator

from ..classes import DEFECT_CLASSES
from ..config_base import (
    Bool,
    ConfigModel,
    Float,
    Int,
    Invalid,
    Str,
    closest,
    dataclass_options,
    read_yaml,
    validate,
)
from ..errors import InputError, MosaicNotFoundError

if TYPE_CHECKING:
    from ..detect.config import TrainConfig

__all__ = [
    "KINDS",
    "SimulateSection",
    "InputSection",
    "DetectSection",
    "FitSection",
    "BlocksSection",
    "ScoreSection",
    "SpacingSection",
    "AverageSection",
    "StrainSection",
    "ReportSection",
    "ClusterSection",
    "OutputSection",
    "PipelineConfig",
    "DemoPipeline",
    "DefectStrainPipeline",
    "RealFramePipeline",
    "TrainPipeline",
    "apply_overrides",
    "check_cluster_kind",
    "from_dict",
    "load_pipeline",
    "parse_override",
    "resolve_path",
]

Material = Literal["WSe2", "MoS2", "WS2", "MoSe2"]
Positive = Annotated[Float, Field(gt=0)]
NonNegative = Annotated[Float, Field(ge=0)]
PositiveInt = Annotated[Int, Field(gt=0)]
NonNegativeInt = Annotated[Int, Field(ge=0)]
Pair = tuple[PositiveInt, PositiveInt]


# ----------------------------------------------------------------------------- paths
def resolve_path(value: str, base: Path | None) -> str:
    """``value`` relative to ``base`` unless it is absolute, a URL or ``~``-relative."""
    if "://" in value or base is None:
        return value
    p = Path(os.path.expanduser(value))
    return str(p if p.is_absolute() else (base / p).resolve())


def _base(info: ValidationInfo) -> Path | None:
    return (info.context or {}).get("base")


def _path(value: str, info: ValidationInfo) -> str:
    return resolve_path(value, _base(info))


def _maybe_path(value: str, info: ValidationInfo) -> str:
    # A shipped model name ("wse2") stays a name; "models/x.json" is a path.
    looks = "/" in value or os.sep in value or value.endswith((".json", ".pt", ".zarr", ".yaml"))
    return resolve_path(value, _base(info)) if looks else value


#: A path, taken relative to the YAML file's folder.
PathStr = Annotated[Str, AfterValidator(_path)]
#: A name, or a path (relative to the YAML file) when it looks like one.
NameOrPath = Annotated[Str, AfterValidator(_maybe_path)]


def _defect_classes(classes: Any, what: str = "defect class") -> Any:
    for cls in classes or ():
        if cls not in DEFECT_CLASSES:
            near = closest(cls, DEFECT_CLASSES)
            raise Invalid(f"has unknown {what} {cls!r}{f'; did you mean {near!r}?' if near else ''} "
                          f"(classes: {', '.join(DEFECT_CLASSES)})")
    return classes


def _averaging_options(options: dict[str, Any]) -> dict[str, Any]:
    if not options:
        return {}
    from ..average import AveragingConfig

    return dataclass_options(AveragingConfig, options, "stemscale.average.AveragingConfig")


def _measure_options(options: dict[str, Any]) -> dict[str, Any]:
    if not options:
        return {}
    from ..strain import MeasureConfig

    return dataclass_options(MeasureConfig, options, "stemscale.strain.MeasureConfig")


def check_cluster_kind(kind: str, where: str = "cluster.kind") -> str:
    """``kind`` if it names a cluster (``local``, ..., an address or a scheduler file).

    Raises
    ------
    InputError
        Naming ``where`` and the closest valid kind.
    """
    problem = _cluster_kind_problem(kind)
    if problem:
        raise InputError(f"'{where}' {problem}")
    return kind


def _cluster_kind_problem(kind: str) -> str | None:
    from ..parallel import CLUSTER_KINDS

    if kind in CLUSTER_KINDS or "://" in kind or kind.endswith(".json"):
        return None
    near = closest(kind, CLUSTER_KINDS)
    return (f"must be one of {', '.join(CLUSTER_KINDS)}, a scheduler address (tcp://host:8786) "
            f"or a scheduler file (.json), got {kind!r}{f'; did you mean {near!r}?' if near else ''}")


def _check_layout(chunks: tuple[int, int], shards: tuple[int, int]) -> None:
    if any(s % c for s, c in zip(shards, chunks)):
        raise Invalid(f"must be whole multiples of the chunks {list(chunks)} along each axis, "
                      f"got {list(shards)}", key="shards")


# ----------------------------------------------------------------------------- sections
class Section(ConfigModel):
    """A section of a pipeline file (read-only once loaded)."""

    model_config = ConfigDict(frozen=True)


class SimulateSection(Section):
    """A synthetic mosaic with ground truth (:func:`stemscale.parallel.simulate.simulate_mosaic`).

    ``concentrations`` are fractions of sites per defect class (default: the
    simulator's); ``min_defect_spacing_A`` thins defects so more of them are
    isolated; ``chunks``/``shards`` set the zarr layout (a block = a shard).
    """

    shape: Pair = (2048, 2048)
    seed: Int = 2020
    material: Material = "WSe2"
    dose_e_per_a2: Positive = 7300.0
    concentrations: Annotated[dict[str, Float] | None, AfterValidator(_defect_classes)] = None
    min_defect_spacing_A: NonNegative = 0.0
    position_noise_pm: NonNegative = 0.0
    chunks: Pair = (512, 512)
    shards: Pair = (1024, 1024)

    @model_validator(mode="after")
    def _layout(self) -> SimulateSection:
        _check_layout(self.chunks, self.shards)
        return self


class InputSection(Section):
    """Where the data comes from: exactly one of ``mosaic``, ``files`` or ``example``.

    ``mosaic`` is an existing stemscale zarr store (path or ``s3://`` URL);
    ``files`` are raw frames (TIFF, DM3/DM4, EMD) ingested into
    ``<run>/mosaic.zarr`` (placed by their stage positions or ``positions``);
    ``example: temul_mos2`` is the Se-implanted MoS2 frame shipped in
    ``temul-toolkit`` (installed with ``pip --no-deps`` on first use).
    ``storage_options`` go to fsspec unchanged.
    """

    mosaic: PathStr | None = None
    files: list[PathStr] | None = None
    example: Literal["temul_mos2"] | None = None
    pixel_size_angstrom: Positive | None = None
    positions: PathStr | None = None
    material: Material | None = None
    high_tension_kv: Float | None = None
    dose_e_per_a2: Float | None = None
    storage_options: dict[str, Any] = Field(default_factory=dict)
    chunks: Pair = (512, 512)
    shards: Pair = (2048, 2048)

    @model_validator(mode="after")
    def _one_source(self) -> InputSection:
        _check_layout(self.chunks, self.shards)
        given = [k for k in ("mosaic", "files", "example") if getattr(self, k)]
        if len(given) != 1:
            raise Invalid(f"needs exactly one of 'mosaic', 'files' or 'example', got {given or 'none'}")
        if self.mosaic and self.pixel_size_angstrom is not None:
            raise Invalid("applies to raw files; a mosaic carries its pixel size in its NGFF "
                          "metadata", key="pixel_size_angstrom")
        return self


class DetectSection(Section):
    """Finding columns (and defects): the FCN or classical peaks.

    ``detector: auto`` uses the FCN when a model is available (``model`` or a
    shipped one) and falls back to ``peaks`` otherwise, saying so in the log
    and ``run.json``.  ``column_spacing_angstrom`` is the nearest projected
    column distance (default: a / sqrt(3) of the material).

    ``labels: true`` (FCN only) also writes the per-pixel argmax class as an
    OME-NGFF label image ``labels/classes`` into the mosaic's zarr, and
    ``probabilities: true`` the class probabilities (uint8, value / 255) as
    ``labels/probabilities``; ``labels_store`` writes them to a separate zarr
    store instead (for a read-only mosaic, e.g. on S3).
    """

    detector: Literal["auto", "fcn", "peaks"] = "auto"
    model: NameOrPath | None = None
    tta: Bool = True
    device: Str = "cpu"
    amp: Bool = False
    column_spacing_angstrom: Positive | None = None
    detector_margin: NonNegativeInt = 64
    labels: Bool = False
    probabilities: Bool = False
    labels_store: PathStr | None = None

    @property
    def wants_labels(self) -> bool:
        return bool(self.labels or self.probabilities or self.labels_store)

    @field_validator("device")
    @classmethod
    def _device(cls, device: str) -> str:
        if not (device == "cpu" or device.startswith("cuda")):
            raise Invalid(f"must be 'cpu' or 'cuda', got {device!r}")
        return device

    @model_validator(mode="after")
    def _labels_need_fcn(self) -> DetectSection:
        if self.wants_labels and self.detector == "peaks":
            raise Invalid("holds the FCN's class probabilities; the peaks detector has none "
                          "(set detector: fcn or auto)", key="labels")
        return self


class FitSection(Section):
    """Gaussian refinement of every column (:func:`stemscale.fit.refine_positions`)."""

    window: Int = 7
    model: Literal["gauss2d", "gauss2d_elliptic", "gauss2d_rotated"] = "gauss2d_elliptic"
    estimator: Literal["lse", "mle"] = "lse"
    snap_radius: NonNegativeInt = 3
    tolerance: Positive = 1e-10
    max_iterations: PositiveInt = 100

    @field_validator("window")
    @classmethod
    def _odd(cls, window: int) -> int:
        if window < 3 or window % 2 == 0:
            raise Invalid(f"must be an odd number of pixels >= 3, got {window}")
        return window


class BlocksSection(Section):
    """How the mosaic is cut: block core ``shape`` (default: the store's shards)."""

    shape: Pair | None = None
    retries: NonNegativeInt = 2


class ScoreSection(Section):
    """Scoring against the simulator's truth (demo): match radii in pixels."""

    defect_radius_px: Positive = 7.5
    column_radius_px: Positive | None = None
    border_px: NonNegative = 8.0


class SpacingSection(Section):
    """Metal-metal nearest-neighbour spacings in a pristine region (real frames).

    ``region_A`` is ``[x0, x1, y0, y1]`` in Å (default: the whole image);
    columns within ``exclude_radius_A`` of a substituted, missing or badly
    fitted column are left out; a chalcogen column is "substituted" when its
    fitted amplitude exceeds the chalcogen median by ``substitution_threshold``
    robust standard deviations; two columns are neighbours when their distance
    is within ``tolerance`` (relative) of the measured lattice constant.
    """

    enabled: Bool = True
    region_A: tuple[Float, Float, Float, Float] | None = None
    exclude_radius_A: NonNegative = 4.0
    substitution_threshold: Positive = 4.0
    tolerance: Float = 0.1
    edge_A: NonNegative = 3.0

    @field_validator("region_A")
    @classmethod
    def _region(cls, region: tuple[float, float, float, float] | None
                ) -> tuple[float, float, float, float] | None:
        if region is not None:
            x0, x1, y0, y1 = region
            if not (x1 > x0 and y1 > y0):
                raise Invalid("must be [x0, x1, y0, y1] with x1 > x0 and y1 > y0")
        return region

    @field_validator("tolerance")
    @classmethod
    def _tolerance(cls, tolerance: float) -> float:
        if not 0 < tolerance < 0.15:
            raise Invalid("must be in (0, 0.15) (beyond that chalcogen columns count as metal "
                          f"neighbours), got {tolerance}")
        return tolerance


class AverageSection(Section):
    """Screening and class averaging (:mod:`stemscale.average`).

    ``defects``: ``detected`` averages the detector's defects; ``truth`` the
    simulation's true defects (demo only: a precision study independent of
    the detector); ``auto`` the detected ones, or on a simulated mosaic the
    true ones when the detector finds none (e.g. the peaks detector).
    ``options`` are fields of :class:`stemscale.average.AveragingConfig`
    (checked when the file is read).
    """

    enabled: Bool = True
    defects: Literal["auto", "detected", "truth"] = "auto"
    classes: Annotated[list[Str] | None, AfterValidator(_defect_classes)] = None
    options: Annotated[dict[str, Any], AfterValidator(_averaging_options)] = Field(
        default_factory=dict)


class StrainSection(Section):
    """Spacings and displacements in the class averages (:mod:`stemscale.strain`).

    ``options`` are fields of :class:`stemscale.strain.MeasureConfig` (checked
    when the file is read).
    """

    enabled: Bool = True
    options: Annotated[dict[str, Any], AfterValidator(_measure_options)] = Field(
        default_factory=dict)


class ReportSection(Section):
    """The report: ``report.md`` (or ``.html``) with the numbers and figures.

    ``notes`` are printed in the report as they are (caveats about the data,
    e.g. a known calibration error).
    """

    enabled: Bool = True
    format: Literal["markdown", "html"] = "markdown"
    figures: Bool = True
    notes: list[Str] = Field(default_factory=list)


class ClusterSection(Section):
    """Where it runs; ``--cluster`` on the command line overrides ``kind``.

    ``kind``: ``local``, ``cuda``, ``slurm``, ``kubernetes``, a scheduler
    address (``tcp://host:8786``) or a scheduler file (``scheduler.json``).
    ``workers``/``threads_per_worker``/``memory_limit`` size a local cluster;
    ``jobs`` is the number of SLURM jobs or Kubernetes workers to start;
    ``options`` go to :func:`stemscale.parallel.make_cluster` unchanged (their
    keys depend on the kind, so they are not checked here).
    """

    kind: Str = "local"
    workers: PositiveInt | None = None
    threads_per_worker: PositiveInt = 1
    memory_limit: Str | None = None
    jobs: PositiveInt = 1
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("kind")
    @classmethod
    def _kind(cls, kind: str) -> str:
        problem = _cluster_kind_problem(kind)
        if problem:
            raise Invalid(problem)
        return kind


class OutputSection(Section):
    """The run folder (default ``./stemscale-output/<name>-<date-time>``)."""

    dir: PathStr | None = None
    overwrite: Bool = False


# ----------------------------------------------------------------------------- kinds
class PipelineConfig(ConfigModel):
    """A validated pipeline: its kind, its sections and where it came from.

    One subclass per kind (:class:`DemoPipeline`, :class:`DefectStrainPipeline`,
    :class:`RealFramePipeline`) holds the sections that kind uses, as
    attributes (``config.detect.tta``).

    Attributes
    ----------
    kind
        ``demo``, ``defect_strain`` or ``real_frame``.
    name
        Short name used for the default output folder (default: the kind).
    description
        Free text for the report.
    sections
        Section name -> validated section.
    source
        The YAML file (``None`` when built from a dict).
    overrides
        The ``--set`` assignments applied on top of the file.
    """

    model_config = ConfigDict(frozen=True)

    #: The sections of this kind, in the order they are written out.
    SECTIONS: ClassVar[tuple[str, ...]] = ()
    #: Sections a file of this kind must have.
    REQUIRED: ClassVar[tuple[str, ...]] = ()

    kind: str
    name: Str = ""
    description: Str = ""
    detect: DetectSection = Field(default_factory=DetectSection)
    fit: FitSection = Field(default_factory=FitSection)
    blocks: BlocksSection = Field(default_factory=BlocksSection)
    report: ReportSection = Field(default_factory=ReportSection)
    cluster: ClusterSection = Field(default_factory=ClusterSection)
    output: OutputSection = Field(default_factory=OutputSection)

    _source: Path | None = PrivateAttr(default=None)
    _overrides: list[str] = PrivateAttr(default_factory=list)

    if TYPE_CHECKING:
        # The sections of the subclasses (config.simulate, config.input ...).
        def __getattr__(self, name: str) -> Any: ...

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            # An empty section ("fit:" with nothing under it) means its defaults.
            data = {k: v for k, v in data.items() if v is not None or k not in cls.SECTIONS}
            if not data.get("name"):
                data["name"] = data.get("kind", "")
        return data

    @property
    def sections(self) -> dict[str, Section]:
        return {name: getattr(self, name) for name in self.SECTIONS}

    @property
    def source(self) -> Path | None:
        return self._source

    @property
    def overrides(self) -> list[str]:
        return list(self._overrides)

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration (every default filled in), JSON/YAML-friendly."""
        out: dict[str, Any] = {"kind": self.kind, "name": self.name}
        if self.description:
            out["description"] = self.description
        out.update({k: v.to_dict() for k, v in self.sections.items()})
        return out

    def with_settings(self, settings: dict[str, Any], *, recorded: list[str]) -> PipelineConfig:
        """This configuration with ``settings`` (key path -> value) changed, validated again.

        ``recorded`` is what :attr:`overrides` gains (e.g. ``["cluster.kind=slurm"]``).
        """
        data = self.to_dict()
        for key, value in settings.items():
            _assign(data, key.split("."), value, key)
        new = from_dict(data, source=self.source)
        assert isinstance(new, PipelineConfig)
        new._overrides = [*self._overrides, *recorded]
        return new


_COMMON = ("detect", "fit", "blocks", "report", "cluster", "output")


class DemoPipeline(PipelineConfig):
    """``kind: demo``: a simulated mosaic, scored against its truth, averaged and measured."""

    SECTIONS = ("simulate", *_COMMON, "score", "average", "strain")

    kind: Literal["demo"] = "demo"
    simulate: SimulateSection = Field(default_factory=SimulateSection)
    score: ScoreSection = Field(default_factory=ScoreSection)
    average: AverageSection = Field(default_factory=AverageSection)
    strain: StrainSection = Field(default_factory=StrainSection)


class DefectStrainPipeline(PipelineConfig):
    """``kind: defect_strain``: strain around the defects of an existing mosaic or frames."""

    SECTIONS = ("input", *_COMMON, "average", "strain")
    REQUIRED = ("input",)

    kind: Literal["defect_strain"] = "defect_strain"
    input: InputSection
    average: AverageSection = Field(default_factory=AverageSection)
    strain: StrainSection = Field(default_factory=StrainSection)


class RealFramePipeline(PipelineConfig):
    """``kind: real_frame``: metal-metal spacings of a real frame."""

    SECTIONS = ("input", *_COMMON, "spacing")
    REQUIRED = ("input",)

    kind: Literal["real_frame"] = "real_frame"
    input: InputSection
    spacing: SpacingSection = Field(default_factory=SpacingSection)


_MODELS: dict[str, type[PipelineConfig]] = {
    "demo": DemoPipeline, "defect_strain": DefectStrainPipeline, "real_frame": RealFramePipeline,
}
#: Kind -> (section name -> section model) it accepts; ``train_fcn`` is the detection
#: package's own schema (:class:`~stemscale.detect.TrainConfig`).
KINDS: dict[str, dict[str, Any]] = {
    **{kind: {name: model.model_fields[name].annotation for name in model.SECTIONS}
       for kind, model in _MODELS.items()},
    "train_fcn": {},
}
_TOP = ("kind", "name", "description")


@dataclass
class TrainPipeline:
    """A ``train_fcn`` pipeline: the detection package's :class:`TrainConfig`."""

    train: TrainConfig
    kind: str = "train_fcn"
    source: Path | None = None
    overrides: list[str] = field(default_factory=list)
    output: OutputSection = field(default_factory=OutputSection)

    @property
    def name(self) -> str:
        return f"train-{self.train.name}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.train.to_dict(), "output": self.output.to_dict()}


# ----------------------------------------------------------------------------- overrides
def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"detect.tta=false"`` into (``["detect", "tta"]``, ``False``).

    The value is read as YAML, so ``false``, ``8``, ``[512, 512]`` and ``null``
    mean what they mean in the file.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise InputError(f"--set expects key.path=value (e.g. detect.tta=false), got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise InputError(f"--set {text!r}: the value is not valid YAML ({exc})") from None
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """A copy of ``data`` with every ``key.path=value`` assignment applied."""
    out = copy.deepcopy(data)
    for text in overrides:
        keys, value = parse_override(text)
        _assign(out, keys, value, f"--set {text!r}")
    return out


def _assign(data: dict[str, Any], keys: list[str], value: Any, what: str) -> None:
    node = data
    for depth, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise InputError(f"{what}: '{'.'.join(keys[: depth + 1])}' is a value, not a section")
        node = child
    node[keys[-1]] = value


# ----------------------------------------------------------------------------- loading
def _train_fields() -> set[str]:
    from ..detect.config import TrainConfig

    return set(TrainConfig.model_fields)


def from_dict(data: dict[str, Any], *, source: Path | None = None,
              overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig | TrainPipeline:
    """Validate an already-read mapping (``source`` names the file in messages and
    anchors relative paths)."""
    base = source.parent if source is not None else Path.cwd()
    label = str(source) if source is not None else "pipeline"
    data = apply_overrides(data, list(overrides))
    kind = data.get("kind")
    if kind is None:
        # Training files of the detection package carry no kind; recognise them by their keys.
        if data and set(data) <= _train_fields():
            kind = "train_fcn"
        else:
            raise InputError(f"{label}: missing 'kind' (one of {', '.join(KINDS)})")
    if kind not in KINDS:
        near = closest(str(kind), KINDS)
        raise InputError(f"{label}: unknown kind {kind!r}"
                         f"{f'; did you mean {near!r}?' if near else ''} "
                         f"(kinds: {', '.join(KINDS)})")
    if kind == "train_fcn":
        return _train(data, source, base, label, list(overrides))
    model = _MODELS[kind]
    for key in data:
        others = [k for k, secs in KINDS.items() if key in secs]
        if key not in model.model_fields and others:
            raise InputError(f"{label}: section '{key}' is not used by kind '{kind}' (only by "
                             f"{', '.join(others)}); sections of {kind}: "
                             f"{', '.join(model.SECTIONS)}")
    for name in model.REQUIRED:
        if data.get(name) is None:
            raise InputError(f"{label}: kind '{kind}' needs an '{name}' section")
    config = validate(model, data, label=label, context={"base": base})
    config._source, config._overrides = source, list(overrides)
    return config


def _train(data: dict[str, Any], source: Path | None, base: Path, label: str,
           overrides: list[str]) -> TrainPipeline:
    from ..detect.config import TrainConfig

    body = {k: v for k, v in data.items() if k not in ("kind", "output")}
    output = validate(OutputSection, data.get("output"), label=label, prefix=("output",),
                      context={"base": base})
    train = validate(TrainConfig, body, label=label)
    return TrainPipeline(train=train, source=source, overrides=overrides, output=output)


def load_pipeline(path: str | Path, overrides: list[str] | tuple[str, ...] = ()
                  ) -> PipelineConfig | TrainPipeline:
    """Read, override and validate a pipeline YAML file.

    Parameters
    ----------
    path
        The YAML file; relative paths inside it are taken relative to its folder.
    overrides
        ``key.path=value`` assignments applied before validation (``--set``).

    Returns
    -------
    PipelineConfig or TrainPipeline

    Raises
    ------
    MosaicNotFoundError
        The file does not exist.
    InputError
        Invalid YAML, unknown kind, section or key (with the closest valid
        spelling), a value of the wrong type or out of range.
    """
    path = Path(path).expanduser().resolve()
    data = read_yaml(path, what="pipeline file", not_found=MosaicNotFoundError)
    return from_dict(data, source=path, overrides=overrides)
