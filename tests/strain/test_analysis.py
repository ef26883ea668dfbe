"""Column fits and the whole measurement against the simulator's injected truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stemscale.average import AveragingConfig, detections_from_truth, screen_defects, select_pristine
from stemscale.parallel.averaging import average_classes
from stemscale.strain import MeasureConfig, analyse_class, fit_columns, fit_lattice, injected_displacements

PS = 0.2074


def test_fit_columns_on_a_noiseless_lattice():
    from stemscale.simulate import Sample, simulate_frame

    f = simulate_frame((128, 128), sample=Sample(concentrations={}, offset_A=(0.4, 0.1)), seed=2, labels=False)
    lat = fit_lattice(f.expected, 3.297 / PS)
    sites = lat.sites((128, 128), margin=6)
    truth = f.truth
    for model in ("smoothed", "gaussian", "none"):
        fit = fit_columns(f.expected, sites, neighbour_model=model, window_radius_px=4.25)
        xy = fit.xy
        d = np.hypot(*(truth[["x_px", "y_px"]].to_numpy()[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
        err = d.min(axis=0) * PS * 100  # pm to the nearest true column
        inner = sites["r_px"].to_numpy() < 40  # columns whose neighbours are all in the image
        assert np.nanmax(err[inner]) < (0.5 if model != "none" else 3.0)
        # refitting the same pixels with the stored estimator reproduces the fit
        img = f.expected.astype(float).ravel()
        again, ok = fit.refit(img[fit.pixel_index()][None])
        assert ok.all() and np.allclose(again[0], xy, atol=1e-3)  # LM tolerance


@pytest.fixture(scope="module")
def noiseless_field_average(tmp_path_factory):
    """Class averages of a noiseless frame whose vacancies carry the default oscillating field."""
    from stemscale.simulate import Sample, simulate_frame

    f = simulate_frame((1024, 1536), sample=Sample(concentrations={"SV": 0.02}, min_defect_spacing_A=28.0),
                       seed=11, labels=False)
    det = detections_from_truth(f.truth, jitter_px=0.5, seed=1)
    scr = screen_defects(det, pixel_size_A=PS, mosaic_shape=f.expected.shape)
    xs = f.truth[(f.truth["site"] == "X") & (f.truth["defect"] == "")]
    pri = select_pristine(xs, det, pixel_size_A=PS, mosaic_shape=f.expected.shape, max_sites=30)
    url = tmp_path_factory.mktemp("crops") / "crops.zarr"
    res = average_classes(f.expected, pd.concat([scr.kept, pri.kept], ignore_index=True), pixel_size_A=PS,
                          chunks=(512, 512), stack_url=str(url),
                          config=AveragingConfig(n_reference=64, reference_iterations=2))
    sv = scr.kept.merge(f.truth[["column_id", "x_px", "y_px"]], on="column_id", suffixes=("_det", ""))
    return f, res, sv[["x_px", "y_px"]].to_numpy(), pri.kept[["x_px", "y_px"]].to_numpy()


def test_recovers_the_injected_field(noiseless_field_average):
    f, res, sv_xy, pri_xy = noiseless_field_average
    assert res.count("SV") >= 8
    cs = analyse_class(res, "SV", config=MeasureConfig(weighted=False), bootstrap=False)
    inj = injected_displacements(f.truth, sv_xy, pri_xy, cs.geometry)
    sh = cs.shells()
    metal = (sh["site"] == "M").to_numpy()
    err = (sh["u_r_pm"] - inj["shell_u_r"])[metal].to_numpy()[:3]
    # the first three W shells within 0.2 pm of the truth (which is ~3, -1, -2 pm)
    assert np.all(np.abs(err) < 0.2), err
    assert abs(inj["shell_u_r"][metal][0] - 3.0) < 0.2
    # the W-W spacings around the vacancy grow by about sqrt(3) u(r1)
    sp = cs.spacings()
    assert abs(sp.loc[3, "change_pm"] - np.sqrt(3) * inj["shell_u_r"][metal][0]) < 0.5
    # alternating rings are far from a continuum 1/r field
    tables = cs.columns(), cs.bonds(), cs.strain(), cs.profile, cs.table
    assert all(isinstance(t, pd.DataFrame) and len(t) for t in tables)


def test_bootstrap_errors_and_summary(noiseless_field_average):
    f, res, _, _ = noiseless_field_average
    cs = analyse_class(res, "SV", config=MeasureConfig(n_boot=50))
    assert cs.n_boot == 50
    sp = cs.spacings()
    # noiseless crops: the spread comes only from crop-to-crop differences (neighbouring fields,
    # registration), far below the noise of real data
    assert np.all(np.isfinite(sp["class_se_pm"])) and sp["class_se_pm"].max() < 1.0
    cols = cs.columns()
    assert {"ux_se_pm", "uy_se_pm", "uxy_cov_pm2"} <= set(cols.columns)
    d = cs.to_dict()
    import json

    json.dumps(d, default=float)
    assert d["n_class"] == res.count("SV") and "M" in d["continuum"]


def test_summary_json_and_figures(noiseless_field_average, tmp_path):
    import json

    from stemscale.strain.figures import (class_averages_figure, displacement_map_figure, precision_figure,
                                          radial_profile_figure)
    from stemscale.strain.report import write_summary

    f, res, _, _ = noiseless_field_average
    cs = analyse_class(res, "SV", config=MeasureConfig(n_boot=30))
    path = write_summary(tmp_path / "summary.json", res, {"SV": cs}, extra={"note": "test"})
    rec = json.loads(open(path).read())
    assert rec["classes"]["SV"]["n_class"] == res.count("SV")
    mean = [r for r in rec["classes"]["SV"]["ww_spacing"] if r["bond"] == "mean"][0]
    assert mean["class_se_pm"] is not None and mean["class_se_pm"] > 0
    assert {"u_r_pm", "u_r_se_pm"} <= set(rec["classes"]["SV"]["shells"][1])
    assert rec["averaging"]["classes"]["SV"]["averaged"] == res.count("SV") and rec["note"] == "test"
    pngs = [
        class_averages_figure(res, "SV", tmp_path / "a.png"),
        displacement_map_figure(cs.columns(), tmp_path / "b.png"),
        radial_profile_figure(cs.shells(), tmp_path / "c.png", continuum=cs.continuum),
        precision_figure(pd.DataFrame({"N": [10, 20, 40], "se_ww_mean_pm": [1.0, 0.7, 0.5]}), tmp_path / "d.png",
                         slope={"slope": -0.5, "slope_se": 0.01}),
    ]
    for p in pngs:
        with open(p, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
