"""Class averaging of a mosaic as a Dask tree reduction.

The orchestration around the pure functions of this package:

1. **Reference** (pass 0): a seeded sample of crops per class is cut on
   the workers and gathered (a few hundred crops, tens of MB); on the
   client an initial reference is refined by iterated registration and
   averaging, recentred on the defect's lattice site and optionally
   symmetrised.
2. **Reduction**: one task per mosaic block that owns defects (the
   block's core holds their crop centres) reads its haloed window of the
   lazy mosaic, cuts the crops, checks their lattice orientation, registers
   them to the class reference with sub-pixel accuracy, shifts them, writes
   them to the crop stack (its own zarr arrays) and folds them into a
   :class:`~stemscale.average.accumulator.ClassAccumulator`.  The partial
   accumulators are combined pairwise in a ``dask.bag`` tree reduction
   (small ``split_every``): no shuffle, and only the small accumulators,
   never the crops, travel to the client.
3. Optionally more passes, each using the previous average as reference.

Any chunking of the mosaic and any reduction tree give the same averages
to float rounding (sums are float64).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import dask
import numpy as np
import pandas as pd

from ..errors import InputError
from ..parallel.blocks import BlockSpec, owned_mask, plan_blocks
from .accumulator import ClassAccumulator, Moments, combine_all
from .crops import central, extract_crops
from .orientation import check_orientation, map_orientation
from .registration import apply_shifts, refine_reference, register

__all__ = ["AveragingConfig", "AveragingResult", "average_classes", "block_accumulate", "build_reference"]


@dataclass(frozen=True)
class AveragingConfig:
    """Settings of the class averaging (distances in Å where physical).

    Attributes
    ----------
    crop_px
        Crop edge (even); ``None`` takes the screening's crop (128 px at 20.74 pm).
    margin_px
        Extra pixels cut around each crop for sub-pixel shifting.
    lattice_constant_A
        Nominal lattice constant (orientation checks, lattice fits).
    mask_radius_A
        Radius of the central disc hidden during registration (the defect's
        own field and contrast), 0 to register on the whole crop.
    upsample, register_iterations, max_shift_px
        Registration settings (:func:`~stemscale.average.registration.register`).
    shift_method
        ``"fourier"`` or ``"spline"`` sub-pixel shifting.
    orientation
        ``"map"``: rotate inverted-domain crops by 180 degrees and reject
        rotated grains; ``"reject"``: reject both; ``"off"``: no check.
    angle_tolerance_deg
        Largest lattice-angle difference of a kept crop.
    min_correlation
        Reject crops whose registered correlation with the reference is
        lower (wrong detections, contamination); ``None`` keeps all.
    n_reference, reference_iterations
        Crops sampled per class to build the reference, and its refinement rounds.
    recentre
        Put the defect's lattice site on the reference's centre pixel.
    reference_symmetry
        ``"C3v"``, ``"C3"`` or ``None``: symmetrise the reference (not the data).
    passes
        Distributed registration passes; pass ``k > 1`` uses the average of
        pass ``k - 1`` as its reference.
    split_every
        Fan-in of the tree reduction.
    seed
        Seed of the reference sample.
    """

    crop_px: int | None = None
    margin_px: int = 8
    lattice_constant_A: float = 3.297
    mask_radius_A: float = 4.0
    upsample: int = 20
    register_iterations: int = 2
    max_shift_px: float = 4.0
    shift_method: str = "fourier"
    orientation: str = "map"
    angle_tolerance_deg: float = 3.0
    min_correlation: float | None = None
    n_reference: int = 256
    reference_iterations: int = 3
    recentre: bool = True
    reference_symmetry: str | None = "C3v"
    passes: int = 1
    split_every: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.orientation not in ("map", "reject", "off"):
            raise InputError(f"AveragingConfig.orientation must be 'map', 'reject' or 'off', got {self.orientation!r}")
        if self.shift_method not in ("fourier", "spline"):
            raise InputError(f"AveragingConfig.shift_method must be 'fourier' or 'spline', got {self.shift_method!r}")
        if self.margin_px < 2:
            raise InputError(f"AveragingConfig.margin_px must be >= 2 (sub-pixel shifts need room), got {self.margin_px}")
        if self.crop_px is not None and (self.crop_px < 16 or self.crop_px % 2):
            raise InputError(f"AveragingConfig.crop_px must be an even number >= 16, got {self.crop_px}")
        if self.split_every < 2:
            raise InputError(f"AveragingConfig.split_every must be >= 2, got {self.split_every}")
        if self.passes < 1:
            raise InputError(f"AveragingConfig.passes must be >= 1, got {self.passes}")
        if self.reference_symmetry not in (None, "C3", "C3v"):
            raise InputError(f"AveragingConfig.reference_symmetry must be None, 'C3' or 'C3v', got {self.reference_symmetry!r}")


@dataclass
class AveragingResult:
    """Class averages and everything needed to measure and bootstrap them.

    Attributes
    ----------
    accumulator
        Combined :class:`~stemscale.average.accumulator.ClassAccumulator`.
    references
        Class -> the reference the crops were registered to.
    pixel_size_A, crop_px
        Sampling and crop edge.
    stack_url
        Where the registered crops were written (``None`` if not kept).
    config
        The settings used.
    screening
        Screening counts, when known.
    """

    accumulator: ClassAccumulator
    references: dict[str, np.ndarray]
    pixel_size_A: float
    crop_px: int
    stack_url: str | None
    config: AveragingConfig
    screening: dict[str, Any] = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        return self.accumulator.classes

    def mean(self, cls: str) -> np.ndarray:
        return self.accumulator.mean(cls)

    def count(self, cls: str) -> int:
        m = self.accumulator.moments.get(cls)
        return int(m.count) if m else 0

    def summary(self) -> dict[str, Any]:
        return {
            "pixel_size_A": self.pixel_size_A,
            "crop_px": self.crop_px,
            "stack_url": self.stack_url,
            "config": asdict(self.config),
            "screening": self.screening,
            "classes": self.accumulator.summary(),
        }


# --------------------------------------------------------------------------- pure block work
def _symmetriser(cfg: AveragingConfig, a_px: float) -> Callable[[np.ndarray], np.ndarray] | None:
    if cfg.reference_symmetry is None:
        return None
    from ..strain.lattice import fit_lattice
    from .symmetry import symmetrise

    def sym(img: np.ndarray) -> np.ndarray:
        lat = fit_lattice(img, a_px)
        return symmetrise(img, group=cfg.reference_symmetry, mirror_angle_deg=lat.angle_deg + 90.0)

    return sym


def _recentre(cfg: AveragingConfig, a_px: float, mask_px: float) -> Callable[[np.ndarray], np.ndarray] | None:
    if not cfg.recentre:
        return None
    from ..strain.lattice import defect_site_shift

    return lambda img: defect_site_shift(img, a_px, exclude_radius_px=mask_px)


def _finish_reference(ref: np.ndarray, cfg: AveragingConfig, a_px: float, mask_px: float) -> np.ndarray:
    """Recentre (on the defect site) and symmetrise a reference."""
    rc = _recentre(cfg, a_px, mask_px)
    if rc is not None:
        d = np.asarray(rc(ref), dtype=float)
        if np.isfinite(d).all() and np.hypot(*d) > 1e-4:
            m = cfg.margin_px
            ref = apply_shifts(np.pad(ref, m, mode="reflect")[None], d[None], crop=ref.shape[-1])[0]
    sym = _symmetriser(cfg, a_px)
    return sym(ref) if sym is not None else ref


def build_reference(crops: np.ndarray, *, crop: int, cfg: AveragingConfig, pixel_size_A: float) -> np.ndarray:
    """A class reference from a sample of crops (with margin): orientation-mapped, registered, recentred."""
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
        ref = _finish_reference(ref, cfg, a_px, mask_px)
    return ref


def block_accumulate(
    window: np.ndarray,
    origin: tuple[int, int],
    rows: pd.DataFrame,
    references: dict[str, np.ndarray],
    cfg: AveragingConfig,
    pixel_size_A: float,
    crop: int,
    stack_url: str | None = None,
    block_key: str = "block",
) -> ClassAccumulator:
    """Everything one block does: crops -> orientation -> registration -> shift -> fold (+ stack part).

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
    """
    acc = ClassAccumulator()
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
                              margin=cfg.margin_px, origin=origin, dtype=np.float64)
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
        ok = np.isfinite(shifts).all(axis=1) & (np.abs(shifts).max(axis=1) < cfg.margin_px)
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
        if stack_url is not None:
            from .stack import write_part

            write_part(stack_url, cls, block_key, shifted, row_ids=ids, shifts=shifts, orientation=status)
            acc.parts.setdefault(cls, []).append((block_key, int(len(shifted))))
    return acc


def _gather_crops(window: np.ndarray, origin: tuple[int, int], cx: np.ndarray, cy: np.ndarray,
                  crop: int, margin: int, ops: np.ndarray | None = None,
                  mirror: np.ndarray | None = None) -> np.ndarray:
    crops = extract_crops(window, cx, cy, crop, margin=margin, origin=origin, dtype=np.float32)
    if ops is not None and (ops != 0).any():
        from .pairs import transform_crops

        crops = transform_crops(crops, ops, mirror).astype(np.float32)
    return crops


# --------------------------------------------------------------------------- orchestration
def _as_dask(image: Any, chunks: Sequence[int] | None) -> tuple[Any, float | None]:
    import dask.array as da

    pixel_size = None
    if hasattr(image, "dims") and hasattr(image, "data"):  # xarray.DataArray
        pixel_size = image.attrs.get("pixel_size_angstrom")
        if tuple(image.dims) != ("y", "x"):
            raise InputError(f"the mosaic must have dims ('y', 'x'), got {tuple(image.dims)}")
        image = image.data
    if not isinstance(image, da.Array):
        arr = np.asarray(image)
        image = da.from_array(arr, chunks=tuple(chunks) if chunks else (1024, 1024))
    elif chunks is not None:
        image = image.rechunk(tuple(chunks))
    if image.ndim != 2:
        raise InputError(f"the mosaic must be 2-D (y, x), got shape {image.shape}")
    return image, pixel_size


def _owned(table: pd.DataFrame, blocks: list[BlockSpec]) -> list[tuple[BlockSpec, pd.DataFrame]]:
    cx = table["cx_px"].to_numpy(dtype=float)
    cy = table["cy_px"].to_numpy(dtype=float)
    out = []
    for b in blocks:
        own = owned_mask(cy, cx, b.core)
        if own.any():
            out.append((b, table.loc[own]))
    return out


def average_classes(
    image: Any,
    defects: pd.DataFrame,
    *,
    pixel_size_A: float | None = None,
    crop_px: int | None = None,
    config: AveragingConfig | None = None,
    stack_url: str | os.PathLike[str] | None = None,
    references: dict[str, np.ndarray] | None = None,
    chunks: Sequence[int] | None = None,
    screening: dict[str, Any] | None = None,
) -> AveragingResult:
    """Register and average the crops of every class of a screened defect table.

    Parameters
    ----------
    image
        The mosaic: a lazy :class:`xarray.DataArray` from
        :func:`stemscale.io.open_mosaic` (blocks = its Dask chunks), a Dask
        array or a NumPy array.
    defects
        Screened rows (:attr:`ScreeningResult.kept`, or several concatenated,
        e.g. defects and pristine sites): ``class``, ``cx_px``, ``cy_px``
        (integer global pixel centres); optionally ``op`` and
        ``mirror_angle_deg`` (pair configurations from
        :func:`~stemscale.average.pairs.find_pairs`: each crop is mapped by
        that point-group operation first).  Row positions become the crop
        ids in the stack.
    pixel_size_A
        Å per pixel (default: the DataArray's ``pixel_size_angstrom``).
    crop_px
        Crop edge; default ``config.crop_px``, else 128 px scaled to 20.74 pm.
    config
        :class:`AveragingConfig`.
    stack_url
        Where to write the registered crops for the bootstrap (zarr); ``None``
        keeps only the sums.
    references
        Class references to start from (skips pass 0 for those classes).
    chunks
        Block shape for a NumPy input or to rechunk a Dask one.
    screening
        Screening counts to carry into the result.

    Returns
    -------
    AveragingResult
    """
    import dask.bag as db

    cfg = config or AveragingConfig()
    arr, ps_attr = _as_dask(image, chunks)
    ps = float(pixel_size_A if pixel_size_A is not None else (ps_attr or float("nan")))
    if not math.isfinite(ps) or ps <= 0:
        raise InputError("pixel_size_A is unknown: pass it, or an xarray mosaic with a pixel_size_angstrom attribute")
    missing = {"class", "cx_px", "cy_px"} - set(defects.columns)
    if missing:
        raise InputError(f"defects table lacks {sorted(missing)}; pass the 'kept' table of screen_defects")
    crop = int(crop_px or cfg.crop_px or (round(128 * 0.2074 / ps / 2) * 2))
    table = defects.reset_index(drop=True).copy()
    table["row_id"] = np.arange(len(table))
    table["class"] = table["class"].astype(str)
    if table.empty:
        raise InputError("no defects to average (the screening kept none)")
    # Crops (with the shifting margin) that would leave the mosaic cannot be averaged.
    from .screening import crop_inside

    inside = crop_inside(table["cx_px"].to_numpy(np.int64), table["cy_px"].to_numpy(np.int64), crop,
                         cfg.margin_px, arr.shape)
    outside = table.loc[~inside, "class"].value_counts().to_dict()
    table = table.loc[inside]
    if table.empty:
        raise InputError("every crop (with its registration margin) leaves the mosaic")
    halo = crop // 2 + cfg.margin_px + 2
    blocks = plan_blocks(arr.shape, arr.chunks, halo)
    owned = _owned(table, blocks)
    n_owned = sum(len(t) for _, t in owned)
    if n_owned != len(table):  # pragma: no cover - crop_inside already guarantees it
        raise InputError(f"{len(table) - n_owned} crop centres lie outside the mosaic of shape {arr.shape}")
    classes = sorted(table["class"].unique())
    refs: dict[str, np.ndarray] = dict(references or {})
    todo = [c for c in classes if c not in refs]
    if todo:
        refs.update(_pass0(arr, owned, todo, crop, cfg, ps))

    url = os.fspath(stack_url) if stack_url is not None else None
    acc = ClassAccumulator()
    for p in range(int(cfg.passes)):
        if url is not None:
            from .stack import create_stack

            create_stack(url, crop=crop, classes=classes, details={"pixel_size_A": ps, "pass": p + 1})
        refs_d = dask.delayed(refs, pure=True)
        parts = []
        for b, rows in owned:
            (ys, xs) = b.window_slices()
            cols = ["class", "cx_px", "cy_px", "row_id"] + [c for c in ("op", "mirror_angle_deg") if c in rows.columns]
            parts.append(dask.delayed(_partition)(
                arr[ys, xs], b.origin, rows[cols], refs_d, cfg, ps, crop,
                url, b.key, dask_key_name=f"average-block-{b.key}-{p}-{dask.base.tokenize(rows, cfg, url)}"))
        bag = db.from_delayed(parts)
        acc = bag.reduction(combine_all, combine_all, split_every=int(cfg.split_every)).compute(
            scheduler=_scheduler())
        if p + 1 < cfg.passes:
            a_px = cfg.lattice_constant_A / ps
            refs = {c: _finish_reference(acc.mean(c), cfg, a_px, cfg.mask_radius_A / ps)
                    for c in acc.classes}
    for c, k in outside.items():
        acc.reject(str(c), "crop_outside", int(k))
    if url is not None:
        from .stack import mark_stack_complete

        mark_stack_complete(url, counts={c: acc.moments[c].count for c in acc.classes})
    return AveragingResult(acc, refs, ps, crop, url, cfg, dict(screening or {}))


def _scheduler() -> str | None:
    """The active scheduler: a distributed client or a configured one; else threads.

    (``dask.bag`` would default to processes, which re-import ``__main__``.)
    """
    if dask.config.get("scheduler", None) is not None:
        return None
    try:
        from distributed import default_client

        default_client()
        return None
    except (ImportError, ValueError):
        return "threads"


def _partition(*args: Any) -> list[ClassAccumulator]:
    return [block_accumulate(*args)]


def _pass0(arr: Any, owned: list[tuple[BlockSpec, pd.DataFrame]], classes: list[str], crop: int,
           cfg: AveragingConfig, ps: float) -> dict[str, np.ndarray]:
    """Gather a seeded sample of crops per class and build references on the client."""
    rng = np.random.default_rng(cfg.seed)
    # sort by row id so that the sample (hence the reference) does not depend on the chunking
    allrows = pd.concat([t.assign(_block=i) for i, (_, t) in enumerate(owned)]).sort_values("row_id")
    chosen = []
    for cls in classes:
        sub = allrows[allrows["class"] == cls]
        k = min(len(sub), int(cfg.n_reference))
        chosen.append(sub.iloc[np.sort(rng.choice(len(sub), k, replace=False))])
    sample = pd.concat(chosen)
    tasks, order = [], []
    for i, grp in sample.groupby("_block", sort=True):
        b = owned[int(i)][0]
        ys, xs = b.window_slices()
        ops = grp["op"].fillna(0).to_numpy() if "op" in grp.columns else None
        mir = grp["mirror_angle_deg"].fillna(90.0).to_numpy() if "mirror_angle_deg" in grp.columns else None
        tasks.append(dask.delayed(_gather_crops)(arr[ys, xs], b.origin, grp["cx_px"].to_numpy(),
                                                 grp["cy_px"].to_numpy(), crop, cfg.margin_px, ops, mir))
        order.append(grp["class"].to_numpy())
    stacks = dask.compute(*tasks, scheduler=_scheduler())
    crops = np.concatenate(stacks, axis=0)
    labels = np.concatenate(order)
    return {cls: build_reference(crops[labels == cls], crop=crop, cfg=cfg, pixel_size_A=ps) for cls in classes}
