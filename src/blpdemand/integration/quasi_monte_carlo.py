"""Quasi-Monte Carlo nodes: scrambled Sobol, scrambled Halton and Latin hypercube samples.

Uniform points u_i in (0, 1)^K are mapped to standard-normal nodes nu_i = Phi^{-1}(u_i), with
equal weights 1/I. Scrambling (Owen 1997; Matousek 1998) keeps the low discrepancy of the
sequence while making each seed an independent, unbiased replicate.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy.special import ndtri

from blpdemand._types import FloatArray

# Keep Phi^{-1}(u) finite: scrambled points are never exactly 0 or 1 in practice, but a
# 2^-53 grid point could be, and one infinite node would poison every share in a market.
_EDGE = 2.0 ** -60


def _normal(uniform: FloatArray) -> FloatArray:
    """nu = Phi^{-1}(u), with u clipped away from 0 and 1."""
    return np.asarray(ndtri(np.clip(uniform, _EDGE, 1.0 - _EDGE)), dtype=np.float64)


def _engine(cls: Any, dimensions: int, generator: np.random.Generator) -> Any:
    """A scrambled scipy QMC engine seeded from ``generator`` (scipy >= 1.15 says ``rng``)."""
    try:
        return cls(dimensions, scramble=True, rng=generator)
    except TypeError:  # scipy < 1.15
        return cls(dimensions, scramble=True, seed=generator)


def sobol(dimensions: int, size: int,
          generator: np.random.Generator) -> tuple[FloatArray, FloatArray]:
    """Scrambled Sobol nodes (I, K) and weights 1/I (Sobol 1967; Owen 1998 scrambling).

    Sizes that are powers of two keep the balance properties of the net; other sizes work but
    integrate less evenly. The first I points of a 2I request with the same seed are the I points.
    """
    from scipy.stats import qmc  # here: importing scipy.stats costs 0.3 s (issue 23)

    engine = _engine(qmc.Sobol, dimensions, generator)
    with warnings.catch_warnings():
        # scipy warns for sizes that are not powers of 2; the docstring says it instead
        warnings.filterwarnings("ignore", message=".*balance properties.*")
        uniform = engine.random(size)
    return _normal(uniform), np.full(size, 1.0 / size)


def halton(dimensions: int, size: int,
           generator: np.random.Generator) -> tuple[FloatArray, FloatArray]:
    """Scrambled Halton nodes (I, K) and weights 1/I (Halton 1960; Owen 2017 scrambling).

    Dimension k uses the k-th prime as base; scrambling removes the correlation between
    high-dimensional bases that plagues the plain sequence (Train 2009, ch. 9.3).
    """
    from scipy.stats import qmc  # here: importing scipy.stats costs 0.3 s (issue 23)

    engine = _engine(qmc.Halton, dimensions, generator)
    return _normal(engine.random(size)), np.full(size, 1.0 / size)


def lhs(dimensions: int, size: int,
        generator: np.random.Generator) -> tuple[FloatArray, FloatArray]:
    """Latin hypercube nodes (I, K) and weights 1/I (McKay, Beckman and Conover 1979).

    u_ik = (pi_k(i) + U_ik) / I with pi_k an independent random permutation of 0..I-1 in each
    dimension: every one of the I equal-probability strata of each margin holds exactly one node.
    """
    strata = np.argsort(generator.random((dimensions, size)), axis=1).T  # (I, K) permutations
    uniform = (strata + generator.random((size, dimensions))) / size
    return _normal(uniform), np.full(size, 1.0 / size)
