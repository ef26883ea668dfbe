"""The `stemscale simulate` command, counter-based hashing, probe physics."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from stemscale.cli import main
from stemscale.io import open_mosaic
from stemscale.simulate import Microscope, probe_kernel
from stemscale.simulate._hash import STREAM, uniform
from stemscale.simulate.probe import electron_wavelength_A


def test_cli_simulate_writes_a_complete_mosaic(tmp_path, capsys):
    out = tmp_path / "cli.zarr"
    rc = main(["simulate", str(out), "--shape", "300", "200", "--shards", "256", "256", "--chunks", "128", "128",
               "--defect", "SV=0.05", "--defect", "2Te=0.02", "--seed", "4", "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["shape"] == [300, 200]
    assert set(summary["defects"]) <= {"SV", "2Te"} and summary["defects"]["SV"] > 0
    m = open_mosaic(out)
    assert m.shape == (300, 200) and m.attrs["dose_e_per_a2"] == 7300.0
    # refuses to overwrite, and names the fix
    rc = main(["simulate", str(out), "--shape", "300", "200"])
    assert rc == 2
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--defect", "Foo=0.1"], "unknown defect class 'Foo'"),
        (["--defect", "SV"], "CLASS=FRACTION"),
        (["--dose", "-1"], "dose_e_per_a2"),
        (["--shape", "0", "10"], "two positive integers"),
        (["--defocus", "nan"], "defocus_nm must be finite"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path, capsys, argv, message):
    rc = main(["simulate", str(tmp_path / "x.zarr"), "--shape", "64", "64", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.zarr").exists()


def test_hash_uniforms_are_uniform_and_keyed():
    i = np.arange(200_000)
    u = uniform(7, STREAM["defect"], i, 3)
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.01
    # same key, same number, regardless of the batch it is drawn in
    np.testing.assert_array_equal(uniform(7, STREAM["defect"], i[1000:1010], 3), u[1000:1010])
    assert not np.array_equal(uniform(8, STREAM["defect"], i[:10], 3), u[:10])
    assert not np.array_equal(uniform(7, STREAM["priority"], i[:10], 3), u[:10])


def test_electron_wavelength():
    # textbook values: 80 kV -> 4.18 pm, 200 kV -> 2.51 pm, 300 kV -> 1.97 pm
    assert electron_wavelength_A(80) == pytest.approx(0.04176, rel=1e-3)
    assert electron_wavelength_A(200) == pytest.approx(0.02508, rel=1e-3)
    assert electron_wavelength_A(300) == pytest.approx(0.01969, rel=1e-3)


def test_probe_matches_airy_disc_without_aberrations():
    # no source blur, no aberrations: intensity is the Airy pattern 4 J1(v)^2 / v^2, v = 2 pi kmax r
    from scipy.special import j1

    m = Microscope(source_size_A=0.0)
    k = probe_kernel(m)
    kmax = m.convergence_mrad * 1e-3 / m.wavelength_A
    r = k.radius_px
    line = k.values[r, r : r + 8] / k.peak  # inside the flat part of the support window
    v = 2 * np.pi * kmax * np.arange(8) * m.pixel_size_A
    airy = np.ones(8)
    airy[1:] = (2 * j1(v[1:]) / v[1:]) ** 2
    np.testing.assert_allclose(line, airy, atol=2e-3)
    # normalised to unit integral over the sample plane
    assert k.values.sum() * m.pixel_size_A**2 == pytest.approx(1.0, rel=1e-9)


def test_source_size_blurs_by_the_expected_width():
    # a Gaussian source of FWHM s adds s^2 / (8 ln 2) to the probe's variance along each axis
    sharp = probe_kernel(Microscope(source_size_A=0.0))
    blur = probe_kernel(Microscope(source_size_A=1.2))
    px = 0.2074
    r = sharp.radius_px
    d = (np.arange(-r, r + 1) * px) ** 2

    def var(k):  # second moment of the central cross-section's core (inside 1.5 Å)
        v = k.values.sum(axis=0)
        w = np.abs(np.arange(-r, r + 1) * px) < 1.5
        return (v * d)[w].sum() / v[w].sum()

    assert var(blur) > var(sharp)
    assert math.sqrt(var(blur) - var(sharp)) == pytest.approx(1.2 / math.sqrt(8 * math.log(2)), rel=0.25)
