"""Tail probabilities and quantiles of the reference distributions of tests and intervals.

Normal, Student's t, F and chi-squared, from ``scipy.special`` (the functions that
``scipy.stats`` evaluates underneath): importing ``scipy.stats`` costs about 0.25 s, which every
command-line run and every first estimate in a process would pay for four formulas.

    normal:      P(Z > z) = Phi(-z),          Phi^-1(p)
    Student t:   P(T_df > t),                 its p-quantile
    F:           P(F_{d1, d2} > f)
    chi-squared: P(chi2_df > x)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import special

from blpdemand._types import FloatArray


def normal_sf(z: Any) -> FloatArray:
    """P(Z > z) = Phi(-z) for a standard normal Z (elementwise)."""
    return np.asarray(special.ndtr(-np.asarray(z, dtype=np.float64)), dtype=np.float64)


def normal_ppf(p: float) -> float:
    """Phi^-1(p), the standard normal p-quantile."""
    return float(special.ndtri(p))


def t_sf(t: Any, df: float) -> FloatArray:
    """P(T > t) for Student's T with ``df`` degrees of freedom (elementwise)."""
    return np.asarray(special.stdtr(df, -np.asarray(t, dtype=np.float64)), dtype=np.float64)


def t_ppf(p: float, df: float) -> float:
    """The p-quantile of Student's t with ``df`` degrees of freedom."""
    return float(special.stdtrit(df, p))


def f_sf(f: float, dfn: float, dfd: float) -> float:
    """P(F > f) for an F distribution with (``dfn``, ``dfd``) degrees of freedom."""
    return float(special.fdtrc(dfn, dfd, f))


def chi2_sf(x: float, df: float) -> float:
    """P(chi2 > x) for a chi-squared distribution with ``df`` degrees of freedom."""
    return float(special.chdtrc(df, x))
