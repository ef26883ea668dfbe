"""A fully specified simulation: sample, microscope, scan, dose and seed.

:class:`Scene` renders any pixel rectangle of the (conceptually infinite)
image and lists the atom columns whose centres fall in it.  Both are pure
functions of global pixel indices, which is what makes frames and
arbitrarily chunked mosaics agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..classes import DEFECT_CLASSES
from ..errors import InputError
from ..metadata import AcquisitionMetadata
from . import _hash
from ._background import plane_wave_sum
from ._noise import gaussian_noise, poisson_counts
from .probe import Microscope, ProbeKernel, probe_kernel
from .render import render_tile, tile_margin
from .sample import Distortions, Sample
from .structure import Columns, columns_in_box

__all__ = ["Scene", "LABEL_CHANNELS", "TRUTH_COLUMNS", "check_seed", "check_dose"]

#: Label masks of a frame: atom columns of each site, then every defect class.
LABEL_CHANNELS: tuple[str, ...] = ("M", "X", *DEFECT_CLASSES)

#: Columns of the truth table, in order.
TRUTH_COLUMNS = (
    "column_id", "x_px", "y_px", "x_A", "y_A", "site", "species", "defect",
    "dx_pm", "dy_pm", "n_atoms", "cross_section_A2", "x_sample_A", "y_sample_A",
)

_BACKGROUND_MODES = 6


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def check_dose(dose: Any) -> float:
    if isinstance(dose, bool) or not isinstance(dose, (int, float, np.integer, np.floating)):
        raise InputError(f"dose_e_per_a2 must be a number of electrons per Å², got {dose!r}")
    dose = float(dose)
    if not math.isfinite(dose) or dose < 0:
        raise InputError(f"dose_e_per_a2 must be a finite dose >= 0 e-/Å², got {dose!r}")
    return dose


def _check(obj: Any, cls: type, name: str) -> Any:
    if obj is None:
        return cls()
    if not isinstance(obj, cls):
        raise InputError(f"{name} must be a stemscale.simulate.{cls.__name__}, got {type(obj).__name__}")
    return obj


def label_threshold(kernel: ProbeKernel, area_px: float) -> float:
    """Fraction of a single site's peak at which its blob covers about ``area_px`` pixels."""
    values = np.sort(kernel.values.ravel())[::-1] / kernel.peak
    n = int(np.clip(round(area_px), 1, len(values) - 1))
    return float(0.5 * (values[n - 1] + values[n]))


@dataclass
class Scene:
    """Everything needed to render any region of a simulated image."""

    sample: Sample
    microscope: Microscope
    distortions: Distortions
    dose_e_per_a2: float
    seed: int
    label_area_px: float = 38.0

    def __post_init__(self) -> None:
        self.sample = _check(self.sample, Sample, "sample")
        self.microscope = _check(self.microscope, Microscope, "microscope")
        self.distortions = _check(self.distortions, Distortions, "distortions")
        self.dose_e_per_a2 = check_dose(self.dose_e_per_a2)
        self.seed = check_seed(self.seed)
        if not (isinstance(self.label_area_px, (int, float)) and math.isfinite(self.label_area_px)
                and self.label_area_px > 0):
            raise InputError(f"label_area_px must be a positive number of pixels, got {self.label_area_px!r}")
        affine = self.distortions.affine
        self.kernel = probe_kernel(self.microscope, affine)
        self.label_kernel = probe_kernel(self.microscope.aberration_free(), affine)
        self.label_threshold = label_threshold(self.label_kernel, self.label_area_px)
        self.px = self.microscope.pixel_size_A
        self.A = np.array([[affine[0], affine[1]], [affine[2], affine[3]]])
        self.A_inv = np.linalg.inv(self.A)
        self.electrons_per_pixel = self.dose_e_per_a2 * self.px * self.px
        self._background_modes()

    # ---------------------------------------------------------------- geometry
    def jitter(self, rows: np.ndarray) -> np.ndarray:
        """Per-line x shift (pixels) of global scan lines ``rows``."""
        d = self.distortions
        rows = np.asarray(rows, dtype=np.int64)
        if d.jitter_px == 0:
            return np.zeros(rows.shape)
        z = _hash.normal(self.seed, _hash.STREAM["jitter"], rows)
        return d.jitter_px * np.clip(z, -d.jitter_clip, d.jitter_clip)

    def _sample_box(self, y0: float, x0: float, y1: float, x1: float) -> tuple[float, float, float, float]:
        corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], dtype=np.float64)
        s = corners @ self.A.T * self.px
        # Displacements (fields + static noise) are a few pm: a generous Å of slack is plenty.
        slack = 1.0 + 6e-2 * self.sample.position_noise_pm
        return (s[:, 0].min() - slack, s[:, 0].max() + slack, s[:, 1].min() - slack, s[:, 1].max() + slack)

    def columns(self, y0: float, x0: float, y1: float, x1: float) -> tuple[Columns, np.ndarray, np.ndarray]:
        """Columns near the pixel rectangle, with their (pre-jitter) pixel positions."""
        cols = columns_in_box(self.sample, self.seed, self._sample_box(y0, x0, y1, x1))
        sx, sy = cols.x / self.px, cols.y / self.px
        fx = self.A_inv[0, 0] * sx + self.A_inv[0, 1] * sy
        fy = self.A_inv[1, 0] * sx + self.A_inv[1, 1] * sy
        return cols, fy, fx

    # ---------------------------------------------------------------- rendering
    def _background_modes(self) -> None:
        st = _hash.STREAM["background"]
        m = np.arange(_BACKGROUND_MODES)
        length_px = self.sample.background_length_A / self.px
        kmag = 2 * np.pi / length_px * (0.5 + _hash.uniform(self.seed, st, m, 0))
        ang = 2 * np.pi * _hash.uniform(self.seed, st, m, 1)
        amp = 0.2 + _hash.uniform(self.seed, st, m, 2)
        self._bg_k = np.column_stack([kmag * np.cos(ang), kmag * np.sin(ang)])
        self._bg_phase = 2 * np.pi * _hash.uniform(self.seed, st, m, 3)
        self._bg_amp = amp / amp.sum()

    def background(self, y0: int, x0: int, height: int, width: int) -> np.ndarray:
        """Detected background fraction per pixel: smooth, a function of global pixel indices."""
        s = self.sample
        out = np.full((height, width), 1.0)
        if s.background_variation > 0:
            ys = np.arange(y0, y0 + height, dtype=np.float64)
            xs = np.arange(x0, x0 + width, dtype=np.float64)
            plane_wave_sum(ys, xs, self._bg_k, self._bg_phase, s.background_variation * self._bg_amp, out)
        return s.background_fraction * out

    def _kernels(self, labels: bool) -> list[ProbeKernel]:
        return [self.kernel] + ([self.label_kernel] * len(LABEL_CHANNELS) if labels else [])

    def _render_box(self, y0: int, x0: int, y1: int, x1: int, labels: bool) -> tuple[int, int, int, int]:
        """Pixel box of the columns that can reach the rectangle [y0, y1) x [x0, x1)."""
        my, mx = tile_margin(self._kernels(labels), self.distortions.max_jitter_px)
        return y0 - my - 1, x0 - mx - 1, y1 + my + 1, x1 + mx + 1

    def render(
        self, y0: int, x0: int, height: int, width: int, *, labels: bool = False,
        columns: tuple[Columns, np.ndarray, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Noiseless expected counts (and optionally label masks) of one tile.

        Parameters
        ----------
        y0, x0, height, width
            The tile in global pixel indices.
        labels
            Also render the label masks.
        columns
            Columns (from :meth:`columns`) covering the tile's render box, to
            share one generation among many tiles; generated when omitted.

        Returns
        -------
        dict
            ``expected`` (float64 counts including the background) and, with
            ``labels=True``, a bool mask per :data:`LABEL_CHANNELS` name.
        """
        rows = np.arange(y0, y0 + height)
        jit = self.jitter(rows)
        kernels = self._kernels(labels)
        by0, bx0, by1, bx1 = self._render_box(y0, x0, y0 + height, x0 + width, labels)
        cols, fy, fx = columns if columns is not None else self.columns(by0, bx0, by1, bx1)
        # The same columns in the same (id) order whichever set they came from: the tile's
        # floating-point sums, hence its pixels, are then bit-for-bit reproducible.
        idx = np.nonzero((fy >= by0) & (fy < by1) & (fx >= bx0) & (fx < bx1))[0]
        idx = idx[np.argsort(cols.column_id[idx], kind="stable")]
        cols, fy, fx = cols.take(idx), fy[idx], fx[idx]
        weights = [cols.weight]
        if labels:
            present = cols.n_atoms > 0
            weights.append((present & (cols.site == 0)).astype(np.float64))
            weights.append((present & (cols.site == 1)).astype(np.float64))
            for i in range(len(DEFECT_CLASSES)):
                weights.append((cols.defect == i).astype(np.float64))
        out = render_tile(fy, fx, weights, kernels, y0, x0, height, width, jit)
        result = {"expected": self.electrons_per_pixel * (out[0] + self.background(y0, x0, height, width))}
        if labels:
            level = self.label_threshold * self.label_kernel.peak
            for name, channel in zip(LABEL_CHANNELS, out[1:]):
                result[name] = channel > level
        return result

    def render_region(
        self, y0: int, x0: int, height: int, width: int, *, tile: int | None = None,
        labels: bool = False, return_columns: bool = False,
    ):
        """Like :meth:`render` for any rectangle, rendered tile by tile.

        With ``tile`` set, tiles sit on the global grid of multiples of
        ``tile`` (partial tiles are rendered whole and cropped), so every pixel
        is computed identically whatever rectangle asks for it: mosaics with
        different shards, and frames at any origin, agree bit for bit.  With
        ``tile=None`` the rectangle is rendered in one piece (fastest for
        small frames; equal to the tiled result to float rounding).  With
        ``return_columns`` the generated columns come back too (they cover
        the rectangle with margin, ready for :meth:`truth`).
        """
        out = {"expected": np.empty((height, width))}
        if labels:
            out.update({name: np.empty((height, width), dtype=bool) for name in LABEL_CHANNELS})
        starts_y: Sequence[int]
        starts_x: Sequence[int]
        if tile is None:
            starts_y, starts_x, th, tw = [y0], [x0], height, width
        else:
            starts_y = range((y0 // tile) * tile, y0 + height, tile)
            starts_x = range((x0 // tile) * tile, x0 + width, tile)
            th = tw = tile
        # One column generation for all tiles (their render boxes overlap).
        shared = self.columns(*self._render_box(
            starts_y[0], starts_x[0], starts_y[-1] + th, starts_x[-1] + tw, labels
        ))
        for ty in starts_y:
            for tx in starts_x:
                part = self.render(ty, tx, th, tw, labels=labels, columns=shared)
                ya, yb = max(ty, y0), min(ty + th, y0 + height)
                xa, xb = max(tx, x0), min(tx + tw, x0 + width)
                for key, arr in part.items():
                    out[key][ya - y0 : yb - y0, xa - x0 : xb - x0] = arr[ya - ty : yb - ty, xa - tx : xb - tx]
        if return_columns:
            return out, shared
        return out

    def detect(self, expected: np.ndarray, y0: int, x0: int) -> np.ndarray:
        """Detected image (ADU): gain x Poisson(expected) + offset + read noise, float32."""
        m = self.microscope
        image = poisson_counts(expected, self.seed, y0, x0)
        if m.gain != 1.0:
            image *= np.float32(m.gain)
        if m.read_noise > 0:
            image += np.float32(m.read_noise) * gaussian_noise(expected.shape, self.seed, y0, x0)
        if m.offset != 0.0:
            image += np.float32(m.offset)
        return image

    # ---------------------------------------------------------------- truth
    def truth(
        self, y0: int, x0: int, height: int, width: int, *,
        columns: tuple[Columns, np.ndarray, np.ndarray] | None = None,
    ) -> pd.DataFrame:
        """Columns whose (distorted) centre lies in the pixel rectangle (half-open, pixel centres at integers).

        ``columns`` may pass a set that covers the rectangle with a margin of
        the largest line jitter plus 2 pixels (as :meth:`render_region` returns).
        """
        if columns is None:
            margin = self.distortions.max_jitter_px + 2
            columns = self.columns(y0 - margin, x0 - margin, y0 + height + margin, x0 + width + margin)
        cols, fy, fx = columns
        xj = fx - self.jitter(np.floor(fy + 0.5).astype(np.int64))
        own = (fy >= y0 - 0.5) & (fy < y0 + height - 0.5) & (xj >= x0 - 0.5) & (xj < x0 + width - 0.5)
        idx = np.nonzero(own)[0]
        idx = idx[np.argsort(cols.column_id[idx], kind="stable")]
        c = cols.take(idx)
        names = np.array(c.species_names + [""], dtype=object)
        defect_names = np.array(list(DEFECT_CLASSES) + [""], dtype=object)
        return pd.DataFrame(
            {
                "column_id": c.column_id,
                "x_px": xj[idx],
                "y_px": fy[idx],
                "x_A": xj[idx] * self.px,
                "y_A": fy[idx] * self.px,
                "site": np.where(c.site == 0, "M", "X").astype(object),
                "species": names[c.species],
                "defect": defect_names[c.defect],  # index -1 -> ""
                "dx_pm": c.dx_pm,
                "dy_pm": c.dy_pm,
                "n_atoms": c.n_atoms.astype(np.int8),
                "cross_section_A2": c.weight,
                "x_sample_A": c.x,
                "y_sample_A": c.y,
            },
            columns=list(TRUTH_COLUMNS),
        )

    # ---------------------------------------------------------------- metadata
    def metadata(self, **extra: Any) -> AcquisitionMetadata:
        m = self.microscope
        return AcquisitionMetadata(
            pixel_size_angstrom=float(self.px),
            high_tension_kv=float(m.high_tension_kv),
            convergence_mrad=float(m.convergence_mrad),
            detector_inner_mrad=float(m.detector_inner_mrad),
            detector_outer_mrad=float(m.detector_outer_mrad),
            dose_e_per_a2=float(self.dose_e_per_a2),
            material=self.sample.material,
            source="simulation",
            extra={
                "generator": "stemscale.simulate",
                "seed": self.seed,
                "microscope": m.to_dict(),
                "distortions": self.distortions.to_dict(),
                "sample": _jsonable(self.sample.to_dict()),
                "label_threshold": self.label_threshold,
                "probe_support_A": self.kernel.support_A,
                **extra,
            },
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)
