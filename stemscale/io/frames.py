"""Reading one raw microscope frame (TIFF, DM3/DM4, EMD) with its calibration.

:func:`read_frame` returns a :class:`Frame`: a 2-D array (lazy by default)
plus what stemscale needs to know about it, all in stemscale's units: pixel
size in Å, high tension in kV, convergence semi-angle in mrad, dose in
e⁻/Å², stage position in Å.

Where each number comes from
----------------------------
* TIFF (tifffile): pixel size from OME-XML (``PhysicalSizeX`` + unit), ImageJ
  (``unit`` + ``XResolution``) or FEI/Thermo Fisher tags (``Scan.PixelWidth``);
  plain TIFF resolution tags (usually 72 dpi, meaningless for STEM) are ignored,
  so such files need ``pixel_size``.  Stage position from OME ``Plane
  PositionX/Y`` or FEI ``Stage.StageX/Y``.
* DM3/DM4 (rosettasciio): pixel size from the image calibration; high tension
  from ``Microscope Info.Voltage``; stage position from ``Microscope Info.Stage
  Position`` (µm); dose from ``Probe Current (nA)`` x ``DigiScan.Sample Time``
  (µs) when both are non-zero.
* EMD (rosettasciio; Velox and Berkeley/NCEM variants): pixel size from the
  calibration; Velox high tension ``Optics.AccelerationVoltage`` (V),
  convergence ``Optics.BeamConvergence`` (rad), stage ``Stage.Position`` (m);
  Berkeley EMD: the ``microscope`` group attributes when they name a voltage
  or convergence angle.

Stage x/y are assumed to run along image x (columns) and y (rows); when the
scan is rotated against the stage, supply positions yourself.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping

import dask
import dask.array as da
import numpy as np

from ..errors import InputError, MetadataError, MosaicNotFoundError
from ..metadata import AcquisitionMetadata
from .units import is_uncalibrated, to_angstrom

__all__ = ["SUPPORTED_SUFFIXES", "Frame", "FrameStackError", "read_frame", "file_format"]

SUPPORTED_SUFFIXES = {".tif": "tiff", ".tiff": "tiff", ".dm3": "dm", ".dm4": "dm", ".emd": "emd"}
ELEMENTARY_CHARGE = 1.602176634e-19  # C


class FrameStackError(InputError):
    """A file holds a stack of frames where one 2-D image is expected.

    The message names :func:`read_frame`'s ``frame`` / ``reduce`` and the flags of
    ``stemscale ingest``; a command with other flags words its own advice after
    :attr:`what` (e.g. ``stemscale detect``, which takes ``--frame`` but not ``--sum``).
    """

    def __init__(self, where: str, n_frames: int, frame_shape: tuple[int, int]) -> None:
        self.where = where
        self.n_frames = int(n_frames)
        self.frame_shape = (int(frame_shape[0]), int(frame_shape[1]))
        super().__init__(
            f"{self.what}; pick one frame with --frame N (0..{self.n_frames - 1}; frame=N in "
            "Python) or add them with --sum (reduce='sum')"
        )

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across Dask workers
        return (type(self), (self.where, self.n_frames, self.frame_shape))

    @property
    def what(self) -> str:
        """What is wrong, without advice: the file, the number and size of its frames."""
        h, w = self.frame_shape
        return (f"'{self.where}' holds a stack of {self.n_frames} frames of {h} x {w} px "
                "(3-D data) where one 2-D image is expected")


@dataclass(frozen=True)
class Frame:
    """One 2-D frame and its calibration.

    Attributes
    ----------
    data
        2-D array (y, x): numpy, or Dask when read lazily.
    pixel_size_angstrom
        Pixel size in Å.
    source
        The file path.
    file_format
        ``"tiff"``, ``"dm"`` or ``"emd"``.
    pixel_size_origin
        Where the pixel size came from (a metadata field or ``"user"``).
    high_tension_kv, convergence_mrad, dose_e_per_a2
        Acquisition parameters when the file holds them.
    position_angstrom
        Stage position (y, x) in Å when the file holds it.
    title
        The image's title in the file (e.g. the detector name).
    extra
        Anything else worth keeping (JSON-serialisable).
    """

    data: Any
    pixel_size_angstrom: float
    source: str
    file_format: str
    pixel_size_origin: str
    high_tension_kv: float | None = None
    convergence_mrad: float | None = None
    dose_e_per_a2: float | None = None
    position_angstrom: tuple[float, float] | None = None
    title: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(int(n) for n in self.data.shape)  # type: ignore[return-value]

    def metadata(self, **overrides: Any) -> AcquisitionMetadata:
        """The frame's :class:`~stemscale.metadata.AcquisitionMetadata`."""
        values: dict[str, Any] = dict(
            pixel_size_angstrom=self.pixel_size_angstrom,
            high_tension_kv=self.high_tension_kv,
            convergence_mrad=self.convergence_mrad,
            dose_e_per_a2=self.dose_e_per_a2,
            source=self.source,
            extra={"pixel_size_origin": self.pixel_size_origin, "file_format": self.file_format,
                   **({"title": self.title} if self.title else {}), **self.extra},
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return AcquisitionMetadata(**values)


@dataclass
class _Raw:
    """What a format reader found, before frame selection and checks."""

    data: Any  # n-D, the last two axes are (y, x)
    pixel_size: float | None
    pixel_size_origin: str
    high_tension_kv: float | None = None
    convergence_mrad: float | None = None
    dose_e_per_a2: float | None = None
    position: tuple[float, float] | None = None
    title: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def file_format(path: str | os.PathLike[str]) -> str:
    """The format name for a file suffix, or an :class:`InputError` listing the supported ones."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise InputError(
            f"'{os.fspath(path)}': unsupported file type '{suffix or '(none)'}'; "
            f"stemscale ingests {', '.join(sorted(SUPPORTED_SUFFIXES))}"
        )
    return SUPPORTED_SUFFIXES[suffix]


def read_frame(
    path: str | os.PathLike[str],
    *,
    pixel_size: float | None = None,
    frame: int | None = None,
    reduce: str | None = None,
    signal: str | None = None,
    lazy: bool = True,
) -> Frame:
    """Read one 2-D frame and its calibration from a TIFF, DM3/DM4 or EMD file.

    Parameters
    ----------
    path
        The file.
    pixel_size
        Pixel size in Å.  Required when the file has no calibration; when it
        has one, this value overrides it (the file's value is kept in ``extra``).
    frame
        For a stack (3-D data): the index of the frame to take.
    reduce
        For a stack: ``"sum"`` or ``"mean"`` over its frames instead of picking one.
    signal
        For files holding several images (e.g. Velox HAADF + BF): a substring of
        the wanted image's title.  Default: the only image, else the HAADF one.
    lazy
        Return Dask data (read when computed) instead of numpy.

    Returns
    -------
    Frame

    Raises
    ------
    MosaicNotFoundError
        The file does not exist.
    InputError
        Unsupported or unreadable file, stack without ``frame``/``reduce``,
        wrong dimensionality, invalid ``pixel_size``.
    MetadataError
        No pixel size in the file and none given.
    """
    where = os.fspath(path)
    if not os.path.exists(where):
        raise MosaicNotFoundError(f"'{where}' does not exist")
    if os.path.isdir(where):
        raise InputError(f"'{where}' is a directory; expected a TIFF, DM3/DM4 or EMD file")
    if pixel_size is not None:
        pixel_size = _check_user_pixel_size(pixel_size)
    if reduce is not None and reduce not in ("sum", "mean"):
        raise InputError(f"reduce must be 'sum' or 'mean', got {reduce!r}")
    if reduce is not None and frame is not None:
        raise InputError("give either frame (pick one frame) or reduce (combine them), not both")
    fmt = file_format(where)
    reader = {"tiff": _read_tiff, "dm": _read_dm, "emd": _read_emd}[fmt]
    raw = reader(where, lazy=lazy, signal=signal)
    data = _select(raw.data, where, frame, reduce)
    extra = dict(raw.extra)
    if pixel_size is None:
        if raw.pixel_size is None:
            raise MetadataError(
                f"'{where}' has no pixel size in its metadata ({raw.pixel_size_origin}); "
                "pass it in Å per pixel: --pixel-size 0.2074 on the command line, "
                "pixel_size=0.2074 in Python"
            )
        pixel_size, origin = raw.pixel_size, raw.pixel_size_origin
    else:
        origin = "user"
        if raw.pixel_size is not None:
            extra["file_pixel_size_angstrom"] = raw.pixel_size
    if reduce is not None:
        extra["frames_combined"] = f"{reduce} of {raw.data.shape[0]}"
    elif frame is not None and raw.data.ndim == 3:
        extra["frame_index"] = int(frame)
    dose = raw.dose_e_per_a2
    if dose is not None and reduce == "sum":
        dose *= raw.data.shape[0]
    return Frame(
        data=data if lazy else np.asarray(data),
        pixel_size_angstrom=float(pixel_size),
        source=where,
        file_format=fmt,
        pixel_size_origin=origin,
        high_tension_kv=raw.high_tension_kv,
        convergence_mrad=raw.convergence_mrad,
        dose_e_per_a2=dose,
        position_angstrom=raw.position,
        title=raw.title,
        extra=extra,
    )


def with_position(frame: Frame, position: tuple[float, float] | None) -> Frame:
    """A copy of ``frame`` with another stage position (Å, (y, x))."""
    return replace(frame, position_angstrom=position)


# --------------------------------------------------------------------------- checks


def _check_user_pixel_size(value: Any) -> float:
    try:
        size = float(value)
    except (TypeError, ValueError):
        raise InputError(f"pixel size must be a number of Å per pixel, got {value!r}") from None
    if not math.isfinite(size) or size <= 0:
        raise InputError(
            f"pixel size must be a positive, finite number of Å per pixel, got {value!r}"
        )
    return size


def _select(data: Any, where: str, frame: int | None, reduce: str | None) -> Any:
    """Reduce ``data`` to 2-D (y, x) as asked, with clear messages otherwise."""
    shape = tuple(data.shape)
    if len(shape) == 2:
        # Nothing to pick from; frame 0 is accepted so scripts can pass it uniformly.
        if frame not in (None, 0, -1):
            raise InputError(f"'{where}' holds a single 2-D frame; frame {frame} does not exist")
        return data
    if len(shape) == 3:
        n = shape[0]
        if frame is not None:
            if not -n <= int(frame) < n:
                raise InputError(
                    f"'{where}' holds {n} frames (0..{n - 1}); frame {frame} does not exist"
                )
            return data[int(frame)]
        if reduce == "sum":
            # float64 accumulation avoids integer overflow; stored as float32 later.
            return data.astype(np.float64).sum(axis=0).astype(np.float32)
        if reduce == "mean":
            return data.astype(np.float64).mean(axis=0).astype(np.float32)
        raise FrameStackError(where, n, (shape[1], shape[2]))
    raise InputError(
        f"'{where}' holds {len(shape)}-D data of shape {shape}; stemscale ingests 2-D images "
        "or 3-D stacks of them (4-D STEM / spectrum images are not supported)"
    )


def _dose(current_a: Any, dwell_s: Any, pixel_size: float | None) -> float | None:
    """Incident dose in e⁻/Å² from probe current (A), dwell time (s) and pixel size (Å)."""
    try:
        current, dwell = float(current_a), float(dwell_s)
    except (TypeError, ValueError):
        return None
    if not pixel_size or not (current > 0 and dwell > 0) or not math.isfinite(current * dwell):
        return None
    return current * dwell / ELEMENTARY_CHARGE / pixel_size**2


def _get(tree: Any, dotted: str | Iterable[str]) -> Any:
    keys = dotted.split(".") if isinstance(dotted, str) else list(dotted)
    node = tree
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _number(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


# --------------------------------------------------------------------------- TIFF


def _read_tiff(where: str, *, lazy: bool, signal: str | None) -> _Raw:
    import tifffile

    try:
        with tifffile.TiffFile(where) as tif:
            series = tif.series[0]
            shape, axes, dtype = tuple(series.shape), series.axes, series.dtype
            n_series = len(tif.series)
            calibration = _tiff_calibration(tif, where)
    except (tifffile.TiffFileError, ValueError, OSError, IndexError, KeyError) as exc:
        raise InputError(
            f"cannot read '{where}' as a TIFF file ({type(exc).__name__}: {exc})"
        ) from None
    if axes.endswith("S") and shape[-1] in (3, 4):
        raise InputError(
            f"'{where}' is an RGB/colour TIFF (shape {shape}); expected a grayscale detector "
            "image (export the raw intensities, not a screenshot)"
        )
    if lazy:
        data = da.from_delayed(
            dask.delayed(tifffile.imread)(where, series=0), shape=shape, dtype=dtype
        )
    else:
        data = tifffile.imread(where, series=0)
    # Singleton axes (one channel, one time point) carry no information.
    keep = [i for i, n in enumerate(shape) if n != 1 or i >= len(shape) - 2]
    if len(keep) != len(shape):
        data = data.reshape(tuple(shape[i] for i in keep))
    pixel_size, origin, position, ht, extra = calibration
    if n_series > 1:
        extra["tiff_series"] = n_series
    return _Raw(data, pixel_size, origin, high_tension_kv=ht, position=position, extra=extra)


def _tiff_calibration(tif: Any, where: str):
    """(pixel size Å | None, origin, position Å | None, high tension kV | None, extra)."""
    extra: dict[str, Any] = {}
    if tif.is_ome and tif.ome_metadata:
        found = _ome_calibration(tif.ome_metadata, where)
        if found[0] is not None:
            return (*found, None, extra)
    if tif.is_imagej and tif.imagej_metadata:
        unit = tif.imagej_metadata.get("unit")
        tags = tif.pages[0].tags
        if unit is not None and not is_uncalibrated(unit) and "XResolution" in tags:
            num, den = tags["XResolution"].value
            if num > 0 and den > 0:
                size = to_angstrom(den / num, unit, f"'{where}' ImageJ calibration")
                return size, "ImageJ metadata (unit + XResolution)", None, None, extra
    fei = getattr(tif, "fei_metadata", None)
    if fei:
        width = _get(fei, "Scan.PixelWidth")
        if _number(width):
            size = to_angstrom(width, "m", f"'{where}' FEI Scan.PixelWidth")
            position = None
            sx, sy = _number(_get(fei, "Stage.StageX")), _number(_get(fei, "Stage.StageY"))
            if sx is not None and sy is not None:
                position = (sy * 1e10, sx * 1e10)
            hv = _number(_get(fei, "EBeam.HV"))
            return size, "FEI/Thermo Fisher TIFF tags (Scan.PixelWidth)", position, (
                hv / 1e3 if hv else None
            ), extra
    return None, "no OME, ImageJ or FEI calibration found", None, None, extra


def _ome_calibration(xml: str, where: str):
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None, "unparseable OME-XML", None
    pixels = next((e for e in root.iter() if e.tag.endswith("}Pixels") or e.tag == "Pixels"), None)
    if pixels is None or pixels.get("PhysicalSizeX") is None:
        return None, "OME-XML without PhysicalSizeX", None
    size = to_angstrom(
        pixels.get("PhysicalSizeX"), pixels.get("PhysicalSizeXUnit", "µm"),
        f"'{where}' OME PhysicalSizeX",
    )
    position = None
    plane = next((e for e in pixels if e.tag.endswith("}Plane") or e.tag == "Plane"), None)
    if plane is not None and None not in (plane.get("PositionX"), plane.get("PositionY")):
        unit_x = plane.get("PositionXUnit", "µm")
        unit_y = plane.get("PositionYUnit", "µm")
        position = (
            to_angstrom(plane.get("PositionY"), unit_y, f"'{where}' OME PositionY"),
            to_angstrom(plane.get("PositionX"), unit_x, f"'{where}' OME PositionX"),
        )
    return size, "OME-XML PhysicalSizeX", position


# --------------------------------------------------------------------------- rosettasciio


def _pick_image(signals: list[dict[str, Any]], where: str, signal: str | None) -> dict[str, Any]:
    images = [s for s in signals if sum(not a.get("navigate", False) for a in s["axes"]) == 2]
    titles = [_get(s, "metadata.General.title") or f"#{i}" for i, s in enumerate(images)]
    if not images:
        raise InputError(
            f"'{where}' holds no 2-D image (only spectra or other signals); nothing to ingest"
        )
    if signal is not None:
        hits = [s for s, t in zip(images, titles) if signal.lower() in str(t).lower()]
        if not hits:
            raise InputError(
                f"'{where}' has no image titled like {signal!r}; its images are {titles}"
            )
        return hits[0]
    if len(images) == 1:
        return images[0]
    haadf = [s for s, t in zip(images, titles) if "haadf" in str(t).lower()]
    if haadf:
        return haadf[0]
    raise InputError(
        f"'{where}' holds several images {titles} and none is called HAADF; choose one with "
        "--signal TITLE (signal='TITLE' in Python)"
    )


def _rsciio_layout(sig: dict[str, Any], where: str) -> tuple[Any, float | None, str]:
    """Data with signal axes last (y, x), and the pixel size in Å from the axes."""
    axes = sorted(sig["axes"], key=lambda a: a.get("index_in_array", 0))
    data = sig["data"]
    nav = [i for i, a in enumerate(axes) if a.get("navigate", False)]
    sig_axes = [i for i, a in enumerate(axes) if not a.get("navigate", False)]
    order = nav + sig_axes
    if order != list(range(len(axes))):
        data = data.transpose(order)
    y_axis, x_axis = axes[sig_axes[0]], axes[sig_axes[1]]
    unit = x_axis.get("units")
    scale = x_axis.get("scale")
    if is_uncalibrated(unit) or scale is None:
        return data, None, f"uncalibrated axes (units {unit!r})"
    size_x = to_angstrom(scale, unit, f"'{where}' x-axis calibration")
    size_y = to_angstrom(y_axis.get("scale"), y_axis.get("units"), f"'{where}' y-axis calibration")
    if not math.isclose(size_x, size_y, rel_tol=1e-4):
        raise MetadataError(
            f"'{where}' has non-square pixels ({size_y:.6g} x {size_x:.6g} Å); stemscale needs "
            "square pixels (resample the image first)"
        )
    if size_x <= 0:
        raise MetadataError(
            f"'{where}' has a non-positive pixel size ({size_x} Å) in its calibration"
        )
    return data, size_x, "file calibration"


def _mapped(sig: dict[str, Any]) -> dict[str, Any]:
    """Apply rosettasciio's own mapping (original tag -> HyperSpy metadata path)."""
    out: dict[str, Any] = {}
    om = sig.get("original_metadata") or {}
    for source, (target, func) in (sig.get("mapping") or {}).items():
        value = _get(om, source)
        if value is None:
            continue
        try:
            out[target] = func(value) if func else value
        except Exception:  # a tag in an unexpected format is simply not used
            continue
    return out


def _first(mapped: Mapping[str, Any], suffix: str) -> float | None:
    for key, value in mapped.items():
        if key.endswith(suffix):
            number = _number(value)
            if number is not None:
                return number
    return None


def _find_tag(tree: Any, suffix: str) -> Any:
    """The value of the first key path in ``tree`` ending with ``suffix`` (dotted)."""
    stack = [("", tree)]
    while stack:
        prefix, node = stack.pop()
        if isinstance(node, Mapping):
            for key, value in node.items():
                path = f"{prefix}.{key}" if prefix else str(key)
                if path.endswith(suffix):
                    return value
                stack.append((path, value))
    return None


def _rsciio_read(module: str, where: str, kind: str, **kwargs: Any) -> list[dict[str, Any]]:
    import importlib

    try:
        reader = importlib.import_module(f"rsciio.{module}").file_reader
    except ModuleNotFoundError as exc:
        raise InputError(
            f"reading {kind} files needs the Python package '{exc.name}', which is not "
            f"installed (pip install {exc.name})"
        ) from None
    try:
        return reader(where, **kwargs)
    except Exception as exc:  # the readers raise many types for damaged files
        if kwargs.get("lazy"):
            # Some writers store contiguous (unchunked) HDF5 datasets that the lazy
            # readers cannot wrap; a frame fits in memory, so read it eagerly.
            try:
                return reader(where, **{**kwargs, "lazy": False})
            except Exception:
                pass
        raise InputError(
            f"cannot read '{where}' as a {kind} file ({type(exc).__name__}: {exc})"
        ) from None


def _read_dm(where: str, *, lazy: bool, signal: str | None) -> _Raw:
    signals = _rsciio_read("digitalmicrograph", where, "DigitalMicrograph", lazy=lazy)
    sig = _pick_image(signals, where, signal)
    data, pixel_size, origin = _rsciio_layout(sig, where)
    om = sig.get("original_metadata") or {}
    mapped = _mapped(sig)
    ht = _first(mapped, ".beam_energy")
    conv = _first(mapped, ".convergence_angle")
    if conv is None:
        conv = _number(_find_tag(om, "Convergence Semi-angle (mrad)")) or _number(
            _find_tag(om, "Microscope Info.STEM Convergence Semi-angle (mrad)")
        )
    position = None
    sx = _number(_find_tag(om, "Stage Position.Stage X"))
    sy = _number(_find_tag(om, "Stage Position.Stage Y"))
    if sx is not None and sy is not None:
        position = (sy * 1e4, sx * 1e4)  # DigitalMicrograph stage positions are in µm
    current_na = _number(_find_tag(om, "Microscope Info.Probe Current (nA)"))
    dwell_us = _number(_find_tag(om, "DigiScan.Sample Time"))
    dose = None
    if current_na is not None and dwell_us is not None:
        dose = _dose(current_na * 1e-9, dwell_us * 1e-6, pixel_size)
    extra = {}
    detector = _find_tag(om, "Temp-Tags.Detector")
    if isinstance(detector, str):
        extra["detector"] = detector
    return _Raw(data, pixel_size, "DigitalMicrograph calibration" if pixel_size else origin,
                high_tension_kv=ht, convergence_mrad=conv, dose_e_per_a2=dose, position=position,
                title=_get(sig, "metadata.General.title"), extra=extra)


def _read_emd(where: str, *, lazy: bool, signal: str | None) -> _Raw:
    signals = _rsciio_read("emd", where, "EMD", lazy=lazy, select_type="images")
    sig = _pick_image(signals, where, signal)
    data, pixel_size, origin = _rsciio_layout(sig, where)
    om = sig.get("original_metadata") or {}
    mapped = _mapped(sig)
    ht = _first(mapped, ".beam_energy")
    conv = _first(mapped, ".convergence_angle")
    position = None
    extra: dict[str, Any] = {}
    if _get(om, "Optics") is not None:  # Velox
        extra["emd_variant"] = "Velox"
        if ht is None:
            volts = _number(_get(om, "Optics.AccelerationVoltage"))
            ht = volts / 1e3 if volts else None
        if conv is None:
            rad = _number(_get(om, "Optics.BeamConvergence"))
            conv = rad * 1e3 if rad else None
        sx, sy = _number(_get(om, "Stage.Position.x")), _number(_get(om, "Stage.Position.y"))
        if sx is not None and sy is not None:
            position = (sy * 1e10, sx * 1e10)  # Velox stage positions are in metres
        dose = _dose(_get(om, "Optics.LastMeasuredScreenCurrent"), _get(om, "Scan.DwellTime"),
                     pixel_size)
    else:  # Berkeley / NCEM EMD: free-form 'microscope' attributes
        extra["emd_variant"] = "Berkeley"
        micro = om.get("microscope") or {}
        for key, value in micro.items():
            name, number = str(key).lower(), _number(value)
            if number is None:
                continue
            if ht is None and any(k in name for k in ("voltage", "high_tension", "e0")):
                ht = number / 1e3 if number > 1e3 else number
            if conv is None and "convergence" in name:
                conv = number * 1e3 if number < 1 else number
        dose = None
    return _Raw(data, pixel_size, "EMD calibration" if pixel_size else origin,
                high_tension_kv=ht, convergence_mrad=conv, dose_e_per_a2=dose, position=position,
                title=_get(sig, "metadata.General.title"), extra=extra)
