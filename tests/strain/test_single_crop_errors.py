"""A class averaged from one crop has no bootstrap spread: its standard errors are NaN, never 0."""

from __future__ import annotations

import numpy as np

from stemscale.average import AveragingConfig, AveragingResult, extract_crops
from stemscale.average.accumulator import ClassAccumulator, Moments
from stemscale.strain import MeasureConfig, analyse_class

PS = 0.2074


def crops(n: int, seed: int) -> np.ndarray:
    from stemscale.simulate import Sample, simulate_frame

    f = simulate_frame((200, 200), sample=Sample(concentrations={}, offset_A=(0.3, 0.2)), seed=seed,
                       labels=False)
    xs = f.truth[f.truth["site"] == "X"]
    k = np.argmin(np.hypot(xs["x_px"] - 100, xs["y_px"] - 100))
    cx, cy = int(round(xs["x_px"].iloc[k])), int(round(xs["y_px"].iloc[k]))
    one = extract_crops(f.image, [cx], [cy], 128).astype(float)
    rng = np.random.default_rng(seed)
    return one + rng.normal(0, 0.05 * one.std(), (n, 128, 128))


def test_one_crop_gives_undefined_standard_errors():
    stacks = {"SV": crops(1, 1), "pristine": crops(4, 2)}
    acc = ClassAccumulator()
    for cls, s in stacks.items():
        acc.add(cls, Moments.from_stack(s))
    res = AveragingResult(acc, {}, PS, 128, "memory", AveragingConfig(),
                          stack_opener=lambda url, cls: stacks[cls])
    cs = analyse_class(res, "SV", config=MeasureConfig(n_boot=20))
    sp = cs.spacings()
    assert np.isfinite(sp["class_pm"]).all() and np.isfinite(sp["pristine_pm"]).all()
    assert sp["class_se_pm"].isna().all() and sp["pristine_se_pm"].isna().all()
    assert cs.n_boot == 0
