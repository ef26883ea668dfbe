"""Per-fit outcome codes of the batched fitter.

Every fit of a batch carries its own state, so one bad window (NaN pixels, no
peak, two peaks) is reported for that window alone and never stops or alters
the others.  The codes are small integers so they travel in arrays on any
device; :class:`FitState` gives them names.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

__all__ = ["FitState", "USABLE_STATES", "is_usable", "state_names"]


class FitState(IntEnum):
    """Outcome of one fit.

    Attributes
    ----------
    CONVERGED
        The relative change of the objective, or every parameter step, fell
        below ``tolerance``.
    MAX_ITERATIONS
        ``max_iterations`` were used up before convergence; the parameters are
        the best found so far.
    SINGULAR
        The (damped) curvature matrix could not be factorised, e.g. a window
        with no peak, where the centre has no influence on the model.
    DIVERGED
        The parameters left the finite range (returned as NaN).
    LEFT_WINDOW
        The fit ended with its centre outside the window it was fitted in.
    INVALID_INPUT
        The window or start values hold NaN/Inf, or, for the Poisson
        estimator, negative counts or a non-positive start model.
    NO_PEAK
        The fit ended with an amplitude that is not positive (or below
        ``1e-6`` of the window's largest value): an empty, flat or dark window
        whose position means nothing.
    """

    CONVERGED = 0
    MAX_ITERATIONS = 1
    SINGULAR = 2
    DIVERGED = 3
    LEFT_WINDOW = 4
    INVALID_INPUT = 5
    NO_PEAK = 6


#: States whose parameters are an estimate worth using (the best found so far, at least).
USABLE_STATES: tuple[int, ...] = (int(FitState.CONVERGED), int(FitState.MAX_ITERATIONS))


def is_usable(states: Any) -> Any:
    """Element-wise: does a fit with this state carry a usable position?

    Works on NumPy arrays, pandas Series and any array-API array (torch,
    CuPy); the one definition every module uses.
    """
    return (states == USABLE_STATES[0]) | (states == USABLE_STATES[1])


#: Internal marker for fits still iterating (never returned).
RUNNING = -1


def state_names(states) -> list[str]:
    """Names of an array of state codes, e.g. for a table column."""
    import numpy as np

    return [FitState(int(s)).name for s in np.asarray(states).ravel()]
