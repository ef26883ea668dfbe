"""Crop margins follow the registration settings; references are centred on their defect's site
and share the pristine reference's domain.

A metal-site class (MV, MSub) used to be recentred on the nearest *chalcogen* site, a column
spacing (~9 px at 20.74 pm) away, which could exceed the crops' 8 px margin ("a shift of 8.67 px
exceeds the crops' margin of 8 px").
"""

from __future__ import annotations

import numpy as np
import pytest

from stemscale.average import AveragingConfig, build_reference, extract_crops, finish_reference, register, rot180
from stemscale.average.orientation import one_domain
from stemscale.classes import defect_site
from stemscale.lattice import fit_lattice

from .conftest import PS, lattice_frame

A_PX = AveragingConfig().lattice_constant_A / PS


def test_default_margin_is_unchanged_and_larger_searches_get_more():
    cfg = AveragingConfig()
    assert cfg.crop_margin_px == cfg.margin_px == 8
    assert cfg.largest_shift_px < cfg.crop_margin_px
    wide = AveragingConfig(max_shift_px=6.0)
    assert wide.crop_margin_px >= wide.largest_shift_px + 1 and wide.crop_margin_px > 8
    assert AveragingConfig(margin_px=12).crop_margin_px == 12


def test_registration_never_shifts_further_than_the_bound(reference_crop):
    cfg = AveragingConfig(max_shift_px=6.0)
    rng = np.random.default_rng(3)
    moved = np.stack([np.roll(reference_crop, tuple(rng.integers(-7, 8, 2)), axis=(0, 1)) for _ in range(12)])
    moved += rng.normal(0, reference_crop.std(), moved.shape)  # pure noise would pick any peak
    shifts, _ = register(moved, reference_crop, max_shift_px=cfg.max_shift_px,
                         iterations=cfg.register_iterations)
    assert np.abs(shifts).max() <= cfg.largest_shift_px


def test_defect_sites_of_the_classes():
    assert [defect_site(c) for c in ("SV", "DV", "2Te", "TeSe", "MV", "MSub", "pristine")] == \
        ["X", "X", "X", "X", "M", "M", "X"]
    assert defect_site("MV+MV(1,0)") == "M" and defect_site("SV+SV(1,0)") == "X"


def site_centred(site: str, rotation: float, margin: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """A noiseless crop (with margin) whose integer centre is the ``site`` column nearest the frame centre,
    and the offset (dy, dx) of the nearest *other* sublattice site from that centre."""
    f = lattice_frame(shape=(200, 200), rotation=rotation)
    t = f.truth
    own = t[t["site"] == site]
    k = np.argmin(np.hypot(own["x_px"] - 100, own["y_px"] - 100))
    cx, cy = int(round(own["x_px"].iloc[k])), int(round(own["y_px"].iloc[k]))
    other = t[t["site"] == ("X" if site == "M" else "M")]
    j = np.argmin(np.hypot(other["x_px"] - cx, other["y_px"] - cy))
    crops = extract_crops(f.expected, [cx], [cy], 128, margin=margin).astype(float)
    return crops, np.array([other["y_px"].iloc[j] - cy, other["x_px"].iloc[j] - cx])


def _site_offset(ref: np.ndarray, site: str) -> float:
    lat = fit_lattice(ref, A_PX)
    _, pos = lat.nearest(np.array([[64.0, 64.0]]), site)
    return float(np.hypot(*(pos[0] - 64.0)))


@pytest.mark.parametrize("rotation", [30.0, -30.0])
def test_metal_site_reference_is_centred_on_the_metal_site(rotation):
    crops, to_x = site_centred("M", rotation)
    cfg = AveragingConfig(reference_iterations=1)
    ref = build_reference(np.repeat(crops, 3, axis=0), crop=128, cfg=cfg, pixel_size_A=PS, site="M")
    assert _site_offset(ref, "M") < 0.1
    # Recentring it on the chalcogen site instead needs a shift beyond the 8 px margin: the
    # padding now follows the measured shift instead of failing.
    if np.abs(to_x).max() > cfg.margin_px:
        plain = crops[0, 8:-8, 8:-8]
        moved = finish_reference(plain, AveragingConfig(reference_symmetry=None), A_PX,
                                 cfg.mask_radius_A / PS, site="X")
        assert _site_offset(moved, "X") < 0.2


def test_references_are_mapped_onto_the_pristine_domain():
    crops, _ = site_centred("X", 7.0, margin=1)
    pristine = crops[0, 1:-1, 1:-1]
    inverted = rot180(crops)[0, 1:-1, 1:-1]  # 180 degrees about a chalcogen site: the mirror domain
    assert not fit_lattice(inverted, A_PX).orientation_difference(fit_lattice(pristine, A_PX))[1]
    same = pristine + 1.0
    out = one_domain({"pristine": pristine, "SV": inverted, "2Te": same}, A_PX)
    assert out["2Te"] is same  # the same domain: untouched
    assert fit_lattice(out["SV"], A_PX).orientation_difference(fit_lattice(pristine, A_PX))[1]
    assert np.allclose(out["SV"][1:, 1:], pristine[1:, 1:])
    assert one_domain({"SV": inverted}, A_PX)["SV"] is inverted  # no anchor: nothing to do
