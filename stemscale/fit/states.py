"""Per-fit outcome codes of the batched fitter.

Every fit of a batch carries its own state, so one bad window (NaN pixels, no
peak, two peaks) is reported for that window alone and never stops or alters
the others.  The codes are small integers so they travel in arrays on any
device; :class:`FitState` gives them names.

Two notions of a good fit, for two jobs:

* :func:`is_usable` (``CONVERGED`` or ``MAX_ITERATIONS``): the parameters are
  an estimate worth keeping *inside the fitting* (neighbour refits, the
  ``LEFT_WINDOW`` / ``NO_PEAK`` checks, placing a failed fit back at its start).
* :func:`is_reliable` (``CONVERGED`` only): the position and its error bar mean
  what they say, so *measurements* (spacings, strain references, precision and
  error summaries) use it.  :func:`grade_positions` turns converged fits whose
  error bar exceeds a bound into ``UNCERTAIN`` and blanks the error bars of every
  fit that is not reliable, so a table never shows a 100 nm error bar.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

__all__ = ["FitState", "RELIABLE_STATES", "USABLE_STATES", "grade_positions", "is_reliable",
           "is_usable", "state_names"]


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
    UNCERTAIN
        The fit converged, but the data hardly constrain its position: the
        position error (Cramér-Rao / covariance) exceeds the bound given to
        :func:`grade_positions` (in the atoms tables a quarter of the column
        spacing).  Never returned by a fitter; assigned when the atoms tables
        are made.
    """

    CONVERGED = 0
    MAX_ITERATIONS = 1
    SINGULAR = 2
    DIVERGED = 3
    LEFT_WINDOW = 4
    INVALID_INPUT = 5
    NO_PEAK = 6
    UNCERTAIN = 7


#: States whose parameters are an estimate worth using (the best found so far, at least).
USABLE_STATES: tuple[int, ...] = (int(FitState.CONVERGED), int(FitState.MAX_ITERATIONS))
#: States whose position and error bar measurements may use (spacings, strain, summaries).
RELIABLE_STATES: tuple[int, ...] = (int(FitState.CONVERGED),)


def is_usable(states: Any) -> Any:
    """Element-wise: does a fit with this state carry a usable position?

    Works on NumPy arrays, pandas Series and any array-API array (torch,
    CuPy); the one definition every module uses.
    """
    return (states == USABLE_STATES[0]) | (states == USABLE_STATES[1])


def is_reliable(states: Any) -> Any:
    """Element-wise: is a fit with this state reliable enough to measure with?

    Only ``CONVERGED`` fits are: ``MAX_ITERATIONS`` stopped early, ``UNCERTAIN``
    converged to a position the data do not determine.  Works like :func:`is_usable`.
    """
    return states == RELIABLE_STATES[0]


def grade_positions(states: Any, x_err: Any, y_err: Any,
                    max_error: float) -> tuple[Any, Any, Any]:
    """States and position error bars as a table of measured positions shows them.

    Parameters
    ----------
    states
        Fit states (:class:`FitState` codes), any NumPy-convertible array.
    x_err, y_err
        Position standard errors (any unit, the same as ``max_error``).
    max_error
        A converged fit whose larger error bar exceeds this (or is not finite)
        becomes ``UNCERTAIN``.

    Returns
    -------
    tuple of numpy.ndarray
        ``(states, x_err, y_err)``: new arrays; the error bars of every fit that
        is not reliable (:func:`is_reliable`) are NaN.
    """
    import numpy as np

    states = np.array(states, dtype=np.int8, copy=True)
    x_err = np.array(x_err, dtype=np.float64, copy=True)
    y_err = np.array(y_err, dtype=np.float64, copy=True)
    with np.errstate(invalid="ignore"):
        worst = np.maximum(x_err, y_err)  # NaN (undetermined) stays NaN
        loose = (states == int(FitState.CONVERGED)) & ~(worst <= float(max_error))
    states[loose] = int(FitState.UNCERTAIN)
    unreliable = ~is_reliable(states)
    x_err[unreliable] = np.nan
    y_err[unreliable] = np.nan
    return states, x_err, y_err


#: Internal marker for fits still iterating (never returned).
RUNNING = -1


def state_names(states) -> list[str]:
    """Names of an array of state codes, e.g. for a table column."""
    import numpy as np

    return [FitState(int(s)).name for s in np.asarray(states).ravel()]
