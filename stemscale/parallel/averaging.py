"""Class averaging of a mosaic as a Dask tree reduction.

The orchestration around the pure functions of :mod:`stemscale.average`:

1. **Reference** (pass 0): a seeded sample of crops per class is cut on
   the workers and gathered (a few hundred crops, tens of MB); on the
   client an initial reference is refined by iterated registration and
   averaging, recentred on the defect's lattice site and optionally
   symmetrised (:func:`stemscale.average.build_reference`).
2. **Reduction**: one task per mosaic block that owns defects (the
   block's core holds their crop centres) reads its haloed window of the
   lazy mosaic and runs :func:`stemscale.average.register_block` on it,
   writes the registered crops to the crop stack (its own zarr arrays) and
   returns its :class:`~stemscale.average.accumulator.ClassAccumulator`.
   The partial accumulators are combined pairwise in a ``dask.bag`` tree
   reduction (small ``split_every``): no shuffle, and only the small
   accumulators, never the crops, travel to the client.
3. Optionally more passes, each using the previous average as reference.

Any chunking of the mosaic and any reduction tree give the same averages
to float rounding (sums are float64).
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import dask
import numpy as np
import pandas as pd

from ..average.accumulator import ClassAccumulator, combine_all
from ..average.config import AveragingConfig, AveragingResult
from ..average.orientation import one_domain
from ..average.reference import build_reference, finish_reference, gather_crops, register_block
from ..classes import defect_site
from ..errors import InputError
from .blocks import BlockSpec, owned_mask, plan_blocks
from ..executor import scheduler_for_collections

__all__ = ["average_classes", "block_accumulate"]


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
    """One block's averaging task: :func:`~stemscale.average.register_block`, then its crop-stack part.

    Parameters
    ----------
    window, origin, rows, references, cfg, pixel_size_A, crop
        As for :func:`stemscale.average.register_block`.
    stack_url
        Crop stack to write this block's registered crops to (``None``: none).
    block_key
        Name of this block's part in the stack.
    """
    acc, parts = register_block(window, origin, rows, references, cfg, pixel_size_A, crop)
    if stack_url is not None:
        from ..io.crop_stack import write_part

        for part in parts:
            write_part(stack_url, part.cls, block_key, part.crops, row_ids=part.row_ids,
                       shifts=part.shifts, orientation=part.orientation)
            acc.parts.setdefault(part.cls, []).append((block_key, int(len(part.crops))))
    return acc


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
    from ..average.screening import crop_inside

    margin = cfg.crop_margin_px  # room for the largest shift the registration can return
    inside = crop_inside(table["cx_px"].to_numpy(np.int64), table["cy_px"].to_numpy(np.int64), crop,
                         margin, arr.shape)
    outside = table.loc[~inside, "class"].value_counts().to_dict()
    table = table.loc[inside]
    if table.empty:
        raise InputError("every crop (with its registration margin) leaves the mosaic")
    halo = crop // 2 + margin + 2
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
    if cfg.orientation != "off":
        # One domain for every class: each class maps (or keeps) its crops by its reference's
        # domain, so the references must share the pristine one's (a no-op on one domain).
        refs = one_domain(refs, cfg.lattice_constant_A / ps)

    url = os.fspath(stack_url) if stack_url is not None else None
    acc = ClassAccumulator()
    for p in range(int(cfg.passes)):
        if url is not None:
            from ..io.crop_stack import create_stack

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
            scheduler=scheduler_for_collections())
        if p + 1 < cfg.passes:
            a_px = cfg.lattice_constant_A / ps
            refs = {c: finish_reference(acc.mean(c), cfg, a_px, cfg.mask_radius_A / ps,
                                        defect_site(c))
                    for c in acc.classes}
    for c, k in outside.items():
        acc.reject(str(c), "crop_outside", int(k))
    if url is not None:
        from ..io.crop_stack import mark_stack_complete

        mark_stack_complete(url, counts={c: acc.moments[c].count for c in acc.classes})
    from ..io.crop_stack import CropStack

    return AveragingResult(acc, refs, ps, crop, url, cfg, dict(screening or {}),
                           stack_opener=CropStack.open if url is not None else None)


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
        tasks.append(dask.delayed(gather_crops)(arr[ys, xs], b.origin, grp["cx_px"].to_numpy(),
                                                 grp["cy_px"].to_numpy(), crop, cfg.crop_margin_px,
                                                 ops, mir))
        order.append(grp["class"].to_numpy())
    stacks = dask.compute(*tasks, scheduler=scheduler_for_collections())
    crops = np.concatenate(stacks, axis=0)
    labels = np.concatenate(order)
    return {cls: build_reference(crops[labels == cls], crop=crop, cfg=cfg, pixel_size_A=ps,
                                 site=defect_site(cls)) for cls in classes}
