"""Shipped FCN weights: JSON manifests, sha256 verification and a per-process cache.

A model travels as a :class:`ModelRef` (manifest path + weights digest), which
is tiny and picklable, so Dask task graphs never carry the weights
themselves.  Each process loads a given (digest, device, dtype) once, with
``torch.load(weights_only=True)`` after checking the file's sha256, and keeps
it in a lock-guarded cache.  Nothing here touches CUDA until a CUDA device is
explicitly requested.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, StemscaleError
from .model import ModelConfig, ResUNet

__all__ = [
    "model_for_material",
    "WEIGHTS_DIR",
    "DEFAULT_MODEL",
    "WeightsIntegrityError",
    "ModelManifest",
    "ModelRef",
    "LoadedModel",
    "available_models",
    "model_ref",
    "get_model",
    "sha256_file",
    "write_model",
    "clear_cache",
]

#: Folder of the weights and manifests shipped inside the package.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

#: Name of the model used when none is given.
DEFAULT_MODEL = "wse2"

MANIFEST_FORMAT = 1


class WeightsIntegrityError(StemscaleError, RuntimeError):
    """A weights file does not match the sha256 digest of its manifest."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class ModelManifest:
    """What a weights file is: network shape, classes, pixel size, provenance.

    Parameters
    ----------
    name
        Short name (``"wse2"``); the manifest file is ``<name>.json``.
    weights_file
        File name of the state dict, relative to the manifest.
    sha256
        Hex digest of the weights file.
    model
        :class:`ModelConfig` as a dict.
    pixel_size_angstrom
        Pixel size the network was trained at, in Å.
    material
        Material of the training simulations (``"WSe2"``).
    training
        The training configuration and run statistics.
    metrics
        Validation / evaluation numbers recorded at export.
    """

    name: str
    weights_file: str
    sha256: str
    model: dict[str, Any]
    pixel_size_angstrom: float
    material: str = "WSe2"
    normalisation: str = "standardise (zero mean, unit variance) over the whole image"
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    created: str | None = None
    format: int = MANIFEST_FORMAT

    @property
    def config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.model)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.config.classes

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "name": self.name,
            "weights_file": self.weights_file,
            "sha256": self.sha256,
            "classes": list(self.classes),
            "pixel_size_angstrom": self.pixel_size_angstrom,
            "material": self.material,
            "normalisation": self.normalisation,
            "model": self.model,
            "training": self.training,
            "metrics": self.metrics,
            "created": self.created,
        }

    @classmethod
    def read(cls, path: str | Path) -> "ModelManifest":
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(f"model manifest {path} does not exist") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"model manifest {path} is not valid JSON: {exc}") from None
        missing = {"name", "weights_file", "sha256", "model", "pixel_size_angstrom"} - set(d)
        if missing:
            raise InputError(f"model manifest {path} lacks {', '.join(sorted(missing))}")
        if d.get("format", MANIFEST_FORMAT) > MANIFEST_FORMAT:
            raise InputError(
                f"model manifest {path} has format {d['format']}; this stemscale reads "
                f"format <= {MANIFEST_FORMAT}, upgrade stemscale"
            )
        d.pop("classes", None)  # derived from model
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class ModelRef:
    """A picklable pointer to a model: manifest path and the weights digest.

    Pass this (not the network) to Dask tasks; :func:`get_model` turns it
    into a network once per process.
    """

    manifest_path: str
    sha256: str

    @property
    def manifest(self) -> ModelManifest:
        return ModelManifest.read(self.manifest_path)

    @property
    def weights_path(self) -> Path:
        return Path(self.manifest_path).parent / self.manifest.weights_file


def available_models() -> list[str]:
    """Names of the models shipped with the package."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.json"))


def model_for_material(material: str | None) -> str | None:
    """Name of the shipped model trained for ``material`` (default WSe2), or ``None``.

    Parameters
    ----------
    material
        Material name as stored with a mosaic (e.g. ``"MoS2"``).
    """
    wanted = material or "WSe2"
    for name in available_models():
        try:
            manifest = ModelManifest.read(WEIGHTS_DIR / f"{name}.json")
        except Exception:  # a damaged manifest is reported when that model is used
            continue
        if manifest.material == wanted:
            return name
    return None


def model_ref(model: str | Path | ModelRef | None = None) -> ModelRef:
    """Resolve a shipped model name, a manifest path or a ref to a :class:`ModelRef`."""
    if isinstance(model, ModelRef):
        return model
    if model is None:
        model = DEFAULT_MODEL
    path = Path(model)
    if path.suffix != ".json":
        shipped = WEIGHTS_DIR / f"{model}.json"
        if not shipped.exists():
            raise InputError(
                f"unknown model {str(model)!r}; shipped models: "
                f"{', '.join(available_models()) or '(none)'}, or give a manifest .json path"
            )
        path = shipped
    manifest = ModelManifest.read(path)
    return ModelRef(str(path.resolve()), manifest.sha256)


@dataclass
class LoadedModel:
    """A network in eval mode on a device, with its manifest."""

    network: ResUNet
    manifest: ModelManifest
    device: torch.device
    dtype: torch.dtype

    @property
    def classes(self) -> tuple[str, ...]:
        return self.manifest.classes

    @property
    def pixel_size_angstrom(self) -> float:
        return float(self.manifest.pixel_size_angstrom)


_CACHE: dict[tuple[str, str, str], LoadedModel] = {}
_LOCK = threading.Lock()


def _resolve_device(device: str | torch.device | None) -> torch.device:
    dev = torch.device(device if device is not None else "cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {str(dev)!r} requested but CUDA is not available here")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def get_model(
    model: str | Path | ModelRef | None = None,
    device: str | torch.device | None = "cpu",
    dtype: torch.dtype = torch.float32,
) -> LoadedModel:
    """Load (once per process) and return a verified network in eval mode.

    Parameters
    ----------
    model
        Shipped model name, manifest path or :class:`ModelRef` (default: the
        shipped WSe2 model).
    device
        ``"cpu"`` or a CUDA device.
    dtype
        Parameter dtype (keep float32; use autocast for mixed precision).

    Raises
    ------
    WeightsIntegrityError
        If the weights file's sha256 differs from the manifest's.
    """
    ref = model_ref(model)
    dev = _resolve_device(device)
    key = (ref.sha256, str(dev), str(dtype))
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            return hit
        manifest = ref.manifest
        wpath = ref.weights_path
        if not wpath.exists():
            raise InputError(f"weights file {wpath} named by {ref.manifest_path} does not exist")
        digest = sha256_file(wpath)
        if digest != ref.sha256 or digest != manifest.sha256:
            raise WeightsIntegrityError(
                f"weights file {wpath} has sha256 {digest}, but its manifest "
                f"{ref.manifest_path} expects {manifest.sha256}: the file is corrupt or was "
                "modified; refusing to load it (reinstall stemscale or re-export the model)"
            )
        state = torch.load(wpath, map_location="cpu", weights_only=True)
        net = ResUNet(manifest.config)
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise InputError(
                f"weights {wpath} do not fit the network described by {ref.manifest_path}: {exc}"
            ) from None
        net.to(device=dev, dtype=dtype).eval()
        for p in net.parameters():
            p.requires_grad_(False)
        loaded = LoadedModel(net, manifest, dev, dtype)
        _CACHE[key] = loaded
        return loaded


def clear_cache() -> None:
    """Forget every cached network (tests, or to free GPU memory)."""
    with _LOCK:
        _CACHE.clear()


def write_model(
    network: ResUNet,
    directory: str | Path,
    name: str,
    *,
    pixel_size_angstrom: float,
    material: str,
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> ModelRef:
    """Save a network's weights and a manifest ``<name>.json`` next to them."""
    from ..metadata import provenance

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    wfile = f"{name}.pt"
    state = {k: v.detach().to("cpu", torch.float32).clone() if v.is_floating_point()
             else v.detach().cpu().clone() for k, v in network.state_dict().items()}
    tmp = directory / (wfile + ".tmp")
    torch.save(state, tmp)
    tmp.replace(directory / wfile)
    manifest = ModelManifest(
        name=name,
        weights_file=wfile,
        sha256=sha256_file(directory / wfile),
        model=network.config.to_dict(),
        pixel_size_angstrom=float(pixel_size_angstrom),
        material=material,
        training=training or {},
        metrics=metrics or {},
        created=provenance()["created"],
    )
    mpath = directory / f"{name}.json"
    mpath.write_text(json.dumps(manifest.to_dict(), indent=2, default=str) + "\n")
    return ModelRef(str(mpath.resolve()), manifest.sha256)
