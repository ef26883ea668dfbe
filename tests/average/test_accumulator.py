"""The class accumulator is a monoid: any grouping and order of partial sums gives the same result."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from stemscale.average import ClassAccumulator, Moments, combine, combine_all


def _acc(rng, cls, n, shape=(6, 5)):
    a = ClassAccumulator()
    stack = rng.normal(size=(n, *shape))
    shifts = rng.normal(size=(n, 2))
    a.add(cls, Moments.from_stack(stack, shifts))
    a.reject(cls, "rotated_grain", int(rng.integers(0, 3)))
    a.count_orientation(cls, ["same"] * n)
    a.parts.setdefault(cls, []).append((f"b{int(rng.integers(0, 10**6)):07d}", n))
    return a, stack, shifts


def test_moments_match_numpy():
    rng = np.random.default_rng(0)
    stack = rng.normal(3.0, 2.0, size=(50, 4, 4))
    shifts = rng.normal(size=(50, 2))
    m = Moments.from_stack(stack, shifts)
    assert np.allclose(m.mean, stack.mean(0))
    assert np.allclose(m.std, stack.std(0, ddof=1))
    assert np.allclose(m.sem, stack.std(0, ddof=1) / np.sqrt(50))
    assert np.allclose(m.shift_mean, shifts.mean(0)) and np.allclose(m.shift_std, shifts.std(0, ddof=1))


def test_identity_and_inputs_untouched():
    rng = np.random.default_rng(1)
    a, _, _ = _acc(rng, "SV", 5)
    before = a.moments["SV"].total.copy()
    out = combine(ClassAccumulator(), a)
    assert np.array_equal(out.moments["SV"].total, before)
    out2 = combine(a, ClassAccumulator())
    assert np.array_equal(out2.moments["SV"].total, before)
    combine(out, out2)
    assert np.array_equal(a.moments["SV"].total, before)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["SV", "2Te", "pristine"]), st.integers(1, 6)), min_size=1, max_size=12),
       st.randoms(use_true_random=False))
def test_any_grouping_gives_the_same_sums(parts, rnd):
    rng = np.random.default_rng(len(parts))
    accs, stacks = [], {}
    for cls, n in parts:
        a, s, _ = _acc(rng, cls, n)
        accs.append(a)
        stacks.setdefault(cls, []).append(s)
    flat = combine_all(accs)
    order = list(range(len(accs)))
    rnd.shuffle(order)
    # random binary tree over a shuffled order
    items = [accs[i] for i in order]
    while len(items) > 1:
        k = rnd.randrange(len(items) - 1)
        items[k : k + 2] = [combine(items[k], items[k + 1])]
    tree = items[0]
    for cls, ss in stacks.items():
        allc = np.concatenate(ss)
        for acc in (flat, tree):
            m = acc.moments[cls]
            assert m.count == len(allc)
            assert np.allclose(m.mean, allc.mean(0), rtol=1e-12, atol=1e-12)
            assert np.allclose(m.total_sq, (allc**2).sum(0), rtol=1e-12, atol=1e-12)
    assert flat.rejected == tree.rejected
    assert flat.parts == tree.parts
    assert sum(flat.orientation[c]["same"] for c in flat.orientation) == sum(n for _, n in parts)


def test_summary_is_json_friendly():
    import json

    rng = np.random.default_rng(2)
    a, _, _ = _acc(rng, "SV", 4)
    s = a.summary()
    json.dumps(s)
    assert s["SV"]["averaged"] == 4 and isinstance(s["SV"]["rejected"], dict)
    assert Counter(s["SV"]["orientation"])["same"] == 4
