"""The training loop: a tiny run lowers the loss, checkpoints resume, export loads back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stemscale.detect import TrainConfig, get_model, clear_cache
from stemscale.detect.data import labels_to_class_map, make_patch, seed_for
from stemscale.detect.training import class_weights, detection_loss, train
from tests.detect.toy import toy_source


def _cfg(steps, **run):
    return TrainConfig.from_dict({
        "name": "toy", "model": {"base_filters": 4, "depth": 2},
        "data": {"frame_size": 96, "patch_size": 64, "frame_pool": 4, "val_frames": 1,
                 "patches_per_frame": 2, "resample_factors": [1.0, 0.5], "resample_probs": [0.8, 0.2]},
        "optim": {"steps": steps, "batch_size": 4, "lr": 3e-3, "warmup_steps": 3},
        "run": {"val_every": 1000, "log_every": 5, "threads": 1, "checkpoint_every": 5, **run},
    })


def test_tiny_training_run_lowers_the_loss(tmp_path):
    losses = []
    train(_cfg(40), tmp_path, source=toy_source((96, 96)), progress=False, export=False,
          on_step=lambda s, loss: losses.append(loss))
    assert len(losses) == 40
    assert np.mean(losses[-8:]) < 0.9 * np.mean(losses[:8])


def test_interrupted_run_resumes_and_exports(tmp_path):
    src = toy_source((96, 96))
    first = train(_cfg(6), tmp_path, source=src, progress=False, export=False)
    assert first.steps == 6
    steps = []
    res = train(_cfg(10), tmp_path, source=src, progress=False,
                on_step=lambda s, loss: steps.append(s))
    assert steps == [7, 8, 9, 10]  # continued, did not restart
    assert (tmp_path / "metrics.csv").read_text().count("\n") >= 3
    clear_cache()
    loaded = get_model(res.model_ref)
    assert loaded.manifest.training["steps_done"] == 10
    assert "val_loss" in loaded.manifest.metrics["validation"]


def test_class_weights_favour_rare_classes_and_average_one():
    counts = np.array([9000, 800, 150, 50])
    w = class_weights(counts, power=0.5, max_weight=100)
    assert np.all(np.diff(w) > 0)
    f = (counts + 1) / (counts.sum() + 4)
    assert np.sum(w * f) == pytest.approx(1.0)
    np.testing.assert_allclose(w[3] / w[0], np.sqrt(f[0] / f[3]))


def test_loss_is_cross_entropy_when_dice_off_and_lower_for_right_answers():
    y = torch.randint(0, 3, (2, 8, 8))
    right = torch.nn.functional.one_hot(y, 3).permute(0, 3, 1, 2).float() * 10
    wrong = torch.roll(right, 1, dims=1)
    w = torch.ones(3)
    assert detection_loss(right, y, w) < detection_loss(wrong, y, w)
    ce = torch.nn.functional.cross_entropy(wrong, y)
    torch.testing.assert_close(detection_loss(wrong, y, w, dice_weight=0), ce)


def test_defect_masks_override_site_masks():
    m = np.zeros((4, 4), bool)
    m[1, 1] = True
    sv = m.copy()
    x = np.zeros((4, 4), bool)
    x[1, 1] = x[2, 2] = True
    cmap = labels_to_class_map({"X": x, "SV": sv, "M": np.zeros((4, 4), bool)})
    assert cmap[1, 1] == 3 and cmap[2, 2] == 2 and cmap[0, 0] == 0


def test_patches_are_standardised_and_labels_follow_the_dihedral_transform():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(50, 60)).astype(np.float32)
    cmap = (img > 1).astype(np.uint8)
    x, y = make_patch(img * 3 + 7, cmap, rng, patch_size=32)
    assert x.shape == y.shape == (32, 32)
    assert abs(x.mean()) < 1e-5 and abs(x.std() - 1) < 1e-4
    # labels stay attached to their pixels: bright pixels are exactly the labelled ones
    assert np.array_equal(y.astype(bool), x >= x[y == 1].min())


def test_seed_streams_are_disjoint():
    train_seeds = {seed_for(1, i) for i in range(2000)}
    val_seeds = {seed_for(2, i) for i in range(2000)}
    assert not train_seeds & val_seeds
