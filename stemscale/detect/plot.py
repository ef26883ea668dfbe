"""Overlay of detected defects on an image (a PNG for people to check)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..classes import DEFECT_CLASSES

__all__ = ["CLASS_COLOURS", "save_overlay"]

CLASS_COLOURS = {"SV": "#e41a1c", "DV": "#984ea3", "2Te": "#4daf4a", "TeSe": "#ffff33",
                 "MV": "#377eb8", "MSub": "#ff7f00"}


def save_overlay(
    image: np.ndarray, defects: pd.DataFrame, path: str | Path, *, title: str = "",
    class_names: dict[str, str] | None = None, dpi: int = 150,
) -> Path:
    """Write the image (robust contrast) with one open circle per defect, coloured by class.

    ``class_names`` relabels classes in the legend (e.g. ``{"2Te": "Se2"}`` in MoS2).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    img = np.asarray(image, dtype=np.float64)
    lo, hi = np.percentile(img, [0.5, 99.5])
    h, w = img.shape
    fig, ax = plt.subplots(figsize=(8, 8 * h / w + 0.6))
    ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    for c in DEFECT_CLASSES:
        d = defects[defects["class"] == c] if len(defects) else defects
        if len(d) == 0:
            continue
        label = (class_names or {}).get(c, c)
        ax.scatter(d["x_px"], d["y_px"], s=60, facecolors="none", edgecolors=CLASS_COLOURS[c],
                   linewidths=1.0, label=f"{label} ({len(d)})")
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    if len(defects):
        ax.legend(loc="upper right", fontsize=7, framealpha=0.7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
