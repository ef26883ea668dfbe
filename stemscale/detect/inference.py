"""Tiled FCN inference on images of any size.

The image is standardised, padded with its mean (zero after standardising; a
reflection would invent atoms beyond the edge), cut into overlapping square
windows, classified (optionally under the 8 dihedral transforms, averaged),
and the per-class probabilities are stitched back with a smooth weight that
favours each window's centre.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import InputError
from .weights import LoadedModel

__all__ = [
    "standardise",
    "window_starts",
    "blend_weight",
    "dihedral",
    "dihedral_inverse",
    "predict_windows",
    "predict_proba",
    "choose_batch_size",
    "check_pixel_size",
    "resample_image",
]

#: Pixel-size mismatch tolerated without resampling (relative).
PIXEL_SIZE_TOLERANCE = 0.10


def standardise(image: np.ndarray, stats: tuple[float, float] | None = None) -> np.ndarray:
    """Return ``(image - mean) / std`` as float32.

    Parameters
    ----------
    image
        2-D array.
    stats
        ``(mean, std)`` to use instead of the image's own (e.g. mosaic-wide
        statistics, so every Dask block is normalised the same way).
    """
    img = np.asarray(image, dtype=np.float32)
    if stats is None:
        mean = float(img.mean(dtype=np.float64))
        std = float(img.std(dtype=np.float64))
    else:
        mean, std = (float(v) for v in stats)
    if not math.isfinite(std) or std <= 0:
        raise InputError("image is constant (zero standard deviation); nothing to detect")
    return (img - np.float32(mean)) / np.float32(std)


def check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Validate a 2-D finite image and return it as an array."""
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise InputError(f"{name} must be 2-D (rows, cols), got shape {arr.shape}")
    if arr.size == 0 or min(arr.shape) < 1:
        raise InputError(f"{name} is empty (shape {arr.shape})")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise InputError(f"{name} must be real numbers, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} contains NaN or infinite values")
    return arr


def window_starts(length: int, window: int, overlap: int) -> list[int]:
    """Start offsets of windows of size ``window`` covering ``[0, length)``.

    ``length`` must be >= ``window`` (pad first).  Consecutive windows
    overlap by at least ``overlap`` pixels; the last one ends at ``length``.
    """
    if length < window:
        raise ValueError(f"length {length} < window {window}")
    step = window - overlap
    if step <= 0:
        raise InputError(f"overlap ({overlap}) must be smaller than the window ({window})")
    n = 1 + math.ceil((length - window) / step)
    if n == 1:
        return [0]
    # spread the windows evenly so every overlap is about equal
    return [int(round(i * (length - window) / (n - 1))) for i in range(n)]


def blend_weight(window: int, ramp: int, floor: float = 1e-3) -> np.ndarray:
    """A separable 2-D weight: 1 in the centre, cosine ramps to ``floor`` over ``ramp`` px."""
    w = np.ones(window, dtype=np.float64)
    if ramp > 0:
        t = (np.arange(ramp) + 0.5) / ramp
        r = floor + (1 - floor) * 0.5 * (1 - np.cos(np.pi * t))
        w[:ramp] = r
        w[-ramp:] = r[::-1]
    return np.outer(w, w).astype(np.float32)


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """Apply dihedral transform ``k`` (0..7) to the last two axes: rot90 ``k % 4`` after a flip if ``k >= 4``."""
    if k >= 4:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k % 4, dims=(-2, -1))


def dihedral_inverse(x: torch.Tensor, k: int) -> torch.Tensor:
    """Undo :func:`dihedral` ``k``."""
    x = torch.rot90(x, -(k % 4), dims=(-2, -1))
    if k >= 4:
        x = torch.flip(x, dims=(-1,))
    return x


def choose_batch_size(
    loaded: LoadedModel, window: int, device: torch.device, amp: bool = False,
    cpu_batch: int = 4, fraction: float = 0.5,
) -> int:
    """Windows per forward pass: fixed on CPU, from free memory on CUDA."""
    if device.type != "cuda":
        return cpu_batch
    free, _total = torch.cuda.mem_get_info(device)
    cfg = loaded.manifest.config
    bytes_per = 2 if amp else 4
    # activations alive at once in an eval pass: ~12 maps of base width at full
    # resolution (the deeper levels add about as much again in total)
    per_window = 24 * cfg.base_filters * window * window * bytes_per + 4 * cfg.n_classes * window**2
    return int(max(1, min(512, fraction * free // per_window)))


def predict_windows(
    loaded: LoadedModel, windows: torch.Tensor, *, tta: bool = False, amp: bool = False,
) -> torch.Tensor:
    """Class probabilities (N, C, h, w) for standardised windows (N, 1, h, w) on the model's device."""
    net = loaded.network
    ks: Sequence[int] = range(8) if tta else (0,)
    out: torch.Tensor | None = None
    use_amp = amp and windows.device.type == "cuda"
    with torch.inference_mode():
        for k in ks:
            x = dihedral(windows, k) if k else windows
            if use_amp:
                with torch.autocast(device_type="cuda", dtype=torch.float16):
                    logits = net(x)
            else:
                logits = net(x)
            p = torch.softmax(logits.float(), dim=1)
            p = dihedral_inverse(p, k) if k else p
            out = p if out is None else out + p
    if out is None:  # pragma: no cover - ks always holds at least the identity
        raise RuntimeError("no dihedral transform was evaluated")
    return out / len(ks)


def predict_proba(
    image: np.ndarray,
    loaded: LoadedModel,
    *,
    tta: bool = False,
    window: int = 256,
    overlap: int = 64,
    batch_size: int | None = None,
    amp: bool = False,
    stats: tuple[float, float] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Stitched per-class probabilities of shape (n_classes, H, W), float32.

    Parameters
    ----------
    image
        2-D image at the model's pixel size (see :func:`resample_image`).
    loaded
        Network from :func:`stemscale.detect.get_model`.
    tta
        Average over the 8 dihedral transforms (8x the work).
    window, overlap
        Window side and minimum overlap in pixels; ``window`` must be a
        multiple of ``2**depth`` of the network.
    batch_size
        Windows per forward pass (default: from free memory on CUDA, 4 on CPU).
    amp
        float16 autocast on CUDA (ignored on CPU).
    stats
        ``(mean, std)`` for standardisation (default: the image's own).
    progress
        Called as ``progress(done, total)`` with the number of windows classified so far
        and in all: once with ``done = 0`` before the first batch, then after each batch.
    """
    img = check_image(image)
    cfg = loaded.manifest.config
    if window % cfg.multiple:
        raise InputError(f"window ({window}) must be a multiple of {cfg.multiple} for this model")
    if not 0 <= overlap < window:
        raise InputError(f"overlap must be in [0, window), got {overlap}")
    x = standardise(img, stats)
    H, W = x.shape
    # pad (with 0 = the mean) to at least one window per axis
    ph, pw = max(H, window), max(W, window)
    if (ph, pw) != (H, W):
        x = np.pad(x, ((0, ph - H), (0, pw - W)), constant_values=0.0)
    ys, xs = window_starts(ph, window, overlap), window_starts(pw, window, overlap)
    corners = [(y, xx) for y in ys for xx in xs]
    weight = blend_weight(window, max(1, overlap // 2) if len(corners) > 1 else 0)
    C = cfg.n_classes
    acc = np.zeros((C, ph, pw), dtype=np.float32)
    wsum = np.zeros((ph, pw), dtype=np.float32)
    dev = loaded.device
    bs = batch_size or choose_batch_size(loaded, window, dev, amp)
    if tta and dev.type != "cuda":
        bs = max(1, bs // 2)
    wt = torch.from_numpy(weight)
    if progress is not None:
        progress(0, len(corners))
    for i in range(0, len(corners), bs):
        chunk = corners[i : i + bs]
        batch = np.stack([x[y : y + window, xx : xx + window] for y, xx in chunk])[:, None]
        t = torch.from_numpy(batch).to(dev, dtype=loaded.dtype)
        p = predict_windows(loaded, t, tta=tta, amp=amp).float().cpu() * wt
        pn = p.numpy()
        for j, (y, xx) in enumerate(chunk):
            acc[:, y : y + window, xx : xx + window] += pn[j]
            wsum[y : y + window, xx : xx + window] += weight
        if progress is not None:
            progress(i + len(chunk), len(corners))
    acc /= wsum
    return acc[:, :H, :W]


def check_pixel_size(
    image_pixel_size: float, model_pixel_size: float, *, resample: bool,
    tolerance: float = PIXEL_SIZE_TOLERANCE,
) -> float:
    """Return the zoom factor to apply to the image (1.0 when within tolerance).

    Raises
    ------
    InputError
        If the sizes differ by more than ``tolerance`` and ``resample`` is False.
    """
    if not (image_pixel_size and math.isfinite(image_pixel_size) and image_pixel_size > 0):
        raise InputError(f"pixel_size_angstrom must be a positive number, got {image_pixel_size!r}")
    ratio = image_pixel_size / model_pixel_size
    if abs(ratio - 1) <= tolerance:
        return 1.0
    if not resample:
        raise InputError(
            f"image pixel size {image_pixel_size * 100:.2f} pm differs from the model's "
            f"{model_pixel_size * 100:.2f} pm by {abs(ratio - 1) * 100:.0f} % (> "
            f"{tolerance * 100:.0f} %); pass resample=True (CLI: --resample) to resample the "
            "image to the model's pixel size, or use a model trained at this pixel size"
        )
    return ratio


def resample_image(image: np.ndarray, zoom: float) -> np.ndarray:
    """Resample ``image`` by ``zoom`` (new pixels per old pixel), anti-aliased when shrinking."""
    from skimage.transform import rescale

    if zoom == 1.0:
        return np.asarray(image, dtype=np.float32)
    out = rescale(np.asarray(image, dtype=np.float64), zoom, order=3, mode="edge",
                  anti_aliasing=zoom < 1, preserve_range=True)
    return out.astype(np.float32)
