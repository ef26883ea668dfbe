"""Reading single raw frames: TIFF (ImageJ / OME / FEI / plain), EMD (Velox, Berkeley)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from stemscale import InputError, MetadataError, MosaicNotFoundError
from stemscale.io.frames import read_frame
from stemscale.io.units import to_angstrom

from .conftest import write_velox_emd

PS_NM = 0.02074  # the paper's 20.74 pm pixel, written in nm
PS_A = 0.2074


@pytest.fixture()
def counts(rng):
    return rng.poisson(50, size=(48, 64)).astype(np.uint16)


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize(
    "value, unit, expected",
    [(12.7, "pm", 0.127), (0.0127, "nm", 0.127), (0.127, "Å", 0.127), (1.27e-11, "m", 0.127),
     (1.5, "µm", 15000.0), (1.5, "μm", 15000.0), (1.5, "um", 15000.0), (0.0127, "[n_m]", 0.127),
     (1.5, "micron", 15000.0), (1.0, "mm", 1e7)],
)
def test_length_units_to_angstrom(value, unit, expected):
    assert to_angstrom(value, unit, "test") == pytest.approx(expected)


def test_reciprocal_and_unknown_units_are_refused():
    with pytest.raises(MetadataError, match="reciprocal"):
        to_angstrom(0.5, "1/nm", "'dp.dm4' calibration")
    with pytest.raises(MetadataError, match="unknown length unit"):
        to_angstrom(0.5, "furlong-ish", "'x.tif' calibration")


# --------------------------------------------------------------------------- TIFF


def test_imagej_tiff_pixel_size(tmp_path, counts):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, counts, imagej=True, resolution=(1 / PS_NM, 1 / PS_NM),
                     metadata={"unit": "nm"})
    frame = read_frame(path, lazy=False)
    np.testing.assert_array_equal(frame.data, counts)
    assert frame.pixel_size_angstrom == pytest.approx(PS_A, rel=1e-6)
    assert "ImageJ" in frame.pixel_size_origin


def test_ome_tiff_pixel_size_and_position(tmp_path, counts):
    path = tmp_path / "ome.tif"
    tifffile.imwrite(path, counts, ome=True, metadata={
        "PhysicalSizeX": 20.74, "PhysicalSizeXUnit": "pm",
        "PhysicalSizeY": 20.74, "PhysicalSizeYUnit": "pm",
        "Plane": {"PositionX": [1.5], "PositionXUnit": ["µm"],
                  "PositionY": [2.0], "PositionYUnit": ["µm"]},
    })
    frame = read_frame(path)
    assert frame.pixel_size_angstrom == pytest.approx(PS_A)
    assert frame.position_angstrom == pytest.approx((2.0e4, 1.5e4))


def test_fei_tiff_tags(tmp_path, counts):
    ini = ("[Scan]\nPixelWidth=2.074e-11\nPixelHeight=2.074e-11\n[EBeam]\nHV=80000\n"
           "[Stage]\nStageX=1e-06\nStageY=2e-06\n")
    path = tmp_path / "fei.tif"
    tifffile.imwrite(path, counts, extratags=[(34682, "s", 0, ini, True)])
    frame = read_frame(path)
    assert frame.pixel_size_angstrom == pytest.approx(PS_A)
    assert frame.high_tension_kv == pytest.approx(80.0)
    assert frame.position_angstrom == pytest.approx((2.0e4, 1.0e4))


def test_plain_tiff_needs_pixel_size(tmp_path, counts):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, counts, resolution=(72, 72))  # printer dpi must not be trusted
    with pytest.raises(MetadataError, match=r"plain\.tif' has no pixel size.*--pixel-size"):
        read_frame(path)
    frame = read_frame(path, pixel_size=PS_A)
    assert frame.pixel_size_angstrom == PS_A and frame.pixel_size_origin == "user"


@pytest.mark.parametrize("bad", [0, -0.2, float("nan"), "wide"])
def test_user_pixel_size_must_be_positive(tmp_path, counts, bad):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, counts)
    with pytest.raises(InputError, match="pixel size must be a"):
        read_frame(path, pixel_size=bad)


def test_user_pixel_size_overrides_file_and_keeps_it(tmp_path, counts):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, counts, imagej=True, resolution=(1 / PS_NM, 1 / PS_NM),
                     metadata={"unit": "nm"})
    frame = read_frame(path, pixel_size=0.25)
    assert frame.pixel_size_angstrom == 0.25
    assert frame.extra["file_pixel_size_angstrom"] == pytest.approx(PS_A, rel=1e-6)


def test_stack_needs_frame_or_sum(tmp_path, rng):
    stack = rng.poisson(20, size=(4, 32, 40)).astype(np.uint16)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack, photometric="minisblack")
    with pytest.raises(InputError, match=r"stack of 4 frames.*--frame N.*--sum"):
        read_frame(path, pixel_size=PS_A)
    np.testing.assert_array_equal(read_frame(path, pixel_size=PS_A, frame=2, lazy=False).data,
                                  stack[2])
    summed = read_frame(path, pixel_size=PS_A, reduce="sum", lazy=False).data
    np.testing.assert_array_equal(summed, stack.astype(np.int64).sum(axis=0))
    with pytest.raises(InputError, match="frame 7 does not exist"):
        read_frame(path, pixel_size=PS_A, frame=7)


def test_rgb_tiff_is_refused(tmp_path):
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, np.zeros((16, 16, 3), np.uint8), photometric="rgb")
    with pytest.raises(InputError, match="RGB"):
        read_frame(path, pixel_size=PS_A)


def test_unreadable_missing_and_unsupported_files(tmp_path):
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"this is not a tiff at all")
    with pytest.raises(InputError, match=r"cannot read '.*broken\.tif' as a TIFF"):
        read_frame(broken, pixel_size=PS_A)
    with pytest.raises(MosaicNotFoundError, match=r"missing\.dm4' does not exist"):
        read_frame(tmp_path / "missing.dm4")
    (tmp_path / "frame.png").write_bytes(b"\x89PNG")
    with pytest.raises(InputError, match=r"unsupported file type '\.png'"):
        read_frame(tmp_path / "frame.png")
    broken_dm = tmp_path / "broken.dm4"
    broken_dm.write_bytes(b"\x00" * 64)
    with pytest.raises(InputError, match="as a DigitalMicrograph file"):
        read_frame(broken_dm)


# --------------------------------------------------------------------------- EMD


def test_velox_emd_calibration_and_optics(tmp_path, counts):
    path = tmp_path / "velox.emd"
    write_velox_emd(path, counts, pixel_size_m=2.074e-11, high_tension_v=80000,
                    convergence_rad=0.0252, stage_m=(2e-6, 1e-6))
    frame = read_frame(path, lazy=False)
    np.testing.assert_array_equal(frame.data, counts)
    assert frame.pixel_size_angstrom == pytest.approx(PS_A)
    assert frame.high_tension_kv == pytest.approx(80.0)
    assert frame.convergence_mrad == pytest.approx(25.2)
    assert frame.position_angstrom == pytest.approx((2.0e4, 1.0e4))
    assert frame.title == "HAADF"


def test_velox_multi_image_selection(tmp_path, counts):
    path = tmp_path / "velox.emd"
    write_velox_emd(path, counts, pixel_size_m=2.074e-11, title="HAADF",
                    extra_images=[("BF", counts[::-1].copy())])
    assert read_frame(path).title == "HAADF"  # HAADF is the default
    bf = read_frame(path, signal="bf", lazy=False)
    np.testing.assert_array_equal(bf.data, counts[::-1])
    with pytest.raises(InputError, match="no image titled like 'DF4'"):
        read_frame(path, signal="DF4")
    other = tmp_path / "two.emd"
    write_velox_emd(other, counts, pixel_size_m=2.074e-11, title="DF2",
                    extra_images=[("BF", counts)])
    with pytest.raises(InputError, match="several images.*--signal"):
        read_frame(other)


def test_velox_stack_is_3d(tmp_path, rng):
    stack = rng.poisson(9, size=(3, 24, 32)).astype(np.uint16)
    path = tmp_path / "stack.emd"
    write_velox_emd(path, stack, pixel_size_m=2.074e-11)
    with pytest.raises(InputError, match="stack of 3 frames"):
        read_frame(path)
    np.testing.assert_array_equal(read_frame(path, frame=1, lazy=False).data, stack[1])


def test_berkeley_emd(tmp_path, counts):
    pytest.importorskip("h5py")
    emd = pytest.importorskip("rsciio.emd")
    signal = {
        "data": counts.astype(np.float32),
        "axes": [
            {"name": "y", "size": 48, "scale": PS_NM, "offset": 0, "units": "nm",
             "navigate": False},
            {"name": "x", "size": 64, "scale": PS_NM, "offset": 0, "units": "nm",
             "navigate": False},
        ],
        "metadata": {"General": {"title": "haadf"}, "Signal": {}},
        "original_metadata": {"microscope": {"voltage": 300000.0, "convergence_mrad": 21.4}},
    }
    path = tmp_path / "berkeley.emd"
    emd.file_writer(str(path), signal)
    frame = read_frame(path, lazy=False)
    np.testing.assert_array_equal(frame.data, counts)
    assert frame.pixel_size_angstrom == pytest.approx(PS_A)
    assert frame.high_tension_kv == pytest.approx(300.0)
    assert frame.convergence_mrad == pytest.approx(21.4)
    assert frame.extra["emd_variant"] == "Berkeley"


# --------------------------------------------------------------------------- DM3 / DM4


@pytest.mark.parametrize("version", [3, 4])
def test_dm_calibration_optics_stage_and_dose(tmp_path, counts, version):
    from .dmfile import write_dm

    path = tmp_path / f"frame.dm{version}"
    tags = {
        "Microscope Info": {
            "Voltage": 80000.0,  # V
            "Probe Current (nA)": 0.025,  # the paper's 25 pA
            "Stage Position": {"Stage X": 1.5, "Stage Y": -2.0},  # µm
        },
        "DigiScan": {"Sample Time": 2.0},  # µs dwell
    }
    write_dm(path, counts, version=version, scale=20.74, units="pm", image_tags=tags)
    frame = read_frame(path, lazy=False)
    np.testing.assert_array_equal(frame.data, counts)
    assert frame.pixel_size_angstrom == pytest.approx(PS_A)
    assert frame.high_tension_kv == pytest.approx(80.0)
    assert frame.position_angstrom == pytest.approx((-2.0e4, 1.5e4))
    # The paper's frame: 25 pA x 2 µs on 20.74 pm pixels is about 7,300 e-/Å².
    assert frame.dose_e_per_a2 == pytest.approx(7300, rel=0.01)


def test_dm_uncalibrated_and_stack(tmp_path, rng):
    from .dmfile import write_dm

    flat = tmp_path / "flat.dm4"
    write_dm(flat, np.ones((8, 8), np.float32), scale=1.0, units="")
    with pytest.raises(MetadataError, match="no pixel size.*--pixel-size"):
        read_frame(flat)
    stack = rng.poisson(9, size=(3, 16, 24)).astype(np.uint16)
    path = tmp_path / "stack.dm4"
    write_dm(path, stack, scale=0.02, units="nm")
    with pytest.raises(InputError, match=r"stack of 3 frames of 16 x 24 px.*--sum"):
        read_frame(path)
    mean = read_frame(path, reduce="mean", lazy=False).data
    np.testing.assert_allclose(mean, stack.mean(axis=0), rtol=1e-6)
