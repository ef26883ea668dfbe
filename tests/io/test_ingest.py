"""Ingest of frames and frame grids into mosaics, through the API and the CLI."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tifffile
import zarr
from scipy import ndimage

from stemscale import InputError, MetadataError, MosaicNotFoundError
from stemscale.cli import main
from stemscale.io import open_mosaic
from stemscale.io.ingest import ingest, read_positions

from .conftest import write_velox_emd

PS = 0.2  # Å per pixel
ORIGIN = (1000.0, -2000.0)  # Å, where the mosaic's first pixel sits
# A 2 x 2 grid of 180 x 230 px frames with 60 px overlaps, over a 300 x 400 px field.
OFFSETS = [(0, 0), (0, 170), (120, 0), (120, 170)]
TILE = (180, 230)


@pytest.fixture()
def field(rng):
    """A smooth 'specimen' plus noise: the ground truth the tiles are cut from."""
    smooth = ndimage.gaussian_filter(rng.normal(size=(300, 400)), 4) * 50 + 200
    return (smooth + rng.normal(0, 1, size=smooth.shape)).astype(np.float32)


def _write_imagej(path, image, pixel_size=PS):
    tifffile.imwrite(path, image, imagej=True, resolution=(1 / pixel_size, 1 / pixel_size),
                     metadata={"unit": "A"})


@pytest.fixture()
def tiles(tmp_path, field):
    paths = []
    for k, (oy, ox) in enumerate(OFFSETS):
        path = tmp_path / f"tile_{k}.tif"
        _write_imagej(path, field[oy:oy + TILE[0], ox:ox + TILE[1]])
        paths.append(str(path))
    return paths


def _csv(tmp_path, rows, header="file,y_A,x_A"):
    path = tmp_path / "positions.csv"
    path.write_text(header + "\n" + "\n".join(",".join(str(v) for v in r) for r in rows) + "\n")
    return str(path)


def _positions(offsets):
    return [(ORIGIN[0] + oy * PS, ORIGIN[1] + ox * PS) for oy, ox in offsets]


@pytest.mark.parametrize("overlap", ["last", "mean"])
def test_grid_with_csv_positions_rebuilds_the_field(tmp_path, tiles, field, overlap):
    # Rows in a different order than the files: matched by file name.
    rows = [(os.path.basename(p), y, x) for p, (y, x) in zip(tiles, _positions(OFFSETS))][::-1]
    out = tmp_path / "grid.zarr"
    mosaic = ingest(tiles, out, positions=_csv(tmp_path, rows), overlap=overlap,
                    chunks=(64, 64), shards=(128, 128))
    assert mosaic.shape == field.shape
    np.testing.assert_allclose(mosaic.values, field, rtol=1e-6)
    assert float(mosaic.y[0]) == pytest.approx(ORIGIN[0])
    assert float(mosaic.x[0]) == pytest.approx(ORIGIN[1])
    assert float(mosaic.x[-1]) == pytest.approx(ORIGIN[1] + 399 * PS)
    frames = mosaic.attrs["frames"]
    assert [f["offset_px"] for f in frames] == [list(o) for o in OFFSETS]
    assert mosaic.attrs["pixel_size_angstrom"] == pytest.approx(PS)


def test_overlap_policies_on_constant_frames(tmp_path):
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    _write_imagej(a, np.full((10, 10), 1.0, np.float32))
    _write_imagej(b, np.full((10, 10), 3.0, np.float32))
    positions = [(0.0, 0.0), (5 * PS, 5 * PS)]  # b overlaps a's bottom-right quarter
    last = ingest([a, b], tmp_path / "last.zarr", positions=positions).values
    mean = ingest([a, b], tmp_path / "mean.zarr", positions=positions, overlap="mean").values
    assert last.shape == mean.shape == (15, 15)
    assert last[7, 7] == 3.0 and mean[7, 7] == 2.0  # overlap
    assert last[2, 2] == mean[2, 2] == 1.0 and last[12, 12] == mean[12, 12] == 3.0
    assert last[12, 2] == mean[12, 2] == 0.0  # covered by no frame


def test_subpixel_positions_round_and_record_residual(tmp_path):
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    _write_imagej(a, np.ones((8, 8), np.float32))
    _write_imagej(b, np.ones((8, 8), np.float32))
    mosaic = ingest([a, b], tmp_path / "m.zarr", positions=[(0.0, 0.0), (0.0, 4.3 * PS)])
    second = mosaic.attrs["frames"][1]
    assert second["offset_px"] == [0, 4]
    assert second["rounding_residual_px"][1] == pytest.approx(0.3, abs=1e-6)


def test_grid_placed_by_stage_positions_in_velox_files(tmp_path, field):
    paths = []
    for k, (oy, ox) in enumerate(OFFSETS):
        path = tmp_path / f"tile_{k}.emd"
        stage_m = ((ORIGIN[0] + oy * PS) * 1e-10, (ORIGIN[1] + ox * PS) * 1e-10)
        write_velox_emd(path, field[oy:oy + TILE[0], ox:ox + TILE[1]], pixel_size_m=PS * 1e-10,
                        high_tension_v=80000, stage_m=stage_m)
        paths.append(str(path))
    mosaic = ingest(paths, tmp_path / "m.zarr", chunks=(64, 64), shards=(128, 128))
    np.testing.assert_array_equal(mosaic.values, field)
    assert float(mosaic.y[0]) == pytest.approx(ORIGIN[0])
    assert mosaic.attrs["high_tension_kv"] == 80.0


def test_several_frames_without_positions(tmp_path, tiles):
    with pytest.raises(MetadataError, match="no stage position.*--positions"):
        ingest(tiles, tmp_path / "m.zarr")
    assert not os.path.exists(tmp_path / "m.zarr")


def test_positions_csv_problems(tmp_path, tiles):
    with pytest.raises(InputError, match=r"lacks column\(s\) \['x_A'\]"):
        read_positions(_csv(tmp_path, [(1.0,)], header="y_A"), tiles)
    with pytest.raises(InputError, match="1 rows for 4 input files"):
        read_positions(_csv(tmp_path, [(1.0, 2.0)], header="y_A,x_A"), tiles)
    with pytest.raises(InputError, match="0 rows for"):
        read_positions(_csv(tmp_path, [("other.tif", 1.0, 2.0)]), tiles[:1])
    with pytest.raises(InputError, match="finite numbers"):
        read_positions(_csv(tmp_path, [(1.0, "nan")], header="y_A,x_A"), tiles[:1])
    with pytest.raises(MosaicNotFoundError, match="does not exist"):
        read_positions(tmp_path / "none.csv", tiles)
    # Without a 'file' column, rows follow the order of the files.
    got = read_positions(_csv(tmp_path, _positions(OFFSETS), header="y_A,x_A"), tiles)
    want = _positions(OFFSETS)
    # pytest.approx() takes no nested sequences (pytest >= 9.2): compare row by row.
    assert len(got) == len(want)
    for got_row, want_row in zip(got, want):
        assert got_row == pytest.approx(want_row)


def test_positions_in_wrong_units_are_caught(tmp_path, tiles):
    # Stage positions in µm pasted as Å: frames 10,000x too far apart.
    far = [(y * 1e4, x * 1e4) for y, x in _positions(OFFSETS)]
    with pytest.raises(InputError, match="check that the positions are in Å"):
        ingest(tiles, tmp_path / "m.zarr", positions=far)
    assert not os.path.exists(tmp_path / "m.zarr")


def test_mixed_pixel_sizes_refused(tmp_path):
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    _write_imagej(a, np.ones((8, 8), np.float32), pixel_size=0.2)
    _write_imagej(b, np.ones((8, 8), np.float32), pixel_size=0.3)
    with pytest.raises(InputError, match="different pixel sizes"):
        ingest([a, b], tmp_path / "m.zarr", positions=[(0, 0), (0, 2)])
    assert not os.path.exists(tmp_path / "m.zarr")


def test_nan_frame_leaves_nothing_behind(tmp_path, tiles, field):
    bad = tmp_path / "bad.tif"
    image = field[:180, :230].copy()
    image[17, 33] = np.nan
    _write_imagej(bad, image)
    positions = _positions(OFFSETS[:2])
    with pytest.raises(InputError, match=r"bad\.tif' contains 1 NaN or Inf.*row 17, column 33"):
        ingest([tiles[0], bad], tmp_path / "m.zarr", positions=positions,
               chunks=(64, 64), shards=(128, 128))
    assert not os.path.exists(tmp_path / "m.zarr")


def test_existing_output_kept(tmp_path, tiles):
    out = tmp_path / "m.zarr"
    ingest(tiles[0], out)
    before = sorted(p for p in os.listdir(out))
    with pytest.raises(InputError, match="already exists"):
        ingest(tiles[1], out)
    assert sorted(os.listdir(out)) == before
    assert open_mosaic(out).shape == TILE


# --------------------------------------------------------------------------- CLI


def test_cli_ingest_single_tiff(tmp_path, field, capsys):
    src = tmp_path / "frame.tif"
    tifffile.imwrite(src, field[:64, :80])
    out = tmp_path / "frame.zarr"
    code = main(["ingest", str(src), str(out), "--pixel-size", "0.2074", "--high-tension", "80",
                 "--levels", "2", "--quiet"])
    assert code == 0
    mosaic = open_mosaic(out)
    np.testing.assert_array_equal(mosaic.values, field[:64, :80])
    assert mosaic.attrs["pixel_size_angstrom"] == 0.2074
    assert mosaic.attrs["high_tension_kv"] == 80.0
    assert zarr.open_group(out, mode="r")["1"].shape == (32, 40)


def test_cli_grid_with_positions_and_summary(tmp_path, tiles, field, capsys):
    rows = [(os.path.basename(p), y, x) for p, (y, x) in zip(tiles, _positions(OFFSETS))]
    out = tmp_path / "grid.zarr"
    code = main(["ingest", *tiles, str(out), "--positions", _csv(tmp_path, rows),
                 "--overlap", "mean", "--chunk", "64", "--shard", "128"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "300 x 400" in captured.out
    np.testing.assert_allclose(open_mosaic(out).values, field, rtol=1e-6)


@pytest.mark.parametrize(
    "make, args, message",
    [
        ("plain", [], "has no pixel size in its metadata"),
        ("stack", ["--pixel-size", "0.2"], "--frame N"),
        ("plain", ["--pixel-size", "-1"], "pixel size must be a positive"),
        ("missing", [], "does not exist"),
    ],
)
def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, make, args, message):
    src = tmp_path / "frame.tif"
    if make == "plain":
        tifffile.imwrite(src, np.ones((8, 8), np.uint16))
    elif make == "stack":
        tifffile.imwrite(src, np.ones((3, 8, 8), np.uint16), photometric="minisblack")
    out = tmp_path / "out.zarr"
    code = main(["ingest", str(src), str(out), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err
    assert [line for line in err.splitlines() if "error:" in line] and not out.exists()


def test_cli_forgotten_output(tmp_path, capsys):
    code = main(["ingest", str(tmp_path / "a.dm4"), str(tmp_path / "b.dm4")])
    assert code == 2
    assert "looks like an input frame" in capsys.readouterr().err


def test_grid_placed_by_dm4_stage_positions(tmp_path, field):
    from .dmfile import write_dm

    paths = []
    for k, (oy, ox) in enumerate(OFFSETS):
        path = tmp_path / f"tile_{k}.dm4"
        stage_um = {"Stage X": (ORIGIN[1] + ox * PS) * 1e-4,
                    "Stage Y": (ORIGIN[0] + oy * PS) * 1e-4}
        write_dm(path, field[oy:oy + TILE[0], ox:ox + TILE[1]], scale=PS / 10, units="nm",
                 image_tags={"Microscope Info": {"Stage Position": stage_um}})
        paths.append(str(path))
    mosaic = ingest(paths, tmp_path / "m.zarr", chunks=(64, 64), shards=(128, 128))
    np.testing.assert_array_equal(mosaic.values, field)
    assert float(mosaic.x[0]) == pytest.approx(ORIGIN[1], abs=1e-6)


# --------------------------------------------------------------------------- block composition


def _paste_all(frames, offsets, shape, policy):
    """Oracle: paste every frame onto one canvas, in order (or average)."""
    total = np.zeros(shape)
    count = np.zeros(shape)
    last = np.zeros(shape)
    for data, (oy, ox) in zip(frames, offsets):
        sl = (slice(oy, oy + data.shape[0]), slice(ox, ox + data.shape[1]))
        last[sl] = data
        total[sl] += data
        count[sl] += 1
    return last if policy == "last" else total / np.maximum(count, 1)


def test_blockwise_composition_equals_global_paste():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from stemscale.io.ingest import _compose

    frame_st = st.tuples(st.integers(1, 12), st.integers(1, 12), st.integers(0, 15),
                         st.integers(0, 15))

    @settings(max_examples=30, deadline=None)
    @given(st.lists(frame_st, min_size=1, max_size=5), st.integers(1, 9), st.integers(1, 9),
           st.sampled_from(["last", "mean"]))
    def check(specs, by, bx, policy):
        rng = np.random.default_rng(len(specs) * 100 + by * 10 + bx)
        frames = [rng.normal(size=(h, w)) for h, w, _, _ in specs]
        offsets = [(oy, ox) for _, _, oy, ox in specs]
        shape = tuple(int(n) for n in np.max([(oy + f.shape[0], ox + f.shape[1])
                                              for f, (oy, ox) in zip(frames, offsets)], axis=0))
        out = np.zeros(shape)
        for y0 in range(0, shape[0], by):
            for x0 in range(0, shape[1], bx):
                y1, x1 = min(y0 + by, shape[0]), min(x0 + bx, shape[1])
                out[y0:y1, x0:x1] = _compose((y0, y1, x0, x1), frames, offsets, policy,
                                             np.dtype(np.float64))
        np.testing.assert_allclose(out, _paste_all(frames, offsets, shape, policy), atol=1e-12)

    check()
