"""Class references and the per-block registration of crops (pure NumPy).

:func:`build_reference` turns a sample of crops into a class reference
(orientation-mapped, iteratively registered, recentred on the defect's
lattice site, optionally symmetrised); :func:`register_block` does one
block's work: crops, orientation check, sub-pixel registration, shifting and
folding into a :class:`~stemscale.average.accumulator.ClassAccumulator`.
The Dask reduction around them is :mod:`stemscale.parallel.averaging`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from ..errors import InputError
from ..lattice import defect_site_shift, fit_lattice
from .accumulator import ClassAccumulator, Moments
from .config import AveragingConfig
from .crops import central, extract_crops
from .orientation import check_orientation, map_orientation
from .registration import apply_shifts, refine_reference, register

__all__ = ["RegisteredPart", "build_reference", "finish_reference", "gather_crops", "register_block"]


@dataclass(frozen=True)
class RegisteredPart:
    """The registered, shifted crops of one class in one block."""

    cls: str
    crops: np.ndarray
    row_ids: np.ndarray
    shifts: np.ndarray
    orientation: np.ndarray


def _symmetriser(cfg: AveragingConfig, a_px: float) -> Callable[[np.ndarray], np.ndarray] | None:
    group = cfg.reference_symmetry
    if group is None:
        return None
    from .symmetry import symmetrise

    def sym(img: np.ndarray) -> np.ndarray:
        lat = fit_lattice(img, a_px)
        return symmetrise(img, group=group, mirror_angle_deg=lat.angle_deg + 90.0)

    return sym


def _recentre(cfg: AveragingConfig, a_px: float, mask_px: float,
              site: str = "X") -> Callable[[np.ndarray], np.ndarray] | None:
    if not cfg.recentre:
        return None
    return lambda img: defect_site_shift(img, a_px, exclude_radius_px=mask_px, site=site)


def finish_reference(ref: np.ndarray, cfg: AveragingConfig, a_px: float, mask_px: float,
                     site: str = "X") -> np.ndarray:
    """Recentre (on the defect's site: ``"X"`` chalcogen, ``"M"`` metal) and symmetrise a reference.

    The reference is padded by the crops' margin, or by the measured recentring shift
    when that is larger, so a shift never runs out of room.
    """
    rc = _recentre(cfg, a_px, mask_px, site)
    if rc is not None:
        d = np.asarray(rc(ref), dtype=float)
        if np.isfinite(d).all() and np.hypot(*d) > 1e-4:
            m = cfg.margin_px
            if np.abs(d).max() > m:  # derived from the measured shift
                m = int(np.ceil(np.abs(d).max())) + 2
            ref = apply_shifts(np.pad(ref, m, mode="reflect")[None], d[None], crop=ref.shape[-1])[0]
    sym = _symmetriser(cfg, a_px)
    return sym(ref) if sym is not None else ref


def build_reference(crops: np.ndarray, *, crop: int, cfg: AveragingConfig, pixel_size_A: float,
                    site: str = "X") -> np.ndarray:
    """A class reference from a sample of crops (with margin): orientation-mapped, registered,
    recentred on the defect's ``site`` (:func:`stemscale.classes.defect_site`)."""
    a_px = cfg.lattice_constant_A / pixel_size_A
    mask_px = cfg.mask_radius_A / pixel_size_A
    crops = np.asarray(crops, dtype=np.float64)
    if len(crops) == 0:
        raise InputError("cannot build a reference from zero crops")
    ref = central(crops, crop).mean(axis=0)
    if cfg.orientation != "off" and len(crops) > 1:
        # The plain mean is dominated by the majority domain; map the others onto it.
        chk = check_orientation(crops, ref, period_px=a_px, angle_tolerance_deg=cfg.angle_tolerance_deg)
        keep = chk.status != "rotated"
        if cfg.orientation == "reject":
            keep &= chk.status == "same"
        crops = map_orientation(crops[keep], chk.status[keep])
        ref = central(crops, crop).mean(axis=0)
    kw = dict(upsample=cfg.upsample, iterations=cfg.register_iterations, mask_radius_px=mask_px,
              max_shift_px=cfg.max_shift_px)
    for _ in range(int(cfg.reference_iterations)):
        ref, _ = refine_reference(crops, crop=crop, rounds=1, reference=ref, **kw)
        ref = finish_reference(ref, cfg, a_px, mask_px, site)
    return ref


def register_block(
    window: np.ndarray,
    origin: tuple[int, int],
    rows: pd.DataFrame,
    references: dict[str, np.ndarray],
    cfg: AveragingConfig,
    pixel_size_A: float,
    crop: int,
) -> tuple[ClassAccumulator, list[RegisteredPart]]:
    """Everything one block does: crops -> orientation -> registration -> shift -> fold.

    Parameters
    ----------
    window
        The block's haloed pixels.
    origin
        Global ``(y, x)`` of ``window[0, 0]``.
    rows
        The block's defects: ``class``, ``cx_px``, ``cy_px`` (integer
        global centres) and ``row_id``.
    references
        Class -> reference image ``(crop, crop)``.

    Returns
    -------
    accumulator, parts
        The block's class sums, and its registered crops per class (for a
        crop stack written by the caller).
    """
    acc = ClassAccumulator()
    parts: list[RegisteredPart] = []
    a_px = cfg.lattice_constant_A / pixel_size_A
    mask_px = cfg.mask_radius_A / pixel_size_A
    img = np.asarray(window, dtype=np.float64)
    for cls, grp in rows.groupby("class", sort=True):
        cls = str(cls)
        ref = references.get(cls)
        if ref is None:
            acc.reject(cls, "no_reference", len(grp))
            continue
        crops = extract_crops(img, grp["cx_px"].to_numpy(), grp["cy_px"].to_numpy(), crop,
                              margin=cfg.crop_margin_px, origin=origin, dtype=np.float64)
        if "op" in grp.columns and (grp["op"].fillna(0).to_numpy() != 0).any():
            # pair configurations: rotate / mirror each crop onto its canonical orientation
            from .pairs import transform_crops

            crops = transform_crops(crops, grp["op"].fillna(0).to_numpy(), grp["mirror_angle_deg"].fillna(90.0).to_numpy())
        ids = grp["row_id"].to_numpy()
        status = np.full(len(crops), "same", dtype=object)
        if cfg.orientation != "off":
            chk = check_orientation(crops, ref, period_px=a_px, angle_tolerance_deg=cfg.angle_tolerance_deg)
            status = chk.status
            acc.reject(cls, "rotated_grain", int(np.sum(status == "rotated")))
            keep = status != "rotated"
            if cfg.orientation == "reject":
                acc.reject(cls, "inverted_domain", int(np.sum(status == "inverted")))
                keep &= status == "same"
            crops, ids, status = map_orientation(crops[keep], status[keep]), ids[keep], status[keep]
        if not len(crops):
            continue
        shifts, score = register(central(crops, crop), ref, upsample=cfg.upsample,
                                 iterations=cfg.register_iterations, mask_radius_px=mask_px,
                                 max_shift_px=cfg.max_shift_px)
        ok = np.isfinite(shifts).all(axis=1) & (np.abs(shifts).max(axis=1) < cfg.crop_margin_px)
        acc.reject(cls, "registration_failed", int(np.sum(~ok)))
        if cfg.min_correlation is not None:
            low = ok & (score < cfg.min_correlation)
            acc.reject(cls, "low_correlation", int(low.sum()))
            ok &= ~low
        crops, ids, status, shifts = crops[ok], ids[ok], status[ok], shifts[ok]
        if not len(crops):
            continue
        acc.count_orientation(cls, status.tolist())
        shifted = apply_shifts(crops, shifts, crop=crop, method=cfg.shift_method)
        acc.add(cls, Moments.from_stack(shifted, shifts))
        parts.append(RegisteredPart(cls, shifted, ids, shifts, status))
    return acc, parts


def gather_crops(window: np.ndarray, origin: tuple[int, int], cx: np.ndarray, cy: np.ndarray,
                  crop: int, margin: int, ops: np.ndarray | None = None,
                  mirror: np.ndarray | None = None) -> np.ndarray:
    crops = extract_crops(window, cx, cy, crop, margin=margin, origin=origin, dtype=np.float32)
    if ops is not None and (ops != 0).any():
        if mirror is None:
            raise InputError("gather_crops needs the mirror angles (mirror_angle_deg) of pair crops "
                             "whose symmetry operations (op) are given")
        from .pairs import transform_crops

        crops = transform_crops(crops, ops, mirror).astype(np.float32)
    return crops


