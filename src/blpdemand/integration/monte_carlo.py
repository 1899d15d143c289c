"""Pseudo-random Monte Carlo draws nu_i ~ N(0, I_K) with equal weights 1/I."""

from __future__ import annotations

import numpy as np

from blpdemand._types import FloatArray


def monte_carlo(dimensions: int, size: int,
                generator: np.random.Generator) -> tuple[FloatArray, FloatArray]:
    """I pseudo-random standard-normal draws with weights 1/I.

    E[f(nu)] ~ (1/I) sum_i f(nu_i), error O(I^{-1/2}) (Train 2009, ch. 9).

    Returns
    -------
    nodes : (I, K) draws, filled row by row, so the first I rows of a 2I draw from the same
        seed equal the I draw (nested refinements).
    weights : (I,) equal to 1/I.
    """
    nodes = generator.standard_normal((size, dimensions))
    return nodes, np.full(size, 1.0 / size)
