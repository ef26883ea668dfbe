"""Block pipeline on a real LocalCluster: chunked == unchunked, restarts, faults.

These use the classical peak detector so they do not depend on the shipped
network's accuracy; the FCN path is exercised in test_pipeline_fcn.py.
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pandas as pd
import pytest

from stemscale import AcquisitionMetadata
from stemscale.errors import CorruptBlockError, InputError
from stemscale.io import write_array
from stemscale.parallel import plan_blocks
from stemscale.parallel.process import BlockConfig, process_block
from stemscale.parallel.run import load_tables, run_mosaic
from stemscale.simulate import simulate_frame

PIXEL = 0.2074
SHAPE = (384, 384)


@pytest.fixture(scope="module")
def frame():
    return simulate_frame(SHAPE, seed=21, labels=False)


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory, frame):
    url = tmp_path_factory.mktemp("pipe") / "mosaic.zarr"
    write_array(url, frame.image, AcquisitionMetadata(PIXEL, dose_e_per_a2=7300),
                chunks=(64, 64), shards=(128, 128))
    return str(url)


def _config(margin: int = 24) -> BlockConfig:
    return BlockConfig(PIXEL, detector="peaks", detector_margin=margin, stats=(0.0, 1.0))


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["y_px", "x_px"]).reset_index(drop=True)


def _assert_same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    a, b = _sorted(a), _sorted(b)
    assert len(a) == len(b)
    np.testing.assert_allclose(a["x_px"], b["x_px"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(a["y_px"], b["y_px"], atol=1e-6, rtol=0)
    np.testing.assert_array_equal(a["state"], b["state"])


@pytest.fixture(scope="module")
def reference(mosaic, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    run_mosaic(mosaic, out, _config(), block_shape=SHAPE)
    return load_tables(out)


def _seam_shape(reference) -> tuple[int, int]:
    """Block edges placed within half a pixel of real columns (the hard case)."""
    atoms = reference[0]
    near = atoms.iloc[(atoms["x_px"] - 110).abs().argsort()[:1]]
    x_seam = int(np.floor(float(near["x_px"].iloc[0]) + 0.5))
    near = atoms.iloc[(atoms["y_px"] - 100).abs().argsort()[:1]]
    y_seam = int(np.floor(float(near["y_px"].iloc[0]) + 0.5))
    return y_seam, x_seam


@pytest.mark.parametrize("margin", [8, 64])
@pytest.mark.parametrize("shape_kind", ["seams", "uneven"])
def test_chunked_equals_single_block(client, mosaic, reference, tmp_path, margin, shape_kind):
    block = _seam_shape(reference) if shape_kind == "seams" else (150, 97)
    out = tmp_path / "run"
    config = BlockConfig(PIXEL, detector="peaks", detector_margin=margin, stats=(0.0, 1.0))
    ref_out = tmp_path / "ref"
    run_mosaic(mosaic, ref_out, config, block_shape=SHAPE)
    result = run_mosaic(mosaic, out, config, block_shape=block)
    assert result.n_blocks > 4
    atoms, _ = load_tables(out)
    ref_atoms, _ = load_tables(ref_out)
    assert len(atoms) > 1000
    _assert_same(atoms, ref_atoms)
    # every column exactly once: no two rows closer than a pixel
    from scipy.spatial import cKDTree

    pairs = cKDTree(atoms[["x_px", "y_px"]].to_numpy()).query_pairs(1.0)
    assert not pairs


def test_results_are_in_global_coordinates_and_angstrom(reference, frame):
    atoms, defects = reference
    from scipy.spatial import cKDTree

    truth = frame.truth[frame.truth["species"] == "W"]
    dist, _ = cKDTree(atoms[["x_px", "y_px"]].to_numpy()).query(truth[["x_px", "y_px"]].to_numpy())
    assert np.median(dist) < 0.5  # fitted W columns sit on the truth
    np.testing.assert_allclose(atoms["x_A"], atoms["x_px"] * PIXEL)
    assert defects.empty  # the peak detector classifies nothing


def test_vacuum_and_blank_blocks(client, tmp_path, frame):
    image = frame.image.copy()
    image[:, 256:] = 0.0  # right third: vacuum, whole blocks of zeros
    url = tmp_path / "half.zarr"
    write_array(url, image, AcquisitionMetadata(PIXEL), chunks=(64, 64), shards=(128, 128))
    result = run_mosaic(str(url), tmp_path / "run", _config(), block_shape=(128, 128))
    atoms, _ = load_tables(tmp_path / "run")
    assert result.n_blocks == 9
    assert len(atoms) > 500
    assert atoms["x_px"].max() < 256 + 3


def test_rerun_skips_finished_blocks_and_gives_identical_output(client, mosaic, tmp_path):
    out = tmp_path / "run"
    first = run_mosaic(mosaic, out, _config(), block_shape=(128, 128))
    before = load_tables(out)
    # Lose three blocks' results as a killed run would.
    lost = sorted((out / "blocks").glob("*.json"))[2:5]
    for marker in lost:
        key = marker.stem
        marker.unlink()
        (out / "atoms" / f"part-{key}.parquet").unlink()
    manifest = json.loads((out / "manifest.json").read_text())
    second = run_mosaic(mosaic, out, _config(), block_shape=(128, 128))
    assert second.skipped == first.n_blocks - 3
    after = load_tables(out)
    _assert_same(before[0], after[0])
    assert manifest["complete"]


def test_other_settings_in_same_folder_are_refused(mosaic, tmp_path):
    out = tmp_path / "run"
    run_mosaic(mosaic, out, _config(), block_shape=(192, 192))
    with pytest.raises(InputError, match="different run"):
        run_mosaic(mosaic, out, _config(margin=30), block_shape=(192, 192))


def test_corrupt_chunk_names_block_and_keeps_finished_ones(mosaic, tmp_path):
    import shutil

    broken = tmp_path / "broken.zarr"
    shutil.copytree(mosaic, broken)
    shard = broken / "0" / "c" / "1" / "2"
    data = bytearray(shard.read_bytes())
    data[100:400] = b"\x00" * 300
    shard.write_bytes(bytes(data))
    out = tmp_path / "run"
    with pytest.raises(CorruptBlockError, match=r"block b\d{4}_\d{4}"):
        run_mosaic(str(broken), out, _config(), block_shape=(128, 128))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is False
    with pytest.raises(InputError, match="did not finish"):
        load_tables(out)
    # Repair the store: the rerun completes and matches an undamaged run.
    shutil.rmtree(broken)
    shutil.copytree(mosaic, broken)
    run_mosaic(str(broken), out, _config(), block_shape=(128, 128))
    ref = tmp_path / "ref"
    run_mosaic(mosaic, ref, _config(), block_shape=(128, 128))
    _assert_same(load_tables(out)[0], load_tables(ref)[0])


def test_worker_killed_mid_run_still_completes_identically(client, mosaic, tmp_path):
    import os

    ref = tmp_path / "ref"
    run_mosaic(mosaic, ref, _config(), block_shape=(64, 64))
    out = tmp_path / "run"
    errors = []

    def work():
        try:
            run_mosaic(mosaic, out, _config(), block_shape=(64, 64))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "blocks").glob("*.json"))) < 3:
        time.sleep(0.05)
    import signal

    pids = client.run(os.getpid)
    os.kill(next(iter(pids.values())), signal.SIGKILL)  # the nanny starts a fresh worker
    thread.join(300)
    assert not errors, errors
    _assert_same(load_tables(out)[0], load_tables(ref)[0])


def test_process_block_rejects_bad_windows(frame):
    spec = plan_blocks(SHAPE, SHAPE, 0)[0]
    bad = frame.image.copy()
    bad[5, 5] = np.nan
    with pytest.raises(InputError, match="NaN"):
        process_block(bad, spec, _config())
    with pytest.raises(InputError, match="window shape"):
        process_block(frame.image[:100], spec, _config())


def test_only_reliable_fits_carry_error_bars(frame):
    """MAX_ITERATIONS and UNCERTAIN rows keep their state and position, never an error bar."""
    from stemscale.fit import FitState
    from stemscale.parallel.process import UNCERTAIN_SPACING_FRACTION

    spec = plan_blocks(SHAPE, SHAPE, 0)[0]
    config = _config()  # ~10 % of the fits stop at max_iterations (100) at this tolerance
    atoms, _ = process_block(frame.image, spec, config)
    states = atoms["state"].to_numpy()
    converged = states == int(FitState.CONVERGED)
    stopped = states == int(FitState.MAX_ITERATIONS)
    assert converged.any() and stopped.any()
    errors = atoms[["x_err_pm", "y_err_pm"]].to_numpy()
    assert np.isfinite(errors[converged]).all()
    assert errors[converged].max() <= UNCERTAIN_SPACING_FRACTION * config.column_spacing * 100
    assert np.isnan(errors[~converged]).all()
    assert np.isfinite(atoms.loc[stopped, ["x_px", "y_px"]].to_numpy()).all()
