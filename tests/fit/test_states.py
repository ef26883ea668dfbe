"""Fit states: usable (inside the fitting) versus reliable (measurements), and grading."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stemscale.fit import (
    RELIABLE_STATES,
    USABLE_STATES,
    FitState,
    grade_positions,
    is_reliable,
    is_usable,
)


def test_usable_and_reliable_states():
    states = np.array([int(s) for s in FitState])
    assert set(states[is_usable(states)]) == {FitState.CONVERGED, FitState.MAX_ITERATIONS}
    assert USABLE_STATES == (0, 1)  # what the LM's LEFT_WINDOW / NO_PEAK checks rely on
    assert set(states[is_reliable(states)]) == {FitState.CONVERGED} == set(RELIABLE_STATES)
    assert is_reliable(pd.Series(states)).tolist() == (states == 0).tolist()
    assert FitState.UNCERTAIN.name == "UNCERTAIN" and int(FitState.UNCERTAIN) == 7


def test_grade_positions_blanks_error_bars_that_mean_nothing():
    states = np.array([0, 0, 0, 1, 2, 0], dtype=np.int8)
    x_err = np.array([5.0, 60.0, 5.0, 8.0, np.nan, np.nan])
    y_err = np.array([6.0, 5.0, 1.4e5, 9.0, np.nan, 4.0])
    new, gx, gy = grade_positions(states, x_err, y_err, max_error=47.5)
    U = int(FitState.UNCERTAIN)
    assert new.tolist() == [0, U, U, 1, 2, U]
    assert gx[0] == 5.0 and gy[0] == 6.0
    assert np.isnan(gx[1:]).all() and np.isnan(gy[1:]).all()
    assert states.tolist() == [0, 0, 0, 1, 2, 0] and x_err[1] == 60.0  # inputs untouched
