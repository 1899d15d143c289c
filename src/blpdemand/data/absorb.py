"""Absorbed fixed effects by the within transformation (pyhdfe), never dummy columns.

For one-way effects the within transformation is exact demeaning by group; for multi-way
effects pyhdfe's alternating projections (Correia 2016) iterate to a tight tolerance. pyhdfe
stops on an absolute max-norm change, so columns are first put on a common scale:

    M x = s M(M_1 x / s),    s = max_i |(M_1 x)_i|,

with M the projection off all effects and M_1 exact demeaning by the first one (M M_1 = M as
the first effect's span lies in the span of all). The result is identical mathematically; a
column of size 1e6 no longer needs 1e-20 relative accuracy to meet pyhdfe's 1e-14.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from blpdemand._types import FloatArray, IntArray
from blpdemand.errors import ConvergenceError

ITERATION_LIMIT = 100_000  # alternating-projection sweeps for multi-way effects
TOLERANCE = 1e-14  # pyhdfe's max-norm change, in units of each column's scale s


@dataclass(frozen=True, slots=True)
class FixedEffects:
    """Absorbed fixed effects: ``residualize`` removes them from any (N, K) matrix.

    Attributes
    ----------
    columns : names of the grouping columns.
    degrees : degrees of freedom used by the effects (for residual variance adjustments).
    algorithm : the pyhdfe algorithm (multi-way effects) or None (one way: exact demeaning).
    ids : (N, D) integer group codes of the D effects.
    iteration_limit : the algorithm's cap on alternating-projection sweeps.
    """

    columns: tuple[str, ...]
    degrees: int
    algorithm: Any
    ids: IntArray = field(repr=False)
    iteration_limit: int = ITERATION_LIMIT

    def residualize(self, matrix: FloatArray, *, names: Sequence[str] | None = None
                    ) -> FloatArray:
        """Within-transform the columns of ``matrix``: (N,) or (N, K) -> same shape.

        x~ = s M(M_1 x / s) column by column (see the module docstring); ``names`` label the
        columns in the ConvergenceError raised when the alternating projections do not meet
        their tolerance within the iteration limit.
        """
        matrix = np.asarray(matrix, dtype=np.float64)
        one = matrix.ndim == 1
        values = matrix[:, None] if one else matrix
        if values.shape[1] == 0:
            return matrix.copy()
        first = demean(values, self.ids[:, 0])
        if self.algorithm is None:
            return first[:, 0] if one else first
        scale = np.max(np.abs(first), axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        scaled = first / scale
        try:
            out = np.asarray(self.algorithm.residualize(scaled), dtype=np.float64)
        except RuntimeError as exc:  # pyhdfe's iteration limit
            raise self._convergence_error(scaled, names) from exc
        out = out * scale
        return out[:, 0] if one else out

    def _convergence_error(self, scaled: FloatArray, names: Sequence[str] | None
                           ) -> ConvergenceError:
        """Name the columns whose residuals still have nonzero group means (worst first).

        Runs the projections once more, to the limit, keeping the unconverged result: a
        failure costs twice the iterations, the converged path nothing.
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            partial = np.asarray(self.algorithm.residualize(scaled, errors="warn"))
        gap = np.zeros(partial.shape[1])
        for d in range(self.ids.shape[1]):
            gap = np.maximum(gap, np.max(np.abs(group_means(partial, self.ids[:, d])), axis=0))
        labels = (list(names) if names is not None and len(names) == partial.shape[1]
                  else [f"column {k}" for k in range(partial.shape[1])])
        order = [int(k) for k in np.argsort(-gap) if gap[k] > 1e-8] or list(range(len(labels)))
        culprits = ", ".join(f"'{labels[k]}' (group mean {gap[k]:.2g} of its scale)"
                             for k in order[:5])
        more = f" and {len(order) - 5} more" if len(order) > 5 else ""
        return ConvergenceError(
            f"absorbing fixed effects {list(self.columns)} did not converge within "
            f"{self.iteration_limit:,} alternating-projection iterations for "
            f"{culprits}{more}; check the column for extreme values, or absorb fewer effects "
            "and add the others as dummy columns (C(...) in the formula)")


def demean(values: FloatArray, codes: IntArray) -> FloatArray:
    """(N, K) values minus their group means (exact one-way within transformation)."""
    out: FloatArray = values - group_means(values, codes)[codes]
    return out


def group_means(values: FloatArray, codes: IntArray) -> FloatArray:
    """(G, K) means of the rows of (N, K) ``values`` in each group 0..G-1."""
    counts = np.bincount(codes).astype(np.float64)
    sums = np.column_stack([np.bincount(codes, weights=values[:, k], minlength=counts.size)
                            for k in range(values.shape[1])])
    out: FloatArray = sums / counts[:, None]
    return out


def absorb_fixed_effects(frame: pd.DataFrame, columns: tuple[str, ...], *,
                         iteration_limit: int | None = None) -> FixedEffects | None:
    """Create the within transformation for the given grouping columns (None if no columns).

    ``iteration_limit`` caps pyhdfe's alternating projections for multi-way effects (default
    ``ITERATION_LIMIT``); beyond it ``residualize`` raises ConvergenceError naming the column.
    """
    if not columns:
        return None
    from blpdemand.errors import DataError

    for c in columns:
        missing = frame[c].isna().to_numpy()
        if missing.any():
            raise DataError(f"absorbed fixed-effect column '{c}' has {int(missing.sum())} missing "
                            f"value(s) (first at row {int(np.flatnonzero(missing)[0])}); fill or "
                            "drop those rows: a missing group cannot be absorbed")
    ids = np.column_stack([pd.factorize(frame[c], sort=True)[0]
                           for c in columns]).astype(np.int64)
    algorithm = None
    limit = ITERATION_LIMIT if iteration_limit is None else int(iteration_limit)
    if len(columns) > 1:
        import pyhdfe

        algorithm = pyhdfe.create(ids, drop_singletons=False, compute_degrees=False,
                                  residualize_method="map",
                                  options={"tol": TOLERANCE, "iteration_limit": limit})
    return FixedEffects(columns=tuple(columns), degrees=fixed_effect_degrees(ids),
                        algorithm=algorithm, ids=ids, iteration_limit=limit)


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
