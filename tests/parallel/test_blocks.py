"""Blocks, halos and the owner-computes rule."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stemscale.errors import InputError
from stemscale.parallel import keep_owned, plan_blocks, required_halo


@settings(max_examples=50, deadline=None)
@given(
    ny=st.integers(1, 300), nx=st.integers(1, 300),
    bh=st.integers(1, 128), bw=st.integers(1, 128), halo=st.integers(0, 40),
    seed=st.integers(0, 2**31 - 1),
)
def test_every_position_owned_by_exactly_one_block(ny, nx, bh, bw, halo, seed):
    rng = np.random.default_rng(seed)
    # Random positions plus positions exactly on block seams (the hard case).
    ys = np.concatenate([rng.uniform(-0.5, ny - 0.5, 200), np.arange(0, ny, bh) - 0.5])
    xs = np.concatenate([rng.uniform(-0.5, nx - 0.5, 200), np.arange(0, nx, bw)[: len(ys) - 200] - 0.5])
    ys = ys[: len(xs)]
    table = pd.DataFrame({"y_px": ys, "x_px": xs})
    specs = plan_blocks((ny, nx), (bh, bw), halo)
    counts = np.zeros(len(table), int)
    for spec in specs:
        counts[keep_owned(table, spec.core).index] += 1
    assert (counts == 1).all()


def test_windows_are_core_plus_clipped_halo():
    specs = plan_blocks((100, 70), (40, 30), halo=8)
    assert [s.index for s in specs][:3] == [(0, 0), (0, 1), (0, 2)]
    middle = next(s for s in specs if s.index == (1, 1))
    assert middle.core == (40, 80, 30, 60)
    assert middle.window == (32, 88, 22, 68)
    corner = specs[-1]
    assert corner.core == (80, 100, 60, 70)
    assert corner.window == (72, 100, 52, 70)
    ys, xs = middle.core_in_window()
    assert (ys.start, ys.stop, xs.start, xs.stop) == (8, 48, 8, 38)


def test_dask_style_chunks_accepted_and_checked():
    specs = plan_blocks((10, 10), ((4, 6), (5, 5)), halo=1)
    assert len(specs) == 4
    with pytest.raises(InputError, match="do not add up"):
        plan_blocks((10, 10), ((4, 4), (5, 5)), halo=1)
    with pytest.raises(InputError, match="halo"):
        plan_blocks((10, 10), (5, 5), halo=-1)


def test_required_halo_covers_margin_and_fit_window():
    assert required_halo(detector_margin=16, fit_window=7, safety=0) == 16 + 3 + 1
