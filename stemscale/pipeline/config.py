"""Pipeline configuration: typed sections, loading, ``--set`` overrides.

A pipeline YAML names its ``kind`` and holds one section per stage::

    kind: demo                 # demo | defect_strain | real_frame | train_fcn
    simulate: {shape: [2048, 2048], seed: 2020}
    detect:   {detector: auto, tta: true}
    fit:      {window: 7}
    cluster:  {kind: local}

Sections a kind does not use are errors (they would be silently ignored
otherwise), unknown keys name the closest valid spelling, and every relative
path is taken relative to the YAML file's folder.  ``train_fcn`` files are the
detection package's training configuration
(:func:`stemscale.detect.load_train_config`), with or without a
``kind: train_fcn`` line.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ..classes import DEFECT_CLASSES
from ..errors import InputError, MosaicNotFoundError
from .schema import build, check_keys, closest, to_plain

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
    "TrainPipeline",
    "apply_overrides",
    "load_pipeline",
    "parse_override",
]

Material = Literal["WSe2", "MoS2", "WS2", "MoSe2"]


def _positive(where: str, name: str, value: float | int | None, *, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InputError(f"'{where}.{name}' must be {bound}, got {value!r}")


# ----------------------------------------------------------------------------- sections
@dataclass
class SimulateSection:
    """A synthetic mosaic with ground truth (:func:`stemscale.simulate.simulate_mosaic`).

    ``concentrations`` are fractions of sites per defect class (default: the
    simulator's); ``min_defect_spacing_A`` thins defects so more of them are
    isolated; ``chunks``/``shards`` set the zarr layout (a block = a shard).
    """

    shape: tuple[int, int] = (2048, 2048)
    seed: int = 2020
    material: Material = "WSe2"
    dose_e_per_a2: float = 7300.0
    concentrations: dict[str, float] | None = None
    min_defect_spacing_A: float = 0.0
    position_noise_pm: float = 0.0
    chunks: tuple[int, int] = (512, 512)
    shards: tuple[int, int] = (1024, 1024)

    def check(self, where: str) -> None:
        for name in ("shape", "chunks", "shards"):
            if min(getattr(self, name)) <= 0:
                raise InputError(f"'{where}.{name}' must be two positive integers, got "
                                 f"{list(getattr(self, name))}")
        _positive(where, "dose_e_per_a2", self.dose_e_per_a2)
        _positive(where, "min_defect_spacing_A", self.min_defect_spacing_A, allow_zero=True)
        _positive(where, "position_noise_pm", self.position_noise_pm, allow_zero=True)
        for cls in self.concentrations or {}:
            if cls not in DEFECT_CLASSES:
                near = closest(cls, DEFECT_CLASSES)
                raise InputError(f"'{where}.concentrations' has unknown defect class {cls!r}"
                                 f"{f'; did you mean {near!r}?' if near else ''} "
                                 f"(classes: {', '.join(DEFECT_CLASSES)})")


@dataclass
class InputSection:
    """Where the data comes from: exactly one of ``mosaic``, ``files`` or ``example``.

    ``mosaic`` is an existing stemscale zarr store (path or ``s3://`` URL);
    ``files`` are raw frames (TIFF, DM3/DM4, EMD) ingested into
    ``<run>/mosaic.zarr`` (placed by their stage positions or ``positions``);
    ``example: temul_mos2`` is the Se-implanted MoS2 frame shipped in
    ``temul-toolkit`` (installed with ``pip --no-deps`` on first use).
    """

    mosaic: str | None = field(default=None, metadata={"path": True})
    files: list[str] | None = field(default=None, metadata={"path": True})
    example: Literal["temul_mos2"] | None = None
    pixel_size_angstrom: float | None = None
    positions: str | None = field(default=None, metadata={"path": True})
    material: Material | None = None
    high_tension_kv: float | None = None
    dose_e_per_a2: float | None = None
    storage_options: dict[str, Any] = field(default_factory=dict)
    chunks: tuple[int, int] = (512, 512)
    shards: tuple[int, int] = (2048, 2048)

    def check(self, where: str) -> None:
        given = [k for k in ("mosaic", "files", "example") if getattr(self, k)]
        if len(given) != 1:
            raise InputError(f"'{where}' needs exactly one of 'mosaic', 'files' or 'example', "
                             f"got {given or 'none'}")
        _positive(where, "pixel_size_angstrom", self.pixel_size_angstrom)
        if self.mosaic and self.pixel_size_angstrom is not None:
            raise InputError(f"'{where}.pixel_size_angstrom' applies to raw files; a mosaic "
                             "carries its pixel size in its NGFF metadata")
        for name in ("chunks", "shards"):
            if min(getattr(self, name)) <= 0:
                raise InputError(f"'{where}.{name}' must be two positive integers")


@dataclass
class DetectSection:
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
    model: str | None = field(default=None, metadata={"path": "maybe"})
    tta: bool = True
    device: str = "cpu"
    amp: bool = False
    column_spacing_angstrom: float | None = None
    detector_margin: int = 64
    labels: bool = False
    probabilities: bool = False
    labels_store: str | None = field(default=None, metadata={"path": True})

    @property
    def wants_labels(self) -> bool:
        return bool(self.labels or self.probabilities or self.labels_store)

    def check(self, where: str) -> None:
        _positive(where, "column_spacing_angstrom", self.column_spacing_angstrom)
        _positive(where, "detector_margin", self.detector_margin, allow_zero=True)
        if self.wants_labels and self.detector == "peaks":
            raise InputError(f"'{where}.labels' holds the FCN's class probabilities; the "
                             "peaks detector has none (set detector: fcn or auto)")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise InputError(f"'{where}.device' must be 'cpu' or 'cuda', got {self.device!r}")


@dataclass
class FitSection:
    """Gaussian refinement of every column (:func:`stemscale.fit.refine_positions`)."""

    window: int = 7
    model: Literal["gauss2d", "gauss2d_elliptic", "gauss2d_rotated"] = "gauss2d_elliptic"
    estimator: Literal["lse", "mle"] = "lse"
    snap_radius: int = 3
    tolerance: float = 1e-10
    max_iterations: int = 100

    def check(self, where: str) -> None:
        if self.window < 3 or self.window % 2 == 0:
            raise InputError(f"'{where}.window' must be an odd number of pixels >= 3, got {self.window}")
        _positive(where, "snap_radius", self.snap_radius, allow_zero=True)
        _positive(where, "tolerance", self.tolerance)
        _positive(where, "max_iterations", self.max_iterations)


@dataclass
class BlocksSection:
    """How the mosaic is cut: block core ``shape`` (default: the store's shards)."""

    shape: tuple[int, int] | None = None
    retries: int = 2

    def check(self, where: str) -> None:
        if self.shape is not None and min(self.shape) <= 0:
            raise InputError(f"'{where}.shape' must be two positive integers, got {list(self.shape)}")
        _positive(where, "retries", self.retries, allow_zero=True)


@dataclass
class ScoreSection:
    """Scoring against the simulator's truth (demo): match radii in pixels."""

    defect_radius_px: float = 7.5
    column_radius_px: float | None = None
    border_px: float = 8.0

    def check(self, where: str) -> None:
        _positive(where, "defect_radius_px", self.defect_radius_px)
        _positive(where, "column_radius_px", self.column_radius_px)
        _positive(where, "border_px", self.border_px, allow_zero=True)


@dataclass
class SpacingSection:
    """Metal-metal nearest-neighbour spacings in a pristine region (real frames).

    ``region_A`` is ``[x0, x1, y0, y1]`` in Å (default: the whole image);
    columns within ``exclude_radius_A`` of a substituted, missing or badly
    fitted column are left out; a chalcogen column is "substituted" when its
    fitted amplitude exceeds the chalcogen median by ``substitution_threshold``
    robust standard deviations; two columns are neighbours when their distance
    is within ``tolerance`` (relative) of the measured lattice constant.
    """

    enabled: bool = True
    region_A: tuple[float, float, float, float] | None = None
    exclude_radius_A: float = 4.0
    substitution_threshold: float = 4.0
    tolerance: float = 0.1
    edge_A: float = 3.0

    def check(self, where: str) -> None:
        if self.region_A is not None:
            x0, x1, y0, y1 = self.region_A
            if not (x1 > x0 and y1 > y0):
                raise InputError(f"'{where}.region_A' must be [x0, x1, y0, y1] with x1 > x0 and y1 > y0")
        _positive(where, "exclude_radius_A", self.exclude_radius_A, allow_zero=True)
        _positive(where, "substitution_threshold", self.substitution_threshold)
        if not 0 < self.tolerance < 0.15:
            raise InputError(f"'{where}.tolerance' must be in (0, 0.15) (beyond that chalcogen "
                             f"columns count as metal neighbours), got {self.tolerance}")
        _positive(where, "edge_A", self.edge_A, allow_zero=True)


@dataclass
class AverageSection:
    """Screening and class averaging (:mod:`stemscale.average`).

    ``defects``: ``detected`` averages the detector's defects; ``truth`` the
    simulation's true defects (demo only: a precision study independent of
    the detector); ``auto`` the detected ones, or on a simulated mosaic the
    true ones when the detector finds none (e.g. the peaks detector).
    ``options`` go unchanged to the averaging library's own configuration,
    which validates them.
    """

    enabled: bool = True
    defects: Literal["auto", "detected", "truth"] = "auto"
    classes: list[str] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def check(self, where: str) -> None:
        for cls in self.classes or []:
            if cls not in DEFECT_CLASSES:
                near = closest(cls, DEFECT_CLASSES)
                raise InputError(f"'{where}.classes' has unknown defect class {cls!r}"
                                 f"{f'; did you mean {near!r}?' if near else ''}")


@dataclass
class StrainSection:
    """Spacings and displacements in the class averages (:mod:`stemscale.strain`)."""

    enabled: bool = True
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReportSection:
    """The report: ``report.md`` (or ``.html``) with the numbers and figures.

    ``notes`` are printed in the report as they are (caveats about the data,
    e.g. a known calibration error).
    """

    enabled: bool = True
    format: Literal["markdown", "html"] = "markdown"
    figures: bool = True
    notes: list[str] = field(default_factory=list)


@dataclass
class ClusterSection:
    """Where it runs; ``--cluster`` on the command line overrides ``kind``.

    ``kind``: ``local``, ``cuda``, ``slurm``, ``kubernetes``, a scheduler
    address (``tcp://host:8786``) or a scheduler file (``scheduler.json``).
    ``workers``/``threads_per_worker``/``memory_limit`` size a local cluster;
    ``jobs`` is the number of SLURM jobs or Kubernetes workers to start;
    ``options`` go to :func:`stemscale.parallel.make_cluster`.
    """

    kind: str = "local"
    workers: int | None = None
    threads_per_worker: int = 1
    memory_limit: str | None = None
    jobs: int = 1
    options: dict[str, Any] = field(default_factory=dict)

    def check(self, where: str) -> None:
        from ..parallel import CLUSTER_KINDS

        k = self.kind
        if not (k in CLUSTER_KINDS or "://" in k or k.endswith(".json")):
            near = closest(k, CLUSTER_KINDS)
            raise InputError(
                f"'{where}.kind' must be one of {', '.join(CLUSTER_KINDS)}, a scheduler address "
                f"(tcp://host:8786) or a scheduler file (.json), got {k!r}"
                f"{f'; did you mean {near!r}?' if near else ''}")
        _positive(where, "workers", self.workers)
        _positive(where, "threads_per_worker", self.threads_per_worker)
        _positive(where, "jobs", self.jobs)


@dataclass
class OutputSection:
    """The run folder (default ``./stemscale-output/<name>-<date-time>``)."""

    dir: str | None = field(default=None, metadata={"path": True})
    overwrite: bool = False


# ----------------------------------------------------------------------------- kinds
#: Kind -> (section name -> section class) it accepts, and the sections it needs.
_COMMON = {"detect": DetectSection, "fit": FitSection, "blocks": BlocksSection,
           "report": ReportSection, "cluster": ClusterSection, "output": OutputSection}
KINDS: dict[str, dict[str, type]] = {
    "demo": {"simulate": SimulateSection, **_COMMON, "score": ScoreSection,
             "average": AverageSection, "strain": StrainSection},
    "defect_strain": {"input": InputSection, **_COMMON, "average": AverageSection,
                      "strain": StrainSection},
    "real_frame": {"input": InputSection, **_COMMON, "spacing": SpacingSection},
    "train_fcn": {},  # the detection package's own schema (TrainConfig)
}
_REQUIRED = {"defect_strain": ("input",), "real_frame": ("input",)}
_TOP = ("kind", "name", "description")


@dataclass
class PipelineConfig:
    """A validated pipeline: its kind, its sections and where it came from.

    Attributes
    ----------
    kind
        ``demo``, ``defect_strain`` or ``real_frame``.
    name
        Short name used for the default output folder.
    sections
        Section name -> validated section dataclass.
    source
        The YAML file (``None`` when built from a dict).
    overrides
        The ``--set`` assignments applied on top of the file.
    """

    kind: str
    name: str
    description: str = ""
    sections: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None
    overrides: list[str] = field(default_factory=list)

    def __getattr__(self, item: str) -> Any:
        # Sections read as attributes (config.detect.tta); only for names a kind has.
        sections = self.__dict__.get("sections", {})
        if item in sections:
            return sections[item]
        raise AttributeError(f"{type(self).__name__} of kind {self.__dict__.get('kind')!r} "
                             f"has no section {item!r}")

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration (every default filled in), JSON/YAML-friendly."""
        out: dict[str, Any] = {"kind": self.kind, "name": self.name}
        if self.description:
            out["description"] = self.description
        out.update({k: to_plain(v) for k, v in self.sections.items()})
        return out


@dataclass
class TrainPipeline:
    """A ``train_fcn`` pipeline: the detection package's :class:`TrainConfig`."""

    train: Any
    kind: str = "train_fcn"
    source: Path | None = None
    overrides: list[str] = field(default_factory=list)
    output: OutputSection = field(default_factory=OutputSection)

    @property
    def name(self) -> str:
        return f"train-{self.train.name}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.train.to_dict(), "output": to_plain(self.output)}


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
        node = out
        for depth, key in enumerate(keys[:-1]):
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                where = ".".join(keys[: depth + 1])
                raise InputError(f"--set {text!r}: '{where}' is a value, not a section")
            node = child
        node[keys[-1]] = value
    return out


# ----------------------------------------------------------------------------- loading
def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise MosaicNotFoundError(f"pipeline file '{path}' does not exist")
    if path.is_dir():
        raise InputError(f"'{path}' is a folder; give a pipeline YAML file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"pipeline file '{path}' is not valid YAML: {exc}") from None
    if data is None:
        raise InputError(f"pipeline file '{path}' is empty")
    if not isinstance(data, dict):
        raise InputError(f"pipeline file '{path}' must be a mapping of sections, got "
                         f"{type(data).__name__}")
    return data


def _train_fields() -> set[str]:
    from ..detect.config import TrainConfig

    return {f.name for f in dataclasses.fields(TrainConfig)}


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
    try:
        if kind == "train_fcn":
            return _train(data, source, base, list(overrides))
        return _pipeline(kind, data, source, base, list(overrides))
    except InputError as exc:
        if str(exc).startswith(label):
            raise
        raise type(exc)(f"{label}: {exc}") from None


def _pipeline(kind: str, data: dict[str, Any], source: Path | None, base: Path,
              overrides: list[str]) -> PipelineConfig:
    allowed = KINDS[kind]
    for key in data:
        if key in _TOP or key in allowed:
            continue
        others = [k for k, secs in KINDS.items() if key in secs]
        if others:
            raise InputError(f"section '{key}' is not used by kind '{kind}' (only by "
                             f"{', '.join(others)}); sections of {kind}: {', '.join(allowed)}")
        near = closest(str(key), [*allowed, *_TOP])
        raise InputError(f"unknown key '{key}'{f'; did you mean {near!r}?' if near else ''} "
                         f"(sections of {kind}: {', '.join(allowed)})")
    for name in _REQUIRED.get(kind, ()):
        if data.get(name) is None:
            raise InputError(f"kind '{kind}' needs an '{name}' section")
    name = data.get("name", kind)
    description = data.get("description", "")
    for key, value in (("name", name), ("description", description)):
        if not isinstance(value, str):
            raise InputError(f"'{key}' must be a string, got {value!r}")
    sections = {sec: build(cls, data.get(sec), sec, base) for sec, cls in allowed.items()}
    return PipelineConfig(kind=kind, name=name, description=description, sections=sections,
                          source=source, overrides=overrides)


def _train(data: dict[str, Any], source: Path | None, base: Path,
           overrides: list[str]) -> TrainPipeline:
    from ..detect.config import TrainConfig

    body = {k: v for k, v in data.items() if k not in ("kind", "output")}
    output = build(OutputSection, data.get("output"), "output", base)
    check_keys(TrainConfig, body)
    train = TrainConfig.from_dict(body, source=str(source or "pipeline"))
    return TrainPipeline(train=train, source=source, overrides=overrides, output=output)


def load_pipeline(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig | TrainPipeline:
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
    data = _read_yaml(path)
    if not overrides and data.get("kind") is None and set(data) <= _train_fields():
        from ..detect import TrainConfig, load_train_config  # the detection package's loader

        check_keys(TrainConfig, data)  # typos get a "did you mean" first
        return TrainPipeline(train=load_train_config(path), source=path)
    return from_dict(data, source=path, overrides=overrides)
