"""Training data: simulated frames -> class maps -> augmented, standardised patches.

A *frame source* is any callable ``source(seed) -> (image, class_map)`` with
a float image and an integer map of output-class indices (0 = background).
:class:`SimulatedFrames` wraps :func:`stemscale.simulate.simulate_frame` with
per-image random microscope, dose (log-uniform), defect concentrations, scan
distortions and lattice rotation.  :func:`make_patch` adds the paper's
augmentations: a random crop, dihedral transforms and down/up-sampling of the
input only, then per-patch standardisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..classes import DEFECT_CLASSES
from ..errors import InputError
from .config import DataSection
from .model import OUTPUT_CLASSES

__all__ = [
    "FrameSource",
    "labels_to_class_map",
    "make_patch",
    "SimulatedFrames",
    "seed_for",
    "resample_down_up",
]

FrameSource = Callable[[int], tuple[np.ndarray, np.ndarray]]


def seed_for(base: int, index: int) -> int:
    """A 32-bit simulator seed for frame ``index`` of the stream ``base``.

    Different ``base`` values give practically disjoint seed streams, which
    keeps training, validation and evaluation frames apart.
    """
    return int(np.random.SeedSequence([int(base), int(index)]).generate_state(1)[0])


def labels_to_class_map(
    labels: Mapping[str, np.ndarray], classes: Sequence[str] = OUTPUT_CLASSES,
) -> np.ndarray:
    """Merge boolean masks into one map of class indices (uint8).

    Site masks (``"M"``, ``"X"``) are painted first and defect masks over
    them, so a defective column carries its defect class.
    """
    if not labels:
        raise InputError("labels is empty; expected boolean masks per class")
    shape = next(iter(labels.values())).shape
    out = np.zeros(shape, dtype=np.uint8)
    order = [c for c in classes[1:] if c not in DEFECT_CLASSES] + [
        c for c in classes[1:] if c in DEFECT_CLASSES
    ]
    for c in order:
        m = labels.get(c)
        if m is None:
            continue
        m = np.asarray(m, dtype=bool)
        if m.shape != shape:
            raise InputError(f"label mask {c!r} has shape {m.shape}, expected {shape}")
        out[m] = classes.index(c)
    return out


def resample_down_up(image: np.ndarray, factor: float) -> np.ndarray:
    """Down-sample by ``factor`` (anti-aliased) and back up to the original shape."""
    from skimage.transform import resize

    if factor >= 1.0:
        return image
    h, w = image.shape
    small = resize(image, (max(2, round(h * factor)), max(2, round(w * factor))),
                   order=3, anti_aliasing=True, preserve_range=True)
    return resize(small, (h, w), order=3, preserve_range=True).astype(np.float32)


def make_patch(
    image: np.ndarray, class_map: np.ndarray, rng: np.random.Generator, *,
    patch_size: int, dihedral: bool = True, resample_factors: Sequence[float] = (1.0,),
    resample_probs: Sequence[float] | None = None, standardise_jitter: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """One augmented training patch ``(x float32 (P, P), y int64 (P, P))``."""
    H, W = image.shape
    if H < patch_size or W < patch_size:
        raise InputError(f"frame {image.shape} smaller than patch_size {patch_size}")
    y0 = int(rng.integers(0, H - patch_size + 1))
    x0 = int(rng.integers(0, W - patch_size + 1))
    x = np.asarray(image[y0 : y0 + patch_size, x0 : x0 + patch_size], dtype=np.float32)
    y = np.asarray(class_map[y0 : y0 + patch_size, x0 : x0 + patch_size])
    if len(resample_factors) > 1 or resample_factors[0] != 1.0:
        p = None if resample_probs is None else np.asarray(resample_probs) / np.sum(resample_probs)
        f = float(rng.choice(np.asarray(resample_factors, dtype=float), p=p))
        x = resample_down_up(x, f)
    if dihedral:
        k = int(rng.integers(0, 8))
        if k >= 4:
            x, y = x[:, ::-1], y[:, ::-1]
        x, y = np.rot90(x, k % 4), np.rot90(y, k % 4)
    mean, std = float(x.mean()), float(x.std())
    if std <= 0:
        std = 1.0
    if standardise_jitter:
        # whole-frame statistics at inference differ slightly from a patch's own
        mean += standardise_jitter * std * rng.normal()
        std *= math.exp(standardise_jitter * rng.normal())
    x = (x - mean) / std
    return np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y, dtype=np.int64)


@dataclass
class SimulatedFrames:
    """Training frames from :func:`stemscale.simulate.simulate_frame`.

    Each call draws, from its seed, a random microscope, a log-uniform dose in
    ``dose_range``, per-class defect concentrations, scan distortions and a
    lattice rotation, then returns the noisy image and its class map.
    """

    data: DataSection
    classes: tuple[str, ...] = OUTPUT_CLASSES

    def draw_parameters(self, seed: int) -> dict:
        """The random parameters of frame ``seed`` (deterministic)."""
        d = self.data
        rng = np.random.default_rng(seed)
        lo, hi = d.dose_range
        dose = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        conc = {k: float(rng.uniform(lo_c, hi_c)) for k, (lo_c, hi_c) in d.concentrations.items()}
        return {"seed": seed, "dose": dose, "concentrations": conc, "rng": rng}

    def simulate(self, seed: int, shape: tuple[int, int] | None = None, *,
                 dose: float | None = None):
        """The simulated :class:`~stemscale.simulate.Frame` of ``seed``."""
        from .. import simulate as sim

        d = self.data
        p = self.draw_parameters(seed)
        rng = p["rng"]
        micro_kw = {**d.microscope, "pixel_size_A": d.pixel_size_angstrom}
        microscope = (sim.Microscope.random(rng, **micro_kw) if d.random_microscope
                      else sim.Microscope(**micro_kw))
        distortions = sim.Distortions.random(rng) if d.scan_distortions else sim.Distortions()
        sample_kw: dict[str, Any] = {}
        if d.rotation:
            sample_kw["rotation_deg"] = float(rng.uniform(0.0, 360.0))
        sample_kw["background_fraction"] = float(rng.uniform(*d.background_fraction))
        sample_kw["background_variation"] = float(rng.uniform(*d.background_variation))
        sample = sim.Sample(material=d.material, concentrations=p["concentrations"], **sample_kw)
        shape = shape or (d.frame_size, d.frame_size)
        return sim.simulate_frame(
            shape, sample=sample, microscope=microscope,
            dose_e_per_a2=dose if dose is not None else p["dose"],
            distortions=distortions, seed=seed,
        )

    def __call__(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        frame = self.simulate(seed)
        return (np.asarray(frame.image, dtype=np.float32),
                labels_to_class_map(frame.labels, self.classes))
