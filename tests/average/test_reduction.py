"""The Dask tree reduction gives the same averages for any chunking, tree shape and scheduler."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stemscale.average import AveragingConfig, screen_defects, select_pristine
from stemscale.io.crop_stack import CropStack
from stemscale.parallel.averaging import average_classes
from stemscale.average.screening import detections_from_truth
from stemscale.errors import IncompleteMosaicError, InputError

PS = 0.2074


@pytest.fixture(scope="module")
def scene():
    from stemscale.simulate import Sample, simulate_frame

    f = simulate_frame((768, 768), sample=Sample(concentrations={"SV": 0.02}, min_defect_spacing_A=25.0),
                       seed=5, labels=False)
    det = detections_from_truth(f.truth, jitter_px=0.5, seed=0)
    scr = screen_defects(det, pixel_size_A=PS, mosaic_shape=f.image.shape)
    xs = f.truth[(f.truth["site"] == "X") & (f.truth["defect"] == "")]
    pri = select_pristine(xs, det, pixel_size_A=PS, mosaic_shape=f.image.shape, max_sites=12)
    table = pd.concat([scr.kept, pri.kept], ignore_index=True)
    assert scr.counts["SV"]["kept"] >= 4
    return f, table


@pytest.fixture(scope="module")
def reference_result(scene, tmp_path_factory):
    f, table = scene
    url = tmp_path_factory.mktemp("stack") / "crops.zarr"
    cfg = AveragingConfig(n_reference=64, reference_iterations=1, split_every=2)
    return average_classes(f.image, table, pixel_size_A=PS, chunks=(768, 768), config=cfg, stack_url=str(url))


@pytest.mark.parametrize("chunks, split_every", [((256, 256), 2), ((300, 512), 3), ((128, 768), 8)])
def test_same_average_for_any_chunking(scene, reference_result, chunks, split_every):
    f, table = scene
    cfg = AveragingConfig(n_reference=64, reference_iterations=1, split_every=split_every)
    # shuffled rows: order must not matter either
    shuffled = table.sample(frac=1.0, random_state=1)
    res = average_classes(f.image, shuffled, pixel_size_A=PS, chunks=chunks, config=cfg,
                          references=reference_result.references)
    for cls in ("SV", "pristine"):
        assert res.count(cls) == reference_result.count(cls)
        assert np.allclose(res.mean(cls), reference_result.mean(cls), rtol=0, atol=1e-9)
        assert np.allclose(res.accumulator.moments[cls].std, reference_result.accumulator.moments[cls].std, atol=1e-9)


def test_reference_does_not_depend_on_chunking(scene, reference_result):
    f, table = scene
    cfg = AveragingConfig(n_reference=64, reference_iterations=1)
    res = average_classes(f.image, table, pixel_size_A=PS, chunks=(200, 200), config=cfg)
    for cls in ("SV", "pristine"):
        assert np.allclose(res.references[cls], reference_result.references[cls], atol=1e-9)


def test_distributed_scheduler_gives_the_same_average(scene, reference_result, client):
    f, table = scene
    import dask.array as da

    cfg = AveragingConfig(n_reference=64, reference_iterations=1, split_every=2)
    res = average_classes(da.from_array(f.image, chunks=(384, 384)), table, pixel_size_A=PS, config=cfg,
                          references=reference_result.references)
    assert np.allclose(res.mean("SV"), reference_result.mean("SV"), atol=1e-9)


def test_crop_stack_holds_every_registered_crop(scene, reference_result):
    stack = CropStack.open(reference_result.stack_url, "SV")
    n = reference_result.count("SV")
    assert len(stack) == n
    crops = stack.read()
    assert crops.shape == (n, 128 * 128)
    assert np.allclose(crops.mean(0).reshape(128, 128), reference_result.mean("SV"), atol=1e-4)
    ids = stack.row_ids()
    assert len(set(ids.tolist())) == n
    assert stack.shifts().shape == (n, 2)
    summary = reference_result.summary()
    assert summary["classes"]["SV"]["averaged"] == n
    assert summary["classes"]["SV"]["orientation"] == {"same": n}
    # the registration recovered the rounding of the detections: shifts of a fraction of a pixel
    assert np.all(np.abs(stack.shifts()) < 2.0)


def test_incomplete_stack_is_refused(tmp_path):
    from stemscale.io.crop_stack import create_stack

    create_stack(tmp_path / "s.zarr", crop=16, classes=["SV"])
    with pytest.raises(IncompleteMosaicError, match="not completed"):
        CropStack.open(tmp_path / "s.zarr", "SV")


def test_crops_leaving_the_mosaic_are_counted(scene):
    f, table = scene
    edge = pd.DataFrame({"class": ["SV"], "cx_px": [10], "cy_px": [400]})
    res = average_classes(f.image, pd.concat([table, edge], ignore_index=True), pixel_size_A=PS,
                          config=AveragingConfig(n_reference=16, reference_iterations=1))
    assert res.accumulator.rejected["SV"]["crop_outside"] == 1


def test_bad_inputs(scene):
    f, table = scene
    with pytest.raises(InputError, match="pixel_size_A"):
        average_classes(f.image, table)
    with pytest.raises(InputError, match="lacks"):
        average_classes(f.image, table.drop(columns=["cx_px"]), pixel_size_A=PS)
    with pytest.raises(InputError, match="orientation"):
        AveragingConfig(orientation="maybe")


def test_point_group_operations_keep_the_lattice(scene):
    # rotating pristine crops by 120 degrees about a chalcogen site is a symmetry of the lattice:
    # after registration their average matches the unrotated one (pair configurations rely on it)
    f, table = scene
    cfg = AveragingConfig(n_reference=64, reference_iterations=1)
    pri = table[table["class"] == "pristine"]
    plain = average_classes(f.expected, pri, pixel_size_A=PS, config=cfg).mean("pristine")
    for op in (1, 3):  # a rotation and a mirror
        rot = average_classes(f.expected, pri.assign(op=op, mirror_angle_deg=90.0), pixel_size_A=PS,
                              config=cfg).mean("pristine")
        inner = (slice(24, -24), slice(24, -24))
        assert np.corrcoef(rot[inner].ravel(), plain[inner].ravel())[0, 1] > 0.995
