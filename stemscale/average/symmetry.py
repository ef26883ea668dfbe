"""Optional point-group symmetrisation of class averages (C3 or C3v about the centre)."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ..errors import InputError

__all__ = ["symmetry_operations", "symmetrise"]


def symmetry_operations(group: str = "C3v", mirror_angle_deg: float = 90.0) -> list[np.ndarray]:
    """2 x 2 matrices (acting on (x, y)) of the point group.

    ``"C3"``: rotations by 0, 120, 240 degrees; ``"C3v"``: plus the three
    mirrors, one of which is the line through the centre at
    ``mirror_angle_deg`` from +x.  For a 2H-MX2 lattice whose ``a1`` lies at
    angle ``phi`` and a chalcogen site at the centre, the mirror lines are
    perpendicular to the lattice vectors: ``phi + 90`` degrees.
    """
    rots = []
    for k in range(3):
        t = 2 * math.pi * k / 3
        rots.append(np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]))
    if group == "C3":
        return rots
    if group != "C3v":
        raise InputError(f"group must be 'C3' or 'C3v', got {group!r}")
    a = math.radians(mirror_angle_deg)
    m = np.array([[math.cos(2 * a), math.sin(2 * a)], [math.sin(2 * a), -math.cos(2 * a)]])
    return rots + [r @ m for r in rots]


def symmetrise(image: np.ndarray, *, centre_xy: tuple[float, float] | None = None, group: str = "C3v",
               mirror_angle_deg: float = 90.0, order: int = 3) -> np.ndarray:
    """Average an image over a point group about ``centre_xy`` (default: pixel ``(w // 2, h // 2)``).

    Each operation is applied by spline interpolation (``order``); pixels
    mapped from outside the image take the nearest edge value, so only
    the disc inside the image is meaningful.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise InputError(f"image must be 2-D, got shape {img.shape}")
    h, w = img.shape
    cx, cy = (w // 2, h // 2) if centre_xy is None else centre_xy
    c = np.array([cy, cx], dtype=float)
    out = np.zeros_like(img)
    ops = symmetry_operations(group, mirror_angle_deg)
    for op in ops:
        # output (x, y) samples the input at op^-1 (x - c) + c; in (row, col) order:
        inv = np.linalg.inv(op)
        m = inv[::-1, ::-1]
        offset = c - m @ c
        out += ndimage.affine_transform(img, m, offset=offset, order=order, mode="nearest")
    return out / len(ops)
