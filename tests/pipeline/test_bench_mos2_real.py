"""benchmarks/bench_mos2_real.py: the matching on known points, and its stemscale half on a crop.

atomap (GPL) is never imported here; the real-frame smoke test skips it.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "bench_mos2_real", ROOT / "benchmarks" / "bench_mos2_real.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def honeycomb(a_px: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Metal and chalcogen sites of a 2H-MX2 projection filling a size x size frame."""
    a1, a2 = np.array([a_px, 0.0]), np.array([a_px / 2, a_px * math.sqrt(3) / 2])
    n = int(2 * size / a_px) + 2
    i, j = np.meshgrid(np.arange(-n, n), np.arange(-n, n))
    metal = i.reshape(-1, 1) * a1 + j.reshape(-1, 1) * a2
    chalcogen = metal + (a1 + a2) / 3
    inside = lambda p: p[((p >= 0) & (p <= size - 1)).all(1)]  # noqa: E731
    return inside(metal), inside(chalcogen)


def test_compare_counts_matches_and_pm(bench):
    a_px, size, pixel_pm = 24.0, 400, 12.5
    metal, chalcogen = honeycomb(a_px, size)
    rng = np.random.default_rng(1)
    am = {"_xy": np.vstack([metal, chalcogen]),
          "_site": np.array(["Mo"] * len(metal) + ["S2"] * len(chalcogen))}
    shift = np.array([0.1, 0.0])  # 1.25 pm in x for every column
    xy = am["_xy"] + shift + rng.normal(0, 0.01, am["_xy"].shape)
    site = np.where(am["_site"] == "Mo", "M", "X")
    # stemscale misses two interior chalcogen columns and finds one column atomap does not have.
    centre = np.array([size / 2, size / 2])
    missed = np.argsort(np.hypot(*(chalcogen - centre).T))[:2] + len(metal)
    keep = np.setdiff1d(np.arange(len(xy)), missed)
    m0 = metal[np.argmin(np.hypot(*(metal - centre).T))]
    extra = m0 + np.array([a_px, a_px / math.sqrt(3)])  # an empty hexagon centre, a/sqrt(3) from all
    st = {"_xy": np.vstack([xy[keep], extra]), "_site": np.append(site[keep], "?"),
          "_err_pm": np.full(len(keep) + 1, 1.0)}
    cmp = bench.compare(st, am, pixel_pm, a_px, (size, size))
    assert cmp["matched"] == len(am["_xy"]) - 2
    assert cmp["only_atomap"] == 2 and cmp["only_stemscale"] == 1
    assert cmp["interior"]["only_atomap"] == 2 and cmp["interior"]["only_stemscale"] == 1
    assert cmp["all"]["median_pm"] == pytest.approx(1.25, abs=0.1)
    assert cmp["all"]["mean_dx_pm"] == pytest.approx(1.25, abs=0.05)
    assert cmp["all"]["median_after_mean_offset_pm"] < 0.3
    assert cmp["site_agreement"] == 1.0
    assert cmp["per_site"]["S2"]["matched"] == len(chalcogen) - 2
    assert cmp["per_site"]["Mo"]["stemscale_median_own_error_pm"] == 1.0
    assert cmp["match_radius_px"] == pytest.approx(0.5 * a_px / math.sqrt(3))
    n_in_a = cmp["interior"]["atomap_columns"]
    assert cmp["interior"]["atomap_also_found_by_stemscale"] == pytest.approx((n_in_a - 2) / n_in_a)


def test_stemscale_half_on_a_crop_of_the_real_frame(bench, tmp_path, local_cluster, capsys):
    from stemscale.errors import MosaicNotFoundError
    from stemscale.io.example_data import temul_mos2_frame_path

    try:
        temul_mos2_frame_path(install=True)
    except MosaicNotFoundError as exc:  # no package index reachable
        pytest.skip(f"example data unavailable: {exc}")
    out = tmp_path / "bench.json"
    assert bench.main(["--crop", "192", "--no-atomap", "--variants", "auto",
                       "--cluster", local_cluster.scheduler_address, "--output", str(out)]) == 0
    record = json.loads(out.read_text())
    run = record["results"]["stemscale"]["auto"]
    assert run["status"] == "complete" and run["wall_seconds"] > 0
    # 192 px at 12.7 pm is 2.4 nm: about 70 Mo and 70 S2 columns.
    assert 80 <= run["columns"] <= 250
    assert run["columns_by_sublattice"].get("M", 0) > 30 and run["columns_by_sublattice"].get("X", 0) > 30
    assert record["results"]["atomap"]["available"] is False
    assert record["results"]["frame"]["shape"] == [192, 192]
    assert all(t["measured"] is None and t["met"] is False for t in record["targets"])
    assert not (tmp_path / "bench_overlay.png").exists()  # nothing to compare without atomap
