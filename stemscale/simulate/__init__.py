"""Ground-truth simulation of ADF-STEM images of 2D materials.

``simulate_frame`` renders one frame (image, noiseless expectation, label
masks, truth table of every atom column); :func:`render_region` renders any
pixel rectangle of a scene on its global tile grid, which
:func:`stemscale.parallel.simulate_mosaic` maps over the shards of a zarr mosaic.  Both are
pure functions of a seed and global pixel / lattice indices, so a frame is a
window of the same image a mosaic shows, whatever the chunking.

Image model: incoherent ADF imaging, counts = dose x pixel area x
sum_atoms sigma_a PSF(r - r_a), with the probe PSF computed from the
aperture and aberrations (:mod:`.probe`), per-atom detected cross-sections
calibrated to 80 kV multislice numbers (:mod:`.materials`), exact sub-pixel
positions through a non-uniform FFT (:mod:`.render`), then background,
Poisson noise, gain and offset; scan distortions move image, labels and
truth together.
"""

from .fields import OscillatingRadialField, oscillating_radial_field
from .frame import Frame, simulate_frame
from .materials import MATERIALS, cross_section
from .probe import Microscope, probe_kernel
from .region import RENDER_TILE, render_region
from .sample import DEFAULT_CONCENTRATIONS, Distortions, Sample, Structure
from .scene import LABEL_CHANNELS, TRUTH_COLUMNS, Scene
from .structure import lattice_geometry


def mx2_columns(sample: "Sample | None" = None, box=(0.0, 100.0, 0.0, 100.0), seed: int = 0):
    """Truth-like table of the sample's atom columns inside a box of the sample plane (Å).

    Parameters
    ----------
    sample
        The specimen (default WSe2).
    box
        (xmin, xmax, ymin, ymax) in Å.
    seed
        Seed of defects, offset and rotation.

    Returns
    -------
    pandas.DataFrame
        column_id, x_A, y_A (displaced), site, species, defect, dx_pm, dy_pm, n_atoms, cross_section_A2.
    """
    import numpy as np
    import pandas as pd

    from ..classes import DEFECT_CLASSES
    from ..errors import InputError
    from .scene import check_seed
    from .structure import columns_in_box

    sample = sample if sample is not None else Sample()
    key = check_seed(seed)
    try:
        xmin, xmax, ymin, ymax = (float(b) for b in box)
    except (TypeError, ValueError):
        raise InputError(f"box must be (xmin, xmax, ymin, ymax) in Å, got {box!r}") from None
    c = columns_in_box(sample, key, (xmin, xmax, ymin, ymax))
    names = np.array(c.species_names, dtype=object)
    defects = np.array(list(DEFECT_CLASSES) + [""], dtype=object)
    return pd.DataFrame(
        {
            "column_id": c.column_id, "x_A": c.x, "y_A": c.y,
            "site": np.where(c.site == 0, "M", "X").astype(object),
            "species": names[c.species], "defect": defects[c.defect],
            "dx_pm": c.dx_pm, "dy_pm": c.dy_pm, "n_atoms": c.n_atoms, "cross_section_A2": c.weight,
        }
    )


__all__ = [
    "RENDER_TILE",
    "render_region",
    "Microscope",
    "Sample",
    "Structure",
    "Distortions",
    "Frame",
    "Scene",
    "simulate_frame",
    "mx2_columns",
    "oscillating_radial_field",
    "OscillatingRadialField",
    "probe_kernel",
    "cross_section",
    "lattice_geometry",
    "MATERIALS",
    "DEFAULT_CONCENTRATIONS",
    "LABEL_CHANNELS",
    "TRUTH_COLUMNS",
]
