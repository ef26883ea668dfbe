"""Real data: the Se-implanted MoS2 HAADF frame shipped in temul-toolkit 0.1.9 (GPL-3).

The file is installed with ``pip install --no-deps`` at test time and read
where pip put it; it is never copied into this repository.  Its expected
properties come from the frame's published description (1024 x 1024 px,
12.7 pm per pixel, 60 kV), not from this code.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from stemscale.cli import main
from stemscale.io import open_mosaic
from stemscale.io.frames import read_frame
from stemscale.io.ingest import ingest


def test_example_path_points_into_the_installed_package(mos2_dm3):
    assert mos2_dm3.suffix == ".dm3" and mos2_dm3.is_file()
    assert "site-packages" in str(mos2_dm3) or "dist-packages" in str(mos2_dm3)


def test_read_mos2_frame(mos2_dm3):
    frame = read_frame(mos2_dm3)
    assert frame.shape == (1024, 1024)
    assert frame.pixel_size_angstrom == pytest.approx(0.127, abs=5e-4)  # 12.7 pm
    assert frame.high_tension_kv == pytest.approx(60.0)
    assert frame.file_format == "dm"


def test_ingest_mos2_frame_and_reopen_lazily(mos2_dm3, tmp_path):
    out = tmp_path / "mos2.zarr"
    mosaic = ingest(mos2_dm3, out, chunks=(256, 256), shards=(512, 512))
    assert mosaic.shape == (1024, 1024)
    assert mosaic.attrs["pixel_size_angstrom"] == pytest.approx(0.127, abs=5e-4)
    assert mosaic.attrs["high_tension_kv"] == pytest.approx(60.0)
    assert mosaic.data.chunks == ((512, 512), (512, 512))
    # 1024 px x 12.7 pm = 13.0 nm field of view.
    assert float(mosaic.x[-1] - mosaic.x[0]) == pytest.approx(1023 * 0.127, rel=5e-3)
    # The pixels survive unchanged (compare with an independent reader of the raw file).
    rsciio_dm = pytest.importorskip("rsciio.digitalmicrograph")
    raw = rsciio_dm.file_reader(str(mos2_dm3))[0]["data"]
    np.testing.assert_array_equal(mosaic.values, raw)


def test_mos2_lattice_spacing_matches_pixel_size(mos2_dm3):
    """Physics check of the units: MoS2's {100} planes (a*sqrt(3)/2 = 2.74 Å) give the
    brightest ring of the power spectrum at 1/2.74 Å^-1.

    With the file's calibration (12.695 pm) the six {100} spots lie at 2.54-2.64 Å
    (mean 2.59 Å): the microscope's calibration is ~5 % small and the scan ~4 %
    anisotropic.  The tolerance catches unit mistakes (nm vs Å is 10x), not that.
    """
    frame = read_frame(mos2_dm3, lazy=False)
    image = frame.data.astype(np.float64)
    image = ndimage.gaussian_filter(image, 1.0) - ndimage.gaussian_filter(image, 20.0)
    window = np.outer(np.hanning(1024), np.hanning(1024))
    power = np.abs(np.fft.fftshift(np.fft.fft2(image * window))) ** 2
    k = np.fft.fftshift(np.fft.fftfreq(1024, d=frame.pixel_size_angstrom))
    kr = np.hypot(*np.meshgrid(k, k, indexing="ij"))
    bins = np.linspace(0.15, 0.6, 181)  # Å^-1: avoid the DC peak and background
    which = np.digitize(kr.ravel(), bins)
    profile = np.array([power.ravel()[which == i].mean() for i in range(1, len(bins))])
    centres = 0.5 * (bins[1:] + bins[:-1])
    d_spacing = 1 / centres[np.argmax(profile)]
    assert d_spacing == pytest.approx(3.16 * np.sqrt(3) / 2, rel=0.08)


def test_cli_ingest_mos2(mos2_dm3, tmp_path, capsys):
    out = tmp_path / "cli.zarr"
    assert main(["ingest", str(mos2_dm3), str(out)]) == 0
    text = capsys.readouterr().out
    assert "1024 x 1024" in text and "12.7 pm" in text
    assert open_mosaic(out).attrs["high_tension_kv"] == pytest.approx(60.0)
