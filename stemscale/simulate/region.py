"""Render any pixel rectangle of a simulated scene on its global tile grid (pure NumPy)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .scene import Scene

__all__ = ["RENDER_TILE", "render_region"]

#: Side of the global render tiles (pixels).  Changing it changes pixels at float rounding only.
RENDER_TILE = 512


def render_region(scene: Scene, y0: int, x0: int, height: int, width: int, tile: int = RENDER_TILE) -> tuple[np.ndarray, pd.DataFrame]:
    """Detected image (float32) of a pixel rectangle on the global tile grid, and its truth table."""
    rendered, columns = scene.render_region(y0, x0, height, width, tile=tile, return_columns=True)
    image = scene.detect(rendered["expected"], y0, x0)
    return image, scene.truth(y0, x0, height, width, columns=columns)
