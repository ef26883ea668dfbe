"""Small simulated crops shared by the averaging tests."""

from __future__ import annotations

import pytest

from stemscale.average import extract_crops

PS = 0.2074


def lattice_frame(offset_px=(0.0, 0.0), *, seed=0, dose=7300.0, rotation=0.0, shape=(160, 160), concentrations=None):
    """A pristine WSe2 frame whose lattice is moved by ``offset_px`` = (dy, dx) pixels."""
    from stemscale.simulate import Sample, simulate_frame

    sample = Sample(concentrations=concentrations or {}, offset_A=(offset_px[1] * PS, offset_px[0] * PS),
                    background_variation=0.0, rotation_deg=rotation)
    return simulate_frame(shape, sample=sample, seed=seed, dose_e_per_a2=dose, labels=False)


@pytest.fixture(scope="module")
def reference_crop():
    f = lattice_frame()
    return extract_crops(f.expected, [80], [80], 128)[0].astype(float)
