"""Wald tests of linear restrictions on the estimates (Newey and West 1987).

H0: R b = r for the stacked estimates b (theta, beta, gamma of a BLP estimate; the X1
coefficients of a logit) with covariance V (the results' own: robust, clustered, ...):

    W = (R b - r)' (R V R')^{-1} (R b - r),   chi-squared with q = rows of R under H0.

A null value on a bound of the parameter space (sigma = 0 with sigma >= 0, rho at 0) puts the
truth on the boundary, where W is no longer chi-squared(q): for one such restriction its null
distribution is the mixture 0.5 chi2(0) + 0.5 chi2(1), so the correct p-value is half the
chi-squared one (Andrews 2001); for several, the chi-squared(q) p-value is conservative. The
test says so in its notes and warns.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from blpdemand._types import FloatArray
from blpdemand.errors import DataError, InferenceWarning, SpecificationError

__all__ = ["WaldTest", "wald_test"]


@dataclass(frozen=True, slots=True)
class WaldTest:
    """The statistic W, its degrees of freedom q, the chi-squared(q) p-value, the restrictions
    in words, and notes (a null value on a bound of the parameter space)."""

    statistic: float
    df: int
    p_value: float
    restrictions: tuple[str, ...]
    notes: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = (f"Wald test of {'; '.join(self.restrictions)}: W = {self.statistic:.6g} "
                f"(df = {self.df}, p = {self.p_value:.4g})")
        return "\n".join([text, *self.notes])


def _stacked(results: Any) -> tuple[list[str], FloatArray, FloatArray]:
    """(names, estimates b, covariance V) of BLP or logit results."""
    names = [str(n) for n in results.names]
    b = np.asarray(results.estimates if hasattr(results, "estimates") else results.params,
                   dtype=np.float64)
    V = np.asarray(results.covariance, dtype=np.float64)
    if b.shape != (len(names),) or V.shape != (len(names), len(names)):
        raise SpecificationError("these results hold no covariance of their estimates "
                                 f"({len(names)} names, estimates {b.shape}, covariance "
                                 f"{V.shape}); a Wald test needs one")
    return names, b, V


def _linear(names: list[str], restrictions: Any, R: Any, r: Any
            ) -> tuple[FloatArray, FloatArray, tuple[str, ...]]:
    """R (q, K), r (q,) and the restrictions in words, from parameter names or a matrix."""
    if (restrictions is None) == (R is None):
        raise SpecificationError("give the restrictions either as parameter names "
                                 "(['sigma[x1, x1]', ...], H0: each = 0, or {name: value}) or as "
                                 "R= (and r=), not both")
    if R is not None:
        matrix = np.atleast_2d(np.asarray(R, dtype=np.float64))
        if matrix.shape[1] != len(names):
            raise SpecificationError(f"R has {matrix.shape[1]} columns; the estimates are "
                                     f"{len(names)}: {names}")
        values = np.zeros(matrix.shape[0]) if r is None else np.ravel(np.asarray(r, np.float64))
        if values.shape != (matrix.shape[0],):
            raise SpecificationError(f"r has {values.size} values for {matrix.shape[0]} rows of R")
        words = tuple(" + ".join(f"{c:g} {n}" for c, n in zip(row, names) if c != 0)
                      + f" = {v:g}" for row, v in zip(matrix, values))
        return matrix, values, words
    if isinstance(restrictions, str):
        restrictions = [restrictions]
    pairs = (list(restrictions.items()) if isinstance(restrictions, Mapping)
             else [(name, 0.0) for name in restrictions])
    if not pairs:
        raise SpecificationError("no restrictions given")
    unknown = [name for name, _ in pairs if name not in names]
    if unknown:
        raise SpecificationError(f"unknown parameter(s) {unknown}; the estimates are {names}")
    matrix = np.zeros((len(pairs), len(names)))
    for row, (name, _) in enumerate(pairs):
        matrix[row, names.index(name)] = 1.0
    values = np.array([float(v) for _, v in pairs])
    return matrix, values, tuple(f"{name} = {float(v):g}" for name, v in pairs)


def _boundary(results: Any, names: list[str], R: FloatArray, r: FloatArray) -> list[str]:
    """Restrictions that set one parameter of theta to a finite bound."""
    bounds: Sequence[tuple[float, float]] = getattr(results, "bounds", ()) or ()
    hits = []
    for row, value in zip(R, r):
        columns = np.flatnonzero(row)
        if columns.size != 1 or int(columns[0]) >= len(bounds):
            continue
        k = int(columns[0])
        target = value / row[k]
        if any(math.isfinite(b) and target == b for b in bounds[k]):
            hits.append(f"{names[k]} = {target:g}")
    return hits


def wald_test(results: Any, restrictions: Sequence[str] | Mapping[str, float] | str | None = None,
              *, R: Any = None, r: Any = None) -> WaldTest:
    """Wald test of H0: R b = r on the estimates b of BLP or logit results.

    ``restrictions``: parameter names (H0: each is 0) or {name: value}; or a matrix ``R``
    (q, K) over ``results.names`` and ``r`` (q,) (default 0). Uses the results' covariance
    (``with_covariance`` for another kind). SpecificationError names an unknown parameter;
    DataError names restricted parameters whose covariance is not identified (NaN) or a
    singular R V R'.

    Examples
    --------
    >>> results.wald_test(["pi[prices, income]", "pi[prices, income_squared]"])  # doctest: +SKIP
    """
    names, b, V = _stacked(results)
    matrix, values, words = _linear(names, restrictions, R, r)
    used = np.flatnonzero(np.any(matrix != 0, axis=0))
    missing = [names[k] for k in used.tolist()
               if not np.all(np.isfinite(V[k, used])) or not np.isfinite(b[k])]
    if missing:
        raise DataError(f"the covariance of {missing} is not identified (NaN), so no Wald test "
                        "of restrictions on them; see the results' notes on identification")
    # only the restricted parameters' block of V (another parameter's NaN must not leak in)
    part = matrix[:, used]
    gap = part @ b[used] - values
    middle = part @ V[np.ix_(used, used)] @ part.T
    try:
        solved = np.linalg.solve(middle, gap)
    except np.linalg.LinAlgError:
        solved = np.full(gap.shape, np.nan)
    statistic = float(gap @ solved)
    if not math.isfinite(statistic) or np.linalg.matrix_rank(middle) < matrix.shape[0]:
        raise DataError(f"R V R' is singular for {list(words)}: the restrictions are linearly "
                        "dependent or their covariance is degenerate")
    q = int(matrix.shape[0])
    p_value = float(stats.chi2.sf(statistic, q))
    notes: list[str] = []
    boundary = _boundary(results, names, matrix, values)
    if boundary:
        if q == 1:
            notes.append(f"H0 puts {boundary[0]} on the boundary of the parameter space: W is "
                         f"0.5 chi2(0) + 0.5 chi2(1) there, so p = {p_value / 2:.4g} (Andrews "
                         "2001); the chi-squared p-value above is twice that")
        else:
            notes.append(f"H0 puts {boundary} on the boundary of the parameter space: W is a "
                         "mixture of chi-squares there and the chi-squared p-value above is "
                         "conservative (Andrews 2001)")
        warnings.warn(notes[-1], InferenceWarning, stacklevel=2)
    return WaldTest(statistic=statistic, df=q, p_value=p_value, restrictions=words,
                    notes=tuple(notes))
