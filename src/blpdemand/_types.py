"""Precise array aliases and the shared option vocabularies used across blpdemand."""

from __future__ import annotations

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
#: what an iterative routine does when it fails: warn and report the failure, or raise
FailurePolicy: TypeAlias = Literal["warn", "raise"]


def as_generator(rng: int | np.random.Generator | None) -> np.random.Generator:
    """Return a numpy Generator from an int seed, a Generator, or None (fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)
