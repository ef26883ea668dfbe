"""Window extraction and start values."""

from __future__ import annotations

import numpy as np
import pytest

from stemscale.errors import InputError
from stemscale.fit import estimate_initial, extract_windows

from .conftest import gaussian_windows


def _loop_windows(image, positions, h, w):
    out, origins, edge = [], [], []
    ny, nx = image.shape
    for x, y in positions:
        c0 = int(np.floor(x - (w - 1) / 2 + 0.5))
        r0 = int(np.floor(y - (h - 1) / 2 + 0.5))
        e = c0 < 0 or r0 < 0 or c0 + w > nx or r0 + h > ny
        c0 = min(max(c0, 0), nx - w)
        r0 = min(max(r0, 0), ny - h)
        out.append(image[r0:r0 + h, c0:c0 + w])
        origins.append((c0, r0))
        edge.append(e)
    return np.array(out), np.array(origins), np.array(edge)


@pytest.mark.parametrize("size", [7, (5, 8)])
def test_matches_a_loop_and_flags_edges(size):
    rng = np.random.default_rng(50)
    image = rng.normal(size=(40, 50))
    pos = np.column_stack([rng.uniform(-2, 52, 300), rng.uniform(-2, 42, 300)])
    h, w = (size, size) if isinstance(size, int) else size
    win, org, edge = extract_windows(image, pos, size)
    ref_w, ref_o, ref_e = _loop_windows(image, pos, h, w)
    assert win.shape == (300, h, w)
    np.testing.assert_array_equal(win, ref_w)
    np.testing.assert_array_equal(org, ref_o)
    np.testing.assert_array_equal(edge, ref_e)
    inside = (pos[:, 0] > w) & (pos[:, 0] < 50 - w) & (pos[:, 1] > h) & (pos[:, 1] < 40 - h)
    assert not edge[inside].any()
    # a centred position sits within half a pixel of the window centre
    loc = pos[inside] - org[inside]
    assert np.all(np.abs(loc - [(w - 1) / 2, (h - 1) / 2]) <= 0.5 + 1e-12)


def test_block_offset_gives_global_origins():
    rng = np.random.default_rng(51)
    full = rng.normal(size=(64, 64))
    pos = np.array([[40.3, 37.8], [50.0, 45.2]])
    block = full[32:, 32:]
    w1, o1, _ = extract_windows(full, pos, 7)
    w2, o2, _ = extract_windows(block, pos, 7, offset_xy=(32, 32))
    np.testing.assert_array_equal(w1, w2)
    np.testing.assert_array_equal(o1, o2)


def test_torch_and_xarray_inputs():
    torch = pytest.importorskip("torch")
    xr = pytest.importorskip("xarray")
    image = np.arange(400.0).reshape(20, 20)
    pos = np.array([[5.2, 6.7], [0.0, 19.0]])
    ref, _, _ = extract_windows(image, pos, 5)
    t, _, _ = extract_windows(torch.from_numpy(image), pos, 5)
    assert isinstance(t, torch.Tensor)
    np.testing.assert_array_equal(t.numpy(), ref)
    x, _, _ = extract_windows(xr.DataArray(image, dims=("y", "x")), pos, 5)
    np.testing.assert_array_equal(x, ref)


def test_bad_inputs_name_the_problem():
    img = np.zeros((10, 10))
    with pytest.raises(InputError, match="positions_xy"):
        extract_windows(img, np.array([[1.0, np.nan]]), 3)
    with pytest.raises(InputError, match="positions_xy"):
        extract_windows(img, np.zeros((3, 3)), 3)
    with pytest.raises(InputError, match="smaller than"):
        extract_windows(img, np.zeros((1, 2)), 11)
    with pytest.raises(InputError, match="2-D"):
        extract_windows(np.zeros((2, 10, 10)), np.zeros((1, 2)), 3)


def test_start_values_are_close_to_truth():
    rng = np.random.default_rng(52)
    n = 200
    truth = np.column_stack([rng.uniform(500, 1500, n), 3 + rng.uniform(-0.5, 0.5, n),
                             3 + rng.uniform(-0.5, 0.5, n), np.full(n, 1.3), np.full(n, 1.3),
                             rng.uniform(20, 60, n)])
    data = rng.poisson(gaussian_windows(truth, (7, 7), "gauss2d_elliptic")).astype(float)
    start = estimate_initial(data)
    assert np.abs(start[:, 1:3] - truth[:, 1:3]).max() < 0.5
    assert np.median(np.abs(start[:, 3] / truth[:, 3] - 1)) < 0.35
    assert np.median(np.abs(start[:, 0] / truth[:, 0] - 1)) < 0.2
    iso = estimate_initial(data, "gauss2d", sigma=1.3)
    assert iso.shape == (n, 5) and np.all(iso[:, 3] == 1.3)
    rot = estimate_initial(data, "gauss2d_rotated")
    assert rot.shape == (n, 7) and np.all(rot[:, 6] == 0)
    bad = data.copy()
    bad[0, 0, 0] = np.nan
    assert np.all(np.isnan(estimate_initial(bad)[0]))
