"""Absorbed fixed effects by the within transformation (pyhdfe), never dummy columns.

For one-way effects the within transformation is exact demeaning by group; for multi-way
effects pyhdfe's alternating projections (Correia 2016) iterate to a tight tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from blpdemand._types import FloatArray


@dataclass(frozen=True, slots=True)
class FixedEffects:
    """Absorbed fixed effects: ``residualize`` removes them from any (N, K) matrix.

    Attributes
    ----------
    columns : names of the grouping columns.
    degrees : degrees of freedom used by the effects (for residual variance adjustments).
    """

    columns: tuple[str, ...]
    degrees: int
    algorithm: Any

    def residualize(self, matrix: FloatArray) -> FloatArray:
        """Within-transform the columns of ``matrix``: (N,) or (N, K) -> same shape."""
        matrix = np.asarray(matrix, dtype=np.float64)
        one = matrix.ndim == 1
        values = matrix[:, None] if one else matrix
        if values.shape[1] == 0:
            return matrix.copy()
        out = np.asarray(self.algorithm.residualize(values), dtype=np.float64)
        return out[:, 0] if one else out


def absorb_fixed_effects(frame: pd.DataFrame, columns: tuple[str, ...]) -> FixedEffects | None:
    """Create the within transformation for the given grouping columns (None if no columns)."""
    if not columns:
        return None
    import pyhdfe

    from blpdemand.errors import DataError

    for c in columns:
        missing = frame[c].isna().to_numpy()
        if missing.any():
            raise DataError(f"absorbed fixed-effect column '{c}' has {int(missing.sum())} missing "
                            f"value(s) (first at row {int(np.flatnonzero(missing)[0])}); fill or "
                            "drop those rows: a missing group cannot be absorbed")
    ids = np.column_stack([pd.factorize(frame[c], sort=True)[0] for c in columns])
    options: dict[str, Any] = {}
    if len(columns) > 1:
        options = {"residualize_method": "map",
                   "options": {"tol": 1e-14, "iteration_limit": 100_000}}
    algorithm = pyhdfe.create(ids, drop_singletons=False, compute_degrees=False, **options)
    return FixedEffects(columns=tuple(columns), degrees=fixed_effect_degrees(ids),
                        algorithm=algorithm)


def fixed_effect_degrees(ids: np.ndarray) -> int:
    """Degrees of freedom used by absorbed effects, singleton groups included (they are kept).

    One way: the number of groups. Several ways: sum of group counts minus, for each later
    dimension, the largest number of connected components it forms with an earlier one
    (exact for two ways, the rank of the dummy matrix; a bound beyond). pyhdfe's own count
    leaves out singleton observations, which is right only when they are dropped.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    counts = [int(ids[:, k].max()) + 1 for k in range(ids.shape[1])]
    degrees = sum(counts)
    for k in range(1, ids.shape[1]):
        best = 0
        for i in range(k):
            bipartite = coo_matrix((np.ones(ids.shape[0]), (ids[:, i], counts[i] + ids[:, k])),
                                   shape=(counts[i] + counts[k],) * 2)
            best = max(best, int(connected_components(bipartite, directed=False)[0]))
        degrees -= best
    return degrees
