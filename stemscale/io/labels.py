"""FCN probability maps of a run as OME-NGFF 0.5 label images, written block by block.

With ``run_mosaic(..., labels=True)`` every block task also writes its *core*
(never its halo) of two label images::

    <mosaic>.zarr/labels/            group: ome.labels = ["classes", "probabilities"]
      classes/                       image-label: colours and class names per value
        0/, 1/, ...                  uint8 (y, x): argmax class, one level per mosaic level
      probabilities/                 image-label (no colours: values are not classes)
        0/, 1/, ...                  uint8 (c, y, x): round(255 * p) per class

or the same layout at the root of a separate store (``labels_store=``) when the
mosaic is read-only.  The client creates every array before the blocks run,
with shards equal to the block shape (by default the image's own shards), so
each task writes whole shards only: no two tasks ever share a shard.  A task
writes its labels before its table parts and its done-marker, so a resumed
run rewrites exactly the blocks it lacks and ends with the same arrays.  Each
label image carries ``stemscale.complete``, false until the run's last block
is done (as for mosaics, see :mod:`stemscale.io.mosaic`).

Pyramid levels follow the mosaic's (needed for a valid NGFF image): level
``k`` holds the probabilities averaged over 2^k x 2^k pixels and their argmax,
computed by each block from its own core, which needs block shapes divisible
by ``2**(levels - 1)``.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import zarr
from zarr.abc.store import Store

from ..errors import InputError
from .zarr_nodes import group_at, json_object

__all__ = [
    "CLASSES",
    "PROBABILITIES",
    "LabelsTarget",
    "class_colors",
    "label_image_metadata",
    "prepare_labels",
    "write_block_labels",
    "finish_labels",
    "block_label_levels",
    "quantise",
]

log = logging.getLogger(__name__)

#: Names of the two label images inside the labels group.
CLASSES = "classes"
PROBABILITIES = "probabilities"
LABELS_GROUP = "labels"

# Colour-blind-safe colours (Okabe-Ito) per FCN class; background is transparent.
_COLORS = {
    "background": (0, 0, 0, 0),
    "M": (0, 114, 178, 255),
    "X": (86, 180, 233, 255),
    "SV": (213, 94, 0, 255),
    "DV": (230, 159, 0, 255),
    "2Te": (0, 158, 115, 255),
    "TeSe": (240, 228, 66, 255),
    "MV": (204, 121, 167, 255),
    "MSub": (120, 60, 160, 255),
}
_SPARE = [(255, 0, 0, 255), (0, 255, 0, 255), (0, 0, 255, 255), (255, 0, 255, 255),
          (0, 255, 255, 255), (128, 128, 128, 255)]


def class_colors(classes: Sequence[str]) -> list[tuple[int, int, int, int]]:
    """RGBA colour of each class (known classes fixed, others from a spare palette)."""
    out, spare = [], 0
    for name in classes:
        if name in _COLORS:
            out.append(_COLORS[name])
        else:
            out.append(_SPARE[spare % len(_SPARE)])
            spare += 1
    return out


@dataclass(frozen=True)
class LabelsTarget:
    """Picklable location and layout of a run's label images (what a block task needs).

    Attributes
    ----------
    url
        Store holding the labels group (the mosaic, or a separate store).
    path
        Path of the labels group inside that store (``"labels"`` in the mosaic,
        ``""`` for a separate store).
    classes
        Names of the FCN's output channels (value ``i`` of ``classes`` is ``classes[i]``).
    probabilities
        Whether the quantised probability image is written too.
    levels
        Resolution levels (the mosaic's).
    storage_options
        fsspec options of ``url``.
    """

    url: str
    path: str
    classes: tuple[str, ...]
    probabilities: bool = False
    levels: int = 1
    storage_options: dict = field(default_factory=dict)

    @property
    def images(self) -> tuple[str, ...]:
        return (CLASSES, PROBABILITIES) if self.probabilities else (CLASSES,)

    def image_path(self, name: str) -> str:
        return f"{self.path}/{name}" if self.path else name

    def open_store(self, read_only: bool = False) -> Store:
        from .store import make_store

        return make_store(self.url, storage_options=self.storage_options, read_only=read_only)

    def open_array(self, name: str, level: int, mode: str = "r+") -> zarr.Array:
        return zarr.open_array(store=self.open_store(), path=f"{self.image_path(name)}/{level}",
                               mode=mode, zarr_format=3)

    def to_dict(self) -> dict[str, Any]:
        """What a run manifest records (and compares on resume)."""
        return {"store": self.url, "path": self.path, "probabilities": self.probabilities}


# ----------------------------------------------------------------------------- metadata


def label_image_metadata(
    name: str,
    classes: Sequence[str],
    pixel_size: float,
    translation: tuple[float, float],
    levels: int,
    source: str,
) -> dict[str, Any]:
    """The NGFF 0.5 ``ome`` block of one label image (``classes`` or ``probabilities``)."""
    from .ngff import multiscales_metadata

    ome = multiscales_metadata(pixel_size, name=name, translation=translation, levels=levels)
    ms = ome["multiscales"][0]
    ms["type"] = ("mean (2x2 binning) of the probabilities, then argmax" if name == CLASSES
                  else "mean (2x2 binning)") if levels > 1 else "none"
    if name == PROBABILITIES:
        ms["axes"] = [{"name": "c", "type": "channel"}, *ms["axes"]]
        for dataset in ms["datasets"]:
            for transform in dataset["coordinateTransformations"]:
                key = transform["type"]
                value = transform[key]
                transform[key] = [1.0 if key == "scale" else 0.0, *value]
        ome["image-label"] = {"source": {"image": source}}
    else:
        ome["image-label"] = {
            "colors": [{"label-value": i, "rgba": list(rgba)}
                       for i, rgba in enumerate(class_colors(classes))],
            "properties": [{"label-value": i, "class": c} for i, c in enumerate(classes)],
            "source": {"image": source},
        }
    return ome


def _layout(shape: Sequence[int], block: Sequence[int], chunks: Sequence[int],
            level: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(shape, chunks, shards) of a label level: shards = the block shape at that level."""
    f = 2**level
    lshape = tuple(-(-int(n) // f) for n in shape)
    shards = tuple(max(1, min(int(b) // f, n)) for b, n in zip(block, lshape))
    inner = tuple(c if s % c == 0 else s for c, s in zip((int(c) for c in chunks), shards))
    return lshape, inner, shards


def prepare_labels(
    target: LabelsTarget,
    *,
    shape: Sequence[int],
    block_shape: Sequence[int],
    chunks: Sequence[int],
    pixel_size: float,
    translation: tuple[float, float],
    source: str,
    run_id: str,
) -> bool:
    """Create (or reuse) the label arrays of a run, on the client, before any block runs.

    Arrays already made by the same run (``stemscale.run == run_id``, all levels
    present) are kept so a resumed run only fills in its missing blocks;
    anything else of the same name is replaced.  Other label images in the
    group (from other tools) are kept and stay listed.

    Returns
    -------
    bool
        True when arrays were (re)created, so every block must be written again.
    """
    from .mosaic import _compressors

    levels = int(target.levels)
    if levels > 1 and any(int(b) % 2 ** (levels - 1) for b in block_shape):
        raise InputError(
            f"labels of a mosaic with {levels} resolution levels need a block shape divisible "
            f"by {2 ** (levels - 1)}, got {tuple(block_shape)}; use the store's shards "
            "(the default) or a multiple of them"
        )
    where = f"{target.url}{'/' + target.path if target.path else ''}"
    try:
        store = target.open_store()
        root = zarr.open_group(store=store, path=target.path, mode="a", zarr_format=3)
    except Exception as exc:
        raise InputError(
            f"cannot write labels to '{where}' ({type(exc).__name__}: {exc}); pass "
            "labels_store=<path or URL> to write them to a separate store"
        ) from None
    ome = json_object(root.attrs.get("ome", {}), f"the 'ome' attribute of '{where}'")
    listed = [p for p in ome.get("labels", []) if p not in target.images]
    created = False
    dtype = np.dtype("uint8")
    for name in target.images:
        if _reusable(root, name, run_id, levels):
            continue
        created = True
        if name in root:
            del root[name]
        meta = label_image_metadata(name, target.classes, pixel_size, translation, levels, source)
        image = root.create_group(name, attributes={
            "ome": meta,
            "stemscale": {"complete": False, "run": run_id, "source": source,
                          "classes": list(target.classes),
                          **({"quantisation": "probability = value / 255"}
                             if name == PROBABILITIES else {})},
        })
        n_c = len(target.classes)
        for level in range(levels):
            lshape, inner, shards = _layout(shape, block_shape, chunks, level)
            if name == PROBABILITIES:
                lshape, inner, shards = (n_c, *lshape), (n_c, *inner), (n_c, *shards)
                dims: tuple[str, ...] = ("c", "y", "x")
            else:
                dims = ("y", "x")
            image.create_array(str(level), shape=lshape, dtype=dtype, chunks=inner, shards=shards,
                               compressors=_compressors(dtype), fill_value=0,
                               dimension_names=dims)
    ome.update(version=ome.get("version", "0.5"), labels=[*listed, *target.images])
    root.attrs["ome"] = ome
    return created


def _reusable(root: zarr.Group, name: str, run_id: str, levels: int) -> bool:
    if name not in root:
        return False
    try:
        image = root[name]
        if not isinstance(image, zarr.Group):
            return False
        block = json_object(image.attrs.get("stemscale", {}), "the 'stemscale' attribute")
        if block.get("run") != run_id:
            return False
        return all(str(k) in image for k in range(levels))
    except Exception:  # damaged metadata: rewrite
        return False


# ----------------------------------------------------------------------------- blocks


def _bin2(probs: np.ndarray) -> np.ndarray:
    """Mean over 2x2 pixels of the last two axes; an odd edge is averaged with itself."""
    ny, nx = probs.shape[-2:]
    work = probs
    if ny % 2:
        work = np.concatenate([work, work[..., -1:, :]], axis=-2)
    if nx % 2:
        work = np.concatenate([work, work[..., :, -1:]], axis=-1)
    c = work.shape[0]
    return work.reshape(c, work.shape[1] // 2, 2, work.shape[2] // 2, 2).mean(axis=(2, 4),
                                                                              dtype=np.float32)


def quantise(probs: np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] as uint8 0-255 (value / 255 recovers them to 0.2 %)."""
    return np.rint(np.clip(probs, 0.0, 1.0) * 255.0).astype(np.uint8)


def block_label_levels(core_probs: np.ndarray | None, core_shape: Sequence[int], levels: int,
                       n_classes: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(classes uint8 (h, w), probabilities uint8 (c, h, w)) of a block's core at every level.

    ``core_probs`` is None for a blank block (constant pixels, never sent through
    the network): it is written as background with certainty.
    """
    if core_probs is None:
        core_probs = np.zeros((n_classes, *core_shape), dtype=np.float32)
        core_probs[0] = 1.0
    probs = np.asarray(core_probs, dtype=np.float32)
    out = []
    for level in range(int(levels)):
        if level:
            probs = _bin2(probs)
        out.append((np.argmax(probs, axis=0).astype(np.uint8), quantise(probs)))
    return out


def _write_whole_shards(array: zarr.Array, data: np.ndarray, origin: Sequence[int]) -> None:
    """Write ``data`` at ``origin`` (y0, x0) of the last two axes, refusing partial shards."""
    shards = tuple(array.shards or array.chunks)[-2:]
    n = array.shape[-2:]
    y0, x0 = (int(o) for o in origin)
    stops = (y0 + data.shape[-2], x0 + data.shape[-1])
    for start, stop, size, length in zip((y0, x0), stops, shards, n):
        if start % size or (stop % size and stop != length) or stop > length:
            raise InputError(
                f"label block [{y0}:{stops[0]}, {x0}:{stops[1]}] is not aligned to whole "
                f"shards of {shards} (array shape {array.shape})"
            )
    array[..., y0:stops[0], x0:stops[1]] = data


def write_block_labels(target: LabelsTarget, core: Sequence[int],
                       core_probs: np.ndarray | None, name: str = "block") -> None:
    """Write a block's core of every label level (whole shards only).

    Parameters
    ----------
    target
        Where the label images live (made by :func:`prepare_labels`).
    core
        ``(y0, y1, x0, x1)`` of the block's core in level-0 pixels.
    core_probs
        Class probabilities (C, h, w) on the core's pixel grid, or None for a
        blank block.
    name
        The block's name, for messages.
    """
    y0, y1, x0, x1 = (int(v) for v in core)
    core_arr = None
    if core_probs is not None:
        core_arr = np.asarray(core_probs)
        if core_arr.shape != (len(target.classes), y1 - y0, x1 - x0):
            raise InputError(f"block {name}: probability maps of shape {core_arr.shape} do not "
                             f"match the block or the model's {len(target.classes)} classes")
    for level, (classes, probs_u8) in enumerate(
        block_label_levels(core_arr, (y1 - y0, x1 - x0), target.levels, len(target.classes))
    ):
        f = 2**level
        origin = (y0 // f, x0 // f)
        _write_whole_shards(target.open_array(CLASSES, level), classes, origin)
        if target.probabilities:
            _write_whole_shards(target.open_array(PROBABILITIES, level), probs_u8, origin)


def finish_labels(target: LabelsTarget) -> None:
    """Mark every label image complete (after the run's last block)."""
    from .mosaic import mark_complete

    root = zarr.open_group(store=target.open_store(), path=target.path, mode="r+", zarr_format=3)
    for name in target.images:
        mark_complete(group_at(root, name, str(root.store_path)))


def new_run_id() -> str:
    return uuid.uuid4().hex
