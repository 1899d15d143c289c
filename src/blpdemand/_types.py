"""Precise array aliases and the shared option vocabularies used across blpdemand."""

from __future__ import annotations

import enum
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

FloatArray: TypeAlias = npt.NDArray[np.float64]
IntArray: TypeAlias = npt.NDArray[np.int64]
BoolArray: TypeAlias = npt.NDArray[np.bool_]
AnyArray: TypeAlias = npt.NDArray[Any]
RNGLike: TypeAlias = "int | np.random.Generator | None"

#: moment covariance S and standard errors of GMM estimators (Hansen 1982; clustered: CGM 2011)
CovarianceKind: TypeAlias = Literal["unadjusted", "robust", "clustered"]
COVARIANCE_KINDS: tuple[str, ...] = ("unadjusted", "robust", "clustered")
#: the same for linear IV (logit, first stages), which also names White's HC0 ("robust") and
#: HC1 (HC0 times N / (N - K)) as statsmodels does
LinearCovarianceKind: TypeAlias = Literal["unadjusted", "robust", "hc0", "hc1", "clustered"]
LINEAR_COVARIANCE_KINDS: tuple[str, ...] = ("unadjusted", "robust", "hc0", "hc1", "clustered")
#: what a routine does when it fails: "report" (record it in the returned status and failed
#: markets, nothing else), "warn" (also a ConvergenceWarning) or "raise" (ConvergenceError)
OnFailure: TypeAlias = Literal["report", "warn", "raise"]
ON_FAILURE: tuple[str, ...] = ("report", "warn", "raise")


class Status(enum.Enum):
    """How an iterative routine ended: the inner fixed point (per market, or the worst over
    markets), the optimizer (the outer loop) and the Bertrand price solver (per market).

    ``converged`` is true for CONVERGED, CONVERGED_FALLBACK, AT_BOUND (a minimum on the box:
    the projected gradient vanishes, but standard inference does not apply there),
    NO_PARAMETERS and NOT_OPTIMIZED; a run stopped by a limit, by NaN or infinite values, or
    whose inner loop failed at its estimate, is not.
    """

    CONVERGED = "converged"
    CONVERGED_FALLBACK = "converged with the fallback method"
    AT_BOUND = "converged at a bound"
    NOT_CONVERGED = "not converged"
    MAX_ITERATIONS = "stopped at the iteration limit"
    MAX_EVALUATIONS = "stopped at the evaluation limit"
    NONFINITE = "stopped at NaN or infinite values"
    NONNEGATIVE_ALPHA = "stopped early: some consumers have a non-negative price coefficient"
    CONTRACTION_FAILED = "contraction failed at the estimate"
    NO_PARAMETERS = "no parameters"
    NOT_OPTIMIZED = "evaluated at the given theta"

    @property
    def converged(self) -> bool:
        return self in _SUCCESSFUL

    @property
    def at_limit(self) -> bool:
        """True when an iteration or evaluation limit ended the run."""
        return self in (Status.MAX_ITERATIONS, Status.MAX_EVALUATIONS)


#: statuses of a run that found what it looked for (or was not asked to look)
_SUCCESSFUL = frozenset({Status.CONVERGED, Status.CONVERGED_FALLBACK, Status.AT_BOUND,
                         Status.NO_PARAMETERS, Status.NOT_OPTIMIZED})


def as_generator(rng: int | np.random.Generator | None) -> np.random.Generator:
    """Return a numpy Generator from an int seed, a Generator, or None (fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)
