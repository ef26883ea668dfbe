"""Can this image be measured with this model? One check for every front door.

``stemscale detect``, ``stemscale find``, ``stemscale run`` and the ``.stem``
accessor all ask :func:`check_sampling` before any block runs, so a mosaic
sampled too coarsely to resolve its columns, or a model trained on another
material, is reported up front instead of giving a silently thin table.
"""

from __future__ import annotations

import warnings

from ..errors import InputError, StemscaleWarning
from ..lattice import column_spacing, get_material

__all__ = ["MIN_PIXELS_PER_SPACING", "SamplingWarning", "check_sampling"]

#: Fewest pixels between neighbouring projected columns at which a per-column Gaussian fit and
#: the FCN's column maps still separate columns (below it neighbours merge into one peak).
MIN_PIXELS_PER_SPACING = 4.0


class SamplingWarning(StemscaleWarning):
    """The image can be processed, but not as the model or the fit expects."""


def check_sampling(pixel_size_angstrom: float, *, material: str | None = None,
                   model_material: str | None = None, fit_window: int | None = None,
                   where: str = "the mosaic") -> float:
    """Check that columns are resolved and the model fits the material.

    Parameters
    ----------
    pixel_size_angstrom
        Å per pixel of the image.
    material
        The specimen's material (``None``: WSe2).
    model_material
        The material the detection model was trained on (``None``: no model).
    fit_window
        Edge of the Gaussian-fit window in pixels, if fits will run.
    where
        Name of the input, for messages.

    Returns
    -------
    float
        Pixels between neighbouring projected columns.

    Raises
    ------
    InputError
        Columns closer than :data:`MIN_PIXELS_PER_SPACING` pixels, or an
        unknown material.

    Warns
    -----
    SamplingWarning
        A model trained on another material, or a fit window wider than two
        column spacings.
    """
    spec = get_material(material)
    name = material or "WSe2"
    spacing_px = column_spacing(name) / float(pixel_size_angstrom)
    if spacing_px < MIN_PIXELS_PER_SPACING:
        raise InputError(
            f"{where} has {pixel_size_angstrom * 100:.1f} pm pixels, so its {name} columns are only "
            f"{spacing_px:.1f} px apart (need >= {MIN_PIXELS_PER_SPACING:.0f} px, i.e. pixels <= "
            f"{column_spacing(name) / MIN_PIXELS_PER_SPACING * 100:.0f} pm, to resolve and fit each "
            "column); acquire at a finer sampling or check the pixel size in its metadata"
        )
    if model_material is not None and get_material(model_material) != spec:
        warnings.warn(
            f"the detection model was trained on {model_material}, but {where} is {name}; its "
            f"defect classes may be wrong (choose a model trained on {name})",
            SamplingWarning, stacklevel=2,
        )
    if fit_window is not None and fit_window > 2 * spacing_px:
        warnings.warn(
            f"a {fit_window} px fit window spans more than two column spacings "
            f"({spacing_px:.1f} px) in {where}; neighbouring columns will bias the fits",
            SamplingWarning, stacklevel=2,
        )
    return spacing_px
