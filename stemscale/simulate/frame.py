"""One simulated frame with its ground truth: :func:`simulate_frame`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..classes import DEFECT_CLASSES
from ..errors import InputError
from ..metadata import AcquisitionMetadata
from .probe import Microscope
from .sample import Distortions, Sample
from .scene import Scene

__all__ = ["Frame", "simulate_frame", "check_shape"]

# Frames larger than this are rendered in tiles (bounded memory, same result).
_FRAME_TILE = 1024


def check_shape(shape: Any, name: str = "shape") -> tuple[int, int]:
    """(height, width) as two positive ints, or a clear error."""
    try:
        dims = tuple(shape)
    except TypeError:
        raise InputError(f"{name} must be (height, width) in pixels, got {shape!r}") from None
    if len(dims) != 2:
        raise InputError(f"{name} must be 2-D (height, width) in pixels, got {len(dims)} dimensions {shape!r}")
    out = []
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d <= 0:
            raise InputError(f"{name} must be two positive integers (height, width), got {shape!r}")
        out.append(int(d))
    return out[0], out[1]


@dataclass
class Frame:
    """A simulated frame and its ground truth.

    Attributes
    ----------
    image
        float32 (H, W) detector signal in ADU: gain x Poisson(expected) + offset (+ read noise).
    expected
        float32 (H, W) noiseless expected detected electrons (atoms + background).
    labels
        Bool (H, W) masks: "M" and "X" (non-empty atom columns of each site)
        and one per defect class.  Each is a defect-only render (unit weight
        per site) with the microscope's *aberration-free* probe and the same
        scan distortions, thresholded so that an isolated site's blob covers
        about ``label_area_px`` pixels (≈ 38 px, as in the paper's labels):
        label shapes mark where a defect is, independent of the random
        aberrations of the image.
    truth
        One row per atom column whose centre lies in the frame (see
        :data:`stemscale.simulate.scene.TRUTH_COLUMNS`).
    metadata
        Acquisition metadata (pixel size, dose, microscope, seed ...).
    background
        float32 (H, W) expected background counts (part of ``expected``).
    """

    image: np.ndarray
    expected: np.ndarray
    labels: dict[str, np.ndarray]
    truth: pd.DataFrame
    metadata: AcquisitionMetadata
    background: np.ndarray | None = field(default=None, repr=False)

    def label_map(self, classes: Sequence[str] = DEFECT_CLASSES) -> np.ndarray:
        """Integer class map: 0 background, i + 1 for ``classes[i]`` (later classes win overlaps)."""
        out = np.zeros(self.image.shape, dtype=np.uint8)
        for i, name in enumerate(classes):
            if name not in self.labels:
                raise InputError(f"no label mask {name!r}; have {', '.join(self.labels)}")
            out[self.labels[name]] = i + 1
        return out


def simulate_frame(
    shape: tuple[int, int] = (1024, 1024),
    *,
    sample: Sample | None = None,
    microscope: Microscope | None = None,
    dose_e_per_a2: float = 7300.0,
    distortions: Distortions | None = None,
    seed: int = 0,
    labels: bool = True,
    label_area_px: float = 38.0,
    origin: tuple[int, int] = (0, 0),
    render_tile: int | None = None,
) -> Frame:
    """Simulate an ADF-STEM frame of a 2D material with exact ground truth.

    Parameters
    ----------
    shape
        (height, width) in pixels.
    sample
        Specimen (default: WSe2 with the default defect concentrations).
    microscope
        Probe, detector and pixel size (default: 80 kV, 25.2 mrad, 20.74 pm).
    dose_e_per_a2
        Incident dose (e⁻/Å²); 7,300 is the paper's experimental frame.
    distortions
        Scan distortions (default: none).
    seed
        Everything random derives from it (and from global pixel / lattice indices).
    labels
        Render the label masks (skip for speed when only images are needed).
    label_area_px
        Area of an isolated site's label blob (the paper's ≈ 38 px).
    origin
        Global pixel index (row, col) of the frame's pixel (0, 0): a frame is
        a window of the same infinite image a mosaic with this seed shows.
    render_tile
        ``None`` renders the frame in one piece (fastest).  An integer renders
        it on the global grid of tiles of that size, as
        :func:`~stemscale.simulate.simulate_mosaic` does (default 512 there):
        then the frame equals the same window of such a mosaic bit for bit.

    Returns
    -------
    Frame
    """
    h, w = check_shape(shape)
    try:
        oy, ox = (int(o) for o in origin)
        if any(isinstance(o, bool) or int(o) != o for o in origin):
            raise ValueError
    except (TypeError, ValueError):
        raise InputError(f"origin must be two integer pixel indices (row, col), got {origin!r}") from None
    sample = sample if sample is not None else Sample()
    microscope = microscope if microscope is not None else Microscope()
    distortions = distortions if distortions is not None else Distortions()
    scene = Scene(sample, microscope, distortions, dose_e_per_a2, seed, label_area_px)
    if render_tile is None and h * w > _FRAME_TILE**2 * 4:
        render_tile = _FRAME_TILE  # bounded memory for very large frames
    if render_tile is not None and (not isinstance(render_tile, (int, np.integer)) or render_tile < 32):
        raise InputError(f"render_tile must be None or an integer >= 32 pixels, got {render_tile!r}")
    rendered, columns = scene.render_region(oy, ox, h, w, tile=render_tile, labels=labels, return_columns=True)
    expected = rendered.pop("expected")
    masks = rendered
    image = scene.detect(expected, oy, ox)
    background = (scene.electrons_per_pixel * scene.background(oy, ox, h, w)).astype(np.float32)
    truth = scene.truth(oy, ox, h, w, columns=columns)
    truth["x_px"] -= ox
    truth["y_px"] -= oy
    truth["x_A"] = truth["x_px"] * scene.px
    truth["y_A"] = truth["y_px"] * scene.px
    return Frame(
        image=image,
        expected=expected.astype(np.float32),
        labels=masks,
        truth=truth,
        metadata=scene.metadata(shape=[h, w], origin=[oy, ox]),
        background=background,
    )
