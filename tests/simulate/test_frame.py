"""Acceptance tests of simulate_frame: positions, brightness, noise, distortions, labels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize, stats

from stemscale.classes import DEFECT_CLASSES
from stemscale.errors import InputError
from stemscale.simulate import (
    Distortions,
    Microscope,
    Sample,
    lattice_geometry,
    mx2_columns,
    oscillating_radial_field,
    simulate_frame,
)

PX = 0.2074  # default pixel size (Å)
SIZE = int(round(4 * 14.0 / PX))  # frame holding a 3 x 3 grid of isolated columns 14 Å apart


def trig_interpolant(image: np.ndarray):
    """Exact band-limited (periodic) interpolant of an image: f(y, x) from its DFT."""
    ny, nx = image.shape
    spec = np.fft.fft2(image) / image.size
    ky = np.fft.fftfreq(ny) * ny
    kx = np.fft.fftfreq(nx) * nx

    def f(y: float, x: float) -> float:
        ey = np.exp(2j * np.pi * ky * y / ny)
        ex = np.exp(2j * np.pi * kx * x / nx)
        return float((ey @ spec @ ex).real)

    return f


def refined_maximum(image: np.ndarray, y: float, x: float, half: int = 32) -> tuple[float, float]:
    """Maximise the exact interpolant of a window around (y, x), from the brightest pixel.

    The window must contain the whole (compact) PSF of one isolated column, so that the
    periodic band-limited interpolant of the window is exact.
    """
    iy, ix = int(round(y)), int(round(x))
    crop = image[iy - half : iy + half, ix - half : ix + half]
    f = trig_interpolant(crop)
    c = half
    win = crop[c - 2 : c + 3, c - 2 : c + 3]
    dy, dx = np.unravel_index(np.argmax(win), win.shape)
    start = np.array([c - 2 + dy, c - 2 + dx], dtype=float)
    res = optimize.minimize(lambda p: -f(p[0], p[1]), start, method="Nelder-Mead",
                            options={"xatol": 1e-5, "fatol": 1e-12, "maxiter": 2000})
    return float(res.x[0]) + iy - half, float(res.x[1]) + ix - half


def peak_value(image: np.ndarray, y: float, x: float, half: int = 32) -> float:
    iy, ix = int(round(y)), int(round(x))
    crop = image[iy - half : iy + half, ix - half : ix + half]
    return trig_interpolant(crop)(y - iy + half, x - ix + half)


def isolated_atoms_sample(species, spacing_A=14.0, n_side=3, seed=0, **kwargs) -> Sample:
    """Single-atom columns on a coarse grid at random sub-pixel positions, far from each other."""
    rng = np.random.default_rng(seed)
    pos, sp = [], []
    k = 0
    for i in range(n_side):
        for j in range(n_side):
            x = (j + 1) * spacing_A + rng.uniform(0, PX)
            y = (i + 1) * spacing_A + rng.uniform(0, PX)
            for s in species[k % len(species)]:
                pos.append((x, y, 0.0))
                sp.append(s)
            k += 1
    kwargs.setdefault("background_fraction", 0.0)
    return Sample.from_atoms(np.array(pos), sp, **kwargs)


def test_truth_matches_intensity_maxima_of_isolated_columns():
    sample = isolated_atoms_sample([("W",), ("Se", "Se"), ("Se",), ("Te", "Te")])
    frame = simulate_frame((SIZE, SIZE), sample=sample, seed=3, labels=False)
    assert len(frame.truth) == 9
    errors = []
    for row in frame.truth.itertuples():
        y, x = refined_maximum(frame.expected.astype(np.float64), row.y_px, row.x_px)
        errors.append(math.hypot(y - row.y_px, x - row.x_px))
    assert max(errors) < 0.05, errors
    # the stricter need of sub-picometre work: no interpolation bias at the 0.001 px level
    assert max(errors) < 0.001, errors


def test_truth_matches_maxima_of_pristine_lattice_columns():
    sample = Sample(concentrations={}, rotation_deg=17.0, background_fraction=0.0)
    frame = simulate_frame((160, 160), sample=sample, seed=5, labels=False)
    inner = frame.truth[(frame.truth.x_px.between(40, 120)) & (frame.truth.y_px.between(40, 120))]
    assert len(inner) > 50
    # the periodic interpolant is only exact away from the frame's edges: use a windowed crop
    for row in inner.sample(12, random_state=0).itertuples():
        # in a perfect lattice each column's surroundings are symmetric: its maximum sits on it;
        # the 16-px window is not periodic, so the oracle itself is good to a few 0.01 px only
        y, x = refined_maximum(frame.expected.astype(np.float64), row.y_px, row.x_px, half=16)
        assert math.hypot(y - row.y_px, x - row.x_px) < 0.05


def test_column_brightness_order_and_calibration():
    sample = isolated_atoms_sample([("W",), ("Se", "Se"), ("Se",), ("Te", "Te")], seed=1)
    frame = simulate_frame((SIZE, SIZE), sample=sample, seed=0, labels=False, dose_e_per_a2=1000)
    e_px = 1000 * PX * PX
    peak = {}
    for row in frame.truth.itertuples():
        y, x = refined_maximum(frame.expected.astype(np.float64), row.y_px, row.x_px)
        peak.setdefault(row.species, []).append(peak_value(frame.expected.astype(np.float64), y, x) / e_px)
    p = {k: float(np.mean(v)) for k, v in peak.items()}
    assert p["W"] > p["Se2"] > p["Se"]
    assert p["Te2"] > p["Se2"]
    # the calibration points of 80 kV multislice into 63-200 mrad (isolated columns, default probe)
    for species, fraction in {"W": 0.03, "Se2": 0.02, "Se": 0.01, "Te2": 0.045}.items():
        assert p[species] == pytest.approx(fraction, rel=0.01)


def test_aberrations_lower_peaks_but_conserve_total_signal():
    sample = isolated_atoms_sample([("W",)], n_side=2, seed=2)
    size = int(round(3 * 14.0 / PX))
    sharp = simulate_frame((size, size), sample=sample, labels=False)
    blurred = simulate_frame((size, size), sample=sample, labels=False,
                             microscope=Microscope(defocus_nm=3.0, a1_nm=2.0))
    assert blurred.expected.max() < 0.8 * sharp.expected.max()
    assert blurred.expected.sum() == pytest.approx(sharp.expected.sum(), rel=1e-4)


def test_dose_statistics_are_poisson():
    # one far-away atom, a flat background: every pixel has the same expectation
    sample = Sample.from_atoms(np.array([[500.0, 500.0, 0.0]]), ["W"], background_fraction=0.01,
                               background_variation=0.0)
    dose = 20000.0  # about 8.6 counts per pixel
    lam = dose * PX * PX * 0.01
    frame = simulate_frame((256, 256), sample=sample, dose_e_per_a2=dose, seed=11, labels=False)
    np.testing.assert_allclose(frame.expected, lam, rtol=1e-5)
    counts = frame.image.astype(np.int64).ravel()
    assert np.all(frame.image == np.round(frame.image))
    n = counts.size
    assert counts.mean() == pytest.approx(lam, abs=4 * math.sqrt(lam / n))
    assert counts.var() == pytest.approx(lam, rel=5 * math.sqrt(2 / n))
    # chi-square goodness of fit against scipy's Poisson pmf
    kmax = int(lam + 6 * math.sqrt(lam))
    observed = np.bincount(np.minimum(counts, kmax), minlength=kmax + 1)
    expected = stats.poisson.pmf(np.arange(kmax + 1), lam) * n
    expected[-1] += stats.poisson.sf(kmax, lam) * n
    keep = expected > 5
    obs, exp = observed[keep], expected[keep]
    if (~keep).any():  # pool the sparse tail into one bin
        obs, exp = np.append(obs, observed[~keep].sum()), np.append(exp, expected[~keep].sum())
    chi2 = ((obs - exp) ** 2 / exp).sum()
    assert stats.chi2.sf(chi2, len(obs) - 1) > 1e-3
    # noise of different seeds is independent, of the same seed identical
    again = simulate_frame((256, 256), sample=sample, dose_e_per_a2=dose, seed=11, labels=False)
    other = simulate_frame((256, 256), sample=sample, dose_e_per_a2=dose, seed=12, labels=False)
    np.testing.assert_array_equal(again.image, frame.image)
    assert abs(np.corrcoef(other.image.ravel(), frame.image.ravel())[0, 1]) < 0.02


def test_gain_offset_and_read_noise():
    sample = Sample.from_atoms(np.array([[500.0, 500.0, 0.0]]), ["W"], background_fraction=0.02,
                               background_variation=0.0)
    base = simulate_frame((64, 64), sample=sample, seed=4, labels=False)
    scaled = simulate_frame((64, 64), sample=sample, seed=4, labels=False,
                            microscope=Microscope(gain=7.5, offset=100.0))
    np.testing.assert_allclose(scaled.image, 7.5 * base.image + 100.0, rtol=1e-6)
    noisy = simulate_frame((128, 128), sample=sample, seed=4, labels=False,
                           microscope=Microscope(read_noise=3.0))
    resid = noisy.image - base.image[0, 0] * 0  # read noise adds variance 9 to the Poisson variance
    assert resid.var() == pytest.approx(base.expected.mean() + 9.0, rel=0.1)


def test_scan_distortion_moves_truth_and_image_together():
    sample = isolated_atoms_sample([("W",)], seed=4)
    size = SIZE
    plain = simulate_frame((size, size), sample=sample, seed=2, labels=False)
    d = Distortions(shear=0.03, scale_x=0.02, scale_y=-0.015)
    sheared = simulate_frame((size, size), sample=sample, seed=2, labels=False, distortions=d)
    # truth follows the scan model: sample point = px * A @ (x, y)
    a = np.array([[1.02, 0.03], [0.0, 0.985]])
    sx, sy = sheared.truth.x_sample_A.to_numpy() / PX, sheared.truth.y_sample_A.to_numpy() / PX
    expect = np.linalg.solve(a, np.vstack([sx, sy]))
    np.testing.assert_allclose(sheared.truth.x_px, expect[0], atol=1e-9)
    np.testing.assert_allclose(sheared.truth.y_px, expect[1], atol=1e-9)
    moved = np.hypot(sheared.truth.x_px - plain.truth.x_px, sheared.truth.y_px - plain.truth.y_px)
    assert moved.max() > 3  # the distortion is large enough to matter
    for row in sheared.truth.itertuples():
        y, x = refined_maximum(sheared.expected.astype(np.float64), row.y_px, row.x_px)
        assert math.hypot(y - row.y_px, x - row.x_px) < 0.001
    # the image integral is the scan-area ratio: a sheared, scaled scan conserves counts per sample area
    assert sheared.expected.sum() == pytest.approx(plain.expected.sum() / np.linalg.det(a), rel=1e-3)


def test_line_jitter_shifts_each_row_and_its_truth():
    sample = isolated_atoms_sample([("W",)], seed=6)
    size = SIZE
    plain = simulate_frame((size, size), sample=sample, seed=9, labels=False)
    jit = simulate_frame((size, size), sample=sample, seed=9, labels=False,
                         distortions=Distortions(jitter_px=1.0))
    shifts = jit.truth.x_px.to_numpy() - plain.truth.x_px.to_numpy()
    assert np.abs(shifts).max() > 0.2
    np.testing.assert_allclose(jit.truth.y_px, plain.truth.y_px)
    for row, shift in zip(jit.truth.itertuples(), shifts):
        iy = int(math.floor(row.y_px + 0.5))
        # the atom's own row is the undistorted row moved by the recorded shift
        f = trig_interpolant(plain.expected.astype(np.float64))
        g = trig_interpolant(jit.expected.astype(np.float64))
        for dx in (-2.0, 0.0, 1.5):
            assert g(iy, row.x_px + dx) == pytest.approx(f(iy, row.x_px - shift + dx), rel=1e-4, abs=1e-6)


def test_label_masks_cover_the_defects_with_paper_sized_blobs():
    sample = Sample(concentrations={"SV": 0.01, "2Te": 0.01, "MV": 0.02}, min_defect_spacing_A=8.0,
                    rotation_deg=None)
    frame = simulate_frame((384, 384), sample=sample, seed=8, distortions=Distortions(shear=0.01))
    from scipy import ndimage

    for cls in ("SV", "2Te", "MV"):
        truth = frame.truth[frame.truth.defect == cls]
        inner = truth[truth.x_px.between(10, 373) & truth.y_px.between(10, 373)]
        assert len(inner) >= 3, cls
        lab, n = ndimage.label(frame.labels[cls])
        assert n == len(truth) or n >= len(inner)
        areas = ndimage.sum(np.ones_like(lab), lab, np.arange(1, n + 1))
        centres = np.array(ndimage.center_of_mass(frame.labels[cls], lab, np.arange(1, n + 1)))
        for row in inner.itertuples():
            d = np.hypot(centres[:, 0] - row.y_px, centres[:, 1] - row.x_px)
            k = int(np.argmin(d))
            assert d[k] < 0.6
            assert 28 <= areas[k] <= 48
    for cls in ("DV", "TeSe", "MSub"):
        assert not frame.labels[cls].any()
    assert set(frame.labels) == {"M", "X", *DEFECT_CLASSES}
    lm = frame.label_map()
    assert lm.max() <= len(DEFECT_CLASSES) and (lm == 1 + DEFECT_CLASSES.index("SV")).sum() > 0


def test_truth_table_content_and_displacements():
    field = oscillating_radial_field(amplitude_pm=4.0)
    sample = Sample(concentrations={"SV": 0.004}, displacement_fields={"SV": field}, rotation_deg=33.0)
    frame = simulate_frame((300, 300), sample=sample, seed=21, labels=False)
    t = frame.truth
    assert {"column_id", "x_px", "y_px", "x_A", "y_A", "site", "species", "defect", "dx_pm", "dy_pm"} <= set(t)
    assert t.column_id.is_unique
    np.testing.assert_allclose(t.x_A, t.x_px * PX)
    assert set(t.species) <= {"W", "Se2", "Se"}
    assert (t[t.defect == "SV"].species == "Se").all()
    assert (t[t.site == "M"].species == "W").all()
    # ideal positions lie exactly on the rotated 2H lattice
    a1, a2, origin = lattice_geometry(sample, 21)
    ideal = np.column_stack([t.x_sample_A - t.dx_pm / 100, t.y_sample_A - t.dy_pm / 100]) - origin
    basis = np.where((t.site == "X").to_numpy()[:, None], (a1 + a2) / 3, 0.0)
    frac = np.linalg.solve(np.column_stack([a1, a2]), (ideal - basis).T)
    np.testing.assert_allclose(frac, np.round(frac), atol=1e-9)
    # displacement = superposed radial field of every SV, computed here from the field's formula;
    # SVs outside the frame count too, so list the defect sites of a wider box
    wide = mx2_columns(sample, (t.x_sample_A.min() - 40, t.x_sample_A.max() + 40,
                                t.y_sample_A.min() - 40, t.y_sample_A.max() + 40), seed=21)
    sv = wide[wide.defect == "SV"]
    sv_ideal = np.column_stack([sv.x_A - sv.dx_pm / 100, sv.y_A - sv.dy_pm / 100]) - origin
    assert (t.defect == "SV").sum() >= 2
    expect = np.zeros((len(t), 2))
    for p in sv_ideal:
        v = ideal - p
        d = np.hypot(v[:, 0], v[:, 1])
        ok = (d > 1e-6) & (d < 30.0)
        c = d[ok] - 1.9
        u = 4.0 * np.cos(2 * np.pi * c / 6.0) * np.exp(-np.maximum(c, 0) / 10.0)
        u *= 0.5 * (1 + np.cos(np.pi * np.clip((d[ok] - 24.0) / 6.0, 0, 1)))
        expect[ok] += u[:, None] * v[ok] / d[ok, None]
    got = t[["dx_pm", "dy_pm"]].to_numpy()
    np.testing.assert_allclose(got, expect, atol=1e-9)
    assert np.hypot(got[:, 0], got[:, 1]).max() > 2.0


def test_user_structure_from_ase_file(tmp_path):
    ase = pytest.importorskip("ase")
    from ase.io import write

    atoms = ase.Atoms(
        symbols=["W", "Se", "Se", "Mo"],
        positions=[[5.0, 5.0, 1.8], [8.0, 6.0, 0.0], [8.0, 6.0, 3.6], [12.0, 12.0, 1.8]],
    )
    path = tmp_path / "cluster.xyz"
    write(path, atoms)
    sample = Sample.from_file(path, background_fraction=0.0)
    frame = simulate_frame((96, 96), sample=sample, labels=False)
    t = frame.truth.sort_values("x_px")
    assert list(t.species) == ["W", "Se2", "Mo"]
    assert list(t.defect) == ["", "", "MSub"]
    np.testing.assert_allclose(t.x_A, [5.0, 8.0, 12.0])
    np.testing.assert_allclose(t.y_A, [5.0, 6.0, 12.0])


def test_periodic_user_structure_matches_builtin_lattice():
    a = 3.297
    cell = np.array([[a, 0.0], [a / 2, a * math.sqrt(3) / 2]])
    x_site = (cell[0] + cell[1]) / 3
    pos = np.array([[0, 0, 1.8], [x_site[0], x_site[1], 0.0], [x_site[0], x_site[1], 3.6]])
    user = Sample.from_atoms(pos, ["W", "Se", "Se"], cell=cell, offset_A=(1.0, 2.0), rotation_deg=0.0)
    builtin = Sample(concentrations={}, displacement_fields={}, offset_A=(1.0, 2.0), rotation_deg=0.0)
    f1 = simulate_frame((128, 128), sample=user, labels=False, seed=1)
    f2 = simulate_frame((128, 128), sample=builtin, labels=False, seed=1)
    np.testing.assert_allclose(f1.expected, f2.expected, rtol=1e-5)
    assert len(f1.truth) == len(f2.truth)


def test_frame_is_a_window_of_the_same_image():
    sample = Sample(concentrations={"SV": 0.03}, rotation_deg=None)
    d = Distortions(shear=0.01, jitter_px=0.5)
    big = simulate_frame((200, 260), sample=sample, distortions=d, seed=7)
    win = simulate_frame((90, 100), sample=sample, distortions=d, seed=7, origin=(60, 120))
    np.testing.assert_allclose(win.expected, big.expected[60:150, 120:220], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(win.labels["SV"], big.labels["SV"][60:150, 120:220])
    inner = big.truth[big.truth.x_px.between(119.5, 219.49) & big.truth.y_px.between(59.5, 149.49)]
    assert set(inner.column_id) == set(win.truth.column_id)


def test_microscope_random_varies_the_probe():
    m1, m2 = Microscope.random(1), Microscope.random(2)
    assert m1 != m2
    assert Microscope.random(1) == m1
    assert Microscope.random(np.random.default_rng(3), defocus_nm=0.0).defocus_nm == 0.0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: simulate_frame((64, 64), sample=Sample(concentrations={"XYZ": 0.1})), "unknown defect class 'XYZ'"),
        (lambda: simulate_frame((64, 64), dose_e_per_a2=-5), "dose_e_per_a2 must be a finite dose >= 0"),
        (lambda: simulate_frame((64, 64), dose_e_per_a2=float("nan")), "dose_e_per_a2"),
        (lambda: simulate_frame((64, 64, 3)), "2-D"),
        (lambda: simulate_frame((0, 64)), "two positive integers"),
        (lambda: simulate_frame((64.5, 64)), "two positive integers"),
        (lambda: simulate_frame((64, 64), microscope=Microscope(defocus_nm=float("nan"))), "defocus_nm must be finite"),
        (lambda: Distortions(shear=float("inf")), "Distortions.shear must be finite"),
        (lambda: Sample(concentrations={"SV": float("nan")}), "concentration of 'SV'"),
        (lambda: Sample(concentrations={"SV": 0.7, "DV": 0.5}), "add up to"),
        (lambda: Sample(material="Graphene"), "unknown material"),
        (lambda: simulate_frame((64, 64), seed=-1), "seed must be a non-negative integer"),
        (lambda: simulate_frame((64, 64), sample="WSe2"), "sample must be a stemscale.simulate.Sample"),
        (lambda: Microscope(pixel_size_A=0.0), "pixel_size_A must be > 0"),
        (lambda: Microscope(pixel_size_A=0.6), "undersamples the probe") ,
        (lambda: Sample(displacement_fields={"SV": lambda d: d}), "cutoff_A"),
        (lambda: Sample.from_file("/nonexistent/structure.xyz"), "no structure file"),
    ],
)
def test_bad_input_gives_one_clear_message(call, match):
    with pytest.raises(InputError if "structure file" not in match else Exception, match=match):
        obj = call()
        # lazily validated objects fail when used
        if isinstance(obj, Microscope):
            simulate_frame((32, 32), microscope=obj)
