"""Metal-metal spacings and sublattices on synthetic honeycomb lattices with known geometry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stemscale.lattice import classify_sublattices, robust_z
from stemscale.strain.spacing import metal_spacings

A_PX = 24.0   # lattice constant in pixels
PS = 0.125    # Å per pixel


def honeycomb(shape=(640, 640), a=A_PX, stretch_x=0.0, noise_px=0.0, seed=0):
    """2H-MX2 in projection: metal at n a1 + m a2, chalcogen at + (a1 + a2) / 3."""
    rng = np.random.default_rng(seed)
    a1 = np.array([a, 0.0])
    a2 = a * np.array([0.5, np.sqrt(3) / 2])
    n = np.arange(-40, 41)
    nn, mm = np.meshgrid(n, n)
    base = nn.ravel()[:, None] * a1 + mm.ravel()[:, None] * a2 + np.array([7.0, 5.0])
    rows = []
    for site, offset, amp in (("M", 0.0, 1.0), ("X", 1.0, 0.4)):
        xy = base + offset * (a1 + a2) / 3
        xy[:, 0] *= 1 + stretch_x
        keep = (xy[:, 0] > 2) & (xy[:, 0] < shape[1] - 3) & (xy[:, 1] > 2) & (xy[:, 1] < shape[0] - 3)
        xy = xy[keep] + rng.normal(0, noise_px, (keep.sum(), 2))
        rows.append(pd.DataFrame({"x_px": xy[:, 0], "y_px": xy[:, 1], "true_site": site,
                                  "amplitude": amp * (1 + 0.03 * rng.standard_normal(len(xy))),
                                  "state": 0}))
    return pd.concat(rows, ignore_index=True)


def test_robust_z_ignores_outliers():
    v = np.r_[np.zeros(99), 1000.0]
    v[:50] = 1.0
    z = robust_z(v)
    assert z[-1] > 100  # the outlier stands out; it did not inflate the scale


def test_sublattices_are_recovered():
    cols = honeycomb(noise_px=0.3)
    sites, a = classify_sublattices(cols[["x_px", "y_px"]].to_numpy(), cols["amplitude"].to_numpy())
    assert a == pytest.approx(A_PX, rel=0.01)
    assert np.mean(sites == cols["true_site"].to_numpy()) > 0.995


def test_sublattices_without_most_chalcogen_columns():
    """The classical detector misses faint chalcogen columns; metal ones must still be found."""
    cols = honeycomb(noise_px=0.3)
    x = cols.index[cols["true_site"] == "X"]
    cols = cols.drop(x[np.random.default_rng(1).random(len(x)) < 0.8]).reset_index(drop=True)
    sites, _ = classify_sublattices(cols[["x_px", "y_px"]].to_numpy(), cols["amplitude"].to_numpy())
    assert np.mean(sites == cols["true_site"].to_numpy()) > 0.99


def test_spacings_per_direction_follow_the_known_anisotropy():
    e, noise = 0.04, 0.25
    cols = honeycomb(stretch_x=e, noise_px=noise, seed=2)
    res = metal_spacings(cols, PS, (640, 640), nominal_a_A=A_PX * PS, exclude_radius_A=0.0,
                         brightness="amplitude")
    s = res.summary
    # Bonds along x are stretched by (1 + e); the two at +-60 degrees by sqrt((1+e)^2/4 + 3/4).
    along_x = A_PX * PS * 100 * (1 + e)
    oblique = A_PX * PS * 100 * np.sqrt((1 + e) ** 2 / 4 + 3 / 4)
    means = sorted(d["mean_pm"] for d in s["directions"])
    assert means[2] == pytest.approx(along_x, abs=0.3)
    assert means[0] == pytest.approx(oblique, abs=0.3)
    assert means[1] == pytest.approx(oblique, abs=0.3)
    # Independent Gaussian noise sigma on both ends: a bond length scatters by sqrt(2) sigma.
    expected_spread = np.sqrt(2) * noise * PS * 100
    for d in s["directions"]:
        assert d["spread_pm"] == pytest.approx(expected_spread, rel=0.15)
    assert s["direction_anisotropy"] == pytest.approx((along_x - oblique) / np.mean([along_x, oblique, oblique]), rel=0.1)
    assert s["metal_columns"] == (cols["true_site"] == "M").sum()


def test_substituted_chalcogens_are_flagged_and_their_neighbourhood_excluded():
    cols = honeycomb(noise_px=0.2, seed=3)
    x_rows = cols.index[(cols["true_site"] == "X") & cols["x_px"].between(200, 440)
                        & cols["y_px"].between(200, 440)]
    bright = x_rows[:: max(1, len(x_rows) // 5)][:5]
    cols.loc[bright, "amplitude"] = 0.8  # twice a chalcogen column, still fainter than a metal one
    cols.loc[cols.index[0], "state"] = 3  # one failed fit: its neighbourhood is not pristine
    res = metal_spacings(cols, PS, (640, 640), exclude_radius_A=4.0, brightness="amplitude")
    flagged = res.columns.index[res.columns["substituted"]]
    assert set(flagged) == set(bright)
    xy = res.columns[["x_px", "y_px"]].to_numpy()
    for i in bright:
        d = np.hypot(*(xy - xy[i]).T) * PS
        metal = (res.columns["sublattice"] == "M").to_numpy()
        # around a chalcogen site: three metal columns at a/sqrt(3) (1.73 Å), three at 2a/sqrt(3)
        assert (metal & (d < 2.5)).sum() == 3
        near_metal = metal & (d < 4.0)
        assert near_metal.sum() == 6
        assert not res.columns.loc[near_metal, "pristine"].any()
    used = set(res.bonds["i"]) | set(res.bonds["j"])
    assert used <= set(res.columns.index[res.columns["pristine"]])


def test_region_restricts_the_bonds():
    cols = honeycomb(noise_px=0.2, seed=4)
    region = (20.0, 50.0, 20.0, 50.0)  # Å
    res = metal_spacings(cols, PS, (640, 640), region_A=region, brightness="amplitude")
    xy = res.columns[["x_px", "y_px"]].to_numpy() * PS
    ends = np.r_[res.bonds["i"].to_numpy(), res.bonds["j"].to_numpy()]
    assert len(ends)
    assert np.all((xy[ends, 0] >= 20) & (xy[ends, 0] <= 50) & (xy[ends, 1] >= 20) & (xy[ends, 1] <= 50))


def test_simulated_wse2_frame_sites_substitutions_and_spacing():
    """Against the simulator's truth: sublattices, Te substitutions and the W-W spacing."""
    from stemscale.detect.metrics import match_points
    from stemscale.parallel.blocks import plan_blocks
    from stemscale.parallel.process import BlockConfig, process_block
    from stemscale.simulate import simulate_frame

    frame = simulate_frame((512, 512), seed=11, labels=False)
    spec = plan_blocks((512, 512), (512, 512), 0)[0]
    atoms, _ = process_block(frame.image, spec, BlockConfig(0.2074, detector="peaks"))
    res = metal_spacings(atoms, 0.2074, (512, 512), nominal_a_A=3.297)
    truth = frame.truth[frame.truth["n_atoms"] > 0]
    pairs = match_points(res.columns[["x_px", "y_px"]].to_numpy(), truth[["x_px", "y_px"]].to_numpy(), 3.0)
    found = res.columns.iloc[pairs[:, 0]]
    true = truth.iloc[pairs[:, 1]]
    assert np.mean(found["sublattice"].to_numpy() == true["site"].to_numpy()) > 0.95
    heavy = true["defect"].isin(["2Te", "TeSe"]).to_numpy()
    flagged = found["substituted"].to_numpy()
    assert flagged[heavy].mean() > 0.6        # most Te-substituted columns are found
    assert heavy[flagged].mean() > 0.5        # and most flags are real
    # W-W spacing of the simulated lattice (a = 3.297 Å): the mean is unbiased.
    assert res.summary["mean_pm"] == pytest.approx(329.7, abs=3 * res.summary["sem_pm"] + 0.3)


def test_unreliable_fits_are_counted_and_left_out_not_treated_as_defects():
    """MAX_ITERATIONS / UNCERTAIN columns are no bond ends, but do not spoil their neighbours."""
    from stemscale.fit import FitState

    cols = honeycomb(noise_px=0.2, seed=5)
    metal = cols.index[cols["true_site"] == "M"]
    picked = metal[np.random.default_rng(5).random(len(metal)) < 0.1]
    half = len(picked) // 2
    cols.loc[picked[:half], "state"] = int(FitState.MAX_ITERATIONS)
    cols.loc[picked[half:], "state"] = int(FitState.UNCERTAIN)
    res = metal_spacings(cols, PS, (640, 640), exclude_radius_A=4.0, brightness="amplitude")
    used = set(res.bonds["i"]) | set(res.bonds["j"])
    assert not used & set(picked)
    assert res.summary["unreliable_fits"] == {"MAX_ITERATIONS": half,
                                              "UNCERTAIN": len(picked) - half}
    assert 0 < res.summary["unreliable_metal_columns_excluded"] <= len(picked)
    # The sublattices still see them, and their reliable neighbours stay pristine.
    assert (res.columns.loc[picked, "sublattice"] == "M").all()
    everything = metal_spacings(cols, PS, (640, 640), exclude_radius_A=4.0,
                                brightness="amplitude", reliable_only=False)
    assert res.summary["pristine_metal_columns"] == (
        everything.summary["pristine_metal_columns"]
        - res.summary["unreliable_metal_columns_excluded"])
    assert everything.summary["unreliable_fits"] == {}
    assert (set(everything.bonds["i"]) | set(everything.bonds["j"])) & set(picked)
