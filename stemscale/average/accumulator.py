"""Class accumulators: a monoid of per-class sums that combines partial results pairwise.

:class:`Moments` holds, for one class, the count, the pixel sum and sum of
squares of the registered crops and the sums of their shifts;
:class:`ClassAccumulator` maps class names to moments and also counts
rejections and records where each block wrote its crop stack.  ``combine``
is associative and commutative (up to float rounding, done in float64) and
``ClassAccumulator()`` is its identity, so any Dask tree (any chunking,
any order, any ``split_every``) yields the same averages.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from ..errors import InputError

__all__ = ["Moments", "ClassAccumulator", "combine", "combine_all"]


@dataclass
class Moments:
    """Running sums of the registered crops of one class.

    Attributes
    ----------
    count
        Number of crops.
    total, total_sq
        ``(h, w)`` float64 sums of the crops and of their squares.
    shift_sum, shift_sq
        Sums of the registration shifts ``(dy, dx)`` and of their squares (px, px²).
    """

    count: int
    total: np.ndarray
    total_sq: np.ndarray
    shift_sum: np.ndarray = field(default_factory=lambda: np.zeros(2))
    shift_sq: np.ndarray = field(default_factory=lambda: np.zeros(2))

    @classmethod
    def from_stack(cls, stack: np.ndarray, shifts: np.ndarray | None = None) -> "Moments":
        s = np.asarray(stack, dtype=np.float64)
        if s.ndim != 3:
            raise InputError(f"a crop stack must be (n, h, w), got shape {s.shape}")
        sh = np.zeros((len(s), 2)) if shifts is None else np.asarray(shifts, dtype=np.float64).reshape(-1, 2)
        return cls(len(s), s.sum(axis=0), (s * s).sum(axis=0), sh.sum(axis=0), (sh * sh).sum(axis=0))

    def __add__(self, other: "Moments") -> "Moments":
        if self.total.shape != other.total.shape:
            raise InputError(f"cannot combine class sums of shapes {self.total.shape} and {other.total.shape}")
        return Moments(
            self.count + other.count, self.total + other.total, self.total_sq + other.total_sq,
            self.shift_sum + other.shift_sum, self.shift_sq + other.shift_sq,
        )

    @property
    def mean(self) -> np.ndarray:
        """The class average (NaN when empty)."""
        if self.count == 0:
            return np.full(self.total.shape, np.nan)
        return self.total / self.count

    @property
    def std(self) -> np.ndarray:
        """Pixel-wise standard deviation of the crops (ddof = 1)."""
        if self.count < 2:
            return np.full(self.total.shape, np.nan)
        var = (self.total_sq - self.total**2 / self.count) / (self.count - 1)
        return np.sqrt(np.maximum(var, 0.0))

    @property
    def sem(self) -> np.ndarray:
        """Pixel-wise standard error of the average."""
        return self.std / np.sqrt(max(self.count, 1))

    @property
    def shift_mean(self) -> np.ndarray:
        return self.shift_sum / max(self.count, 1)

    @property
    def shift_std(self) -> np.ndarray:
        if self.count < 2:
            return np.full(2, np.nan)
        var = (self.shift_sq - self.shift_sum**2 / self.count) / (self.count - 1)
        return np.sqrt(np.maximum(var, 0.0))


@dataclass
class ClassAccumulator:
    """Per-class moments, rejection counts and crop-stack parts; a monoid under :func:`combine`.

    Attributes
    ----------
    moments
        Class name -> :class:`Moments`.
    rejected
        Class name -> Counter of rejection reasons found on the workers
        (orientation, failed registration ...).
    orientation
        Class name -> Counter of orientation verdicts of the kept crops
        (``same``, ``inverted`` mapped back).
    parts
        Class name -> list of ``(block_key, n_crops)`` crop-stack parts
        written for the bootstrap.
    """

    moments: dict[str, Moments] = field(default_factory=dict)
    rejected: dict[str, Counter] = field(default_factory=dict)
    orientation: dict[str, Counter] = field(default_factory=dict)
    parts: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    def add(self, cls: str, moments: Moments) -> None:
        self.moments[cls] = self.moments[cls] + moments if cls in self.moments else moments

    def reject(self, cls: str, reason: str, n: int = 1) -> None:
        if n:
            self.rejected.setdefault(cls, Counter())[reason] += int(n)

    def count_orientation(self, cls: str, status: Iterable[str]) -> None:
        self.orientation.setdefault(cls, Counter()).update(status)

    @property
    def classes(self) -> list[str]:
        return sorted(self.moments)

    def mean(self, cls: str) -> np.ndarray:
        if cls not in self.moments:
            raise InputError(f"no crops of class {cls!r} were averaged; have {self.classes}")
        return self.moments[cls].mean

    def summary(self) -> dict[str, Any]:
        """Counts and shift statistics per class (JSON-friendly)."""
        out = {}
        for cls in sorted(set(self.moments) | set(self.rejected)):
            m = self.moments.get(cls)
            out[cls] = {
                "averaged": int(m.count) if m else 0,
                "rejected": dict(self.rejected.get(cls, {})),
                "orientation": dict(self.orientation.get(cls, {})),
                "shift_mean_px": m.shift_mean.tolist() if m else None,
                "shift_std_px": m.shift_std.tolist() if m else None,
                "stack_parts": len(self.parts.get(cls, [])),
            }
        return out


def combine(a: ClassAccumulator, b: ClassAccumulator) -> ClassAccumulator:
    """The monoid operation: a new accumulator holding both (inputs are not modified)."""
    out = ClassAccumulator()
    for src in (a, b):
        for cls, m in src.moments.items():
            out.moments[cls] = out.moments[cls] + m if cls in out.moments else Moments(
                m.count, m.total.copy(), m.total_sq.copy(), m.shift_sum.copy(), m.shift_sq.copy())
        for cls, c in src.rejected.items():
            out.rejected.setdefault(cls, Counter()).update(c)
        for cls, c in src.orientation.items():
            out.orientation.setdefault(cls, Counter()).update(c)
        for cls, p in src.parts.items():
            out.parts.setdefault(cls, []).extend(p)
    for cls in out.parts:
        out.parts[cls].sort()  # parts are named by block: order-independent
    return out


def combine_all(items: Iterable[ClassAccumulator]) -> ClassAccumulator:
    """Fold any number of accumulators (the aggregate step of a tree reduction)."""
    out = ClassAccumulator()
    for it in items:
        out = combine(out, it)
    return out
