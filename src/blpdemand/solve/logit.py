"""The plain logit estimated by linear IV: the numerical core behind ``estimate_logit``.

log(s_jt / s_0t) = delta_jt = x_jt' beta + alpha p_jt + xi_jt          (Berry 1994)

The nested logit adds rho log s_{j|g,t}, the log within-nest share, as one more endogenous
regressor (one column, or one per nest; Berry 1994, Cardell 1997; ``model.nesting``).

Absorbed fixed effects are partialled out of delta, X1 and Z_D by the within transformation
(``Problem.X1_tilde`` / ``ZD_tilde``); they never become dummy columns. The public function
``estimate_logit`` lives in ``blpdemand.results.logit`` (results sit above solve in the layers)
and wraps the record returned here into ``LogitResults``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from blpdemand._types import AnyArray, FloatArray, LinearCovarianceKind
from blpdemand.errors import SpecificationError
from blpdemand.model.nesting import Nests, RhoKind, warn_unused_nesting, with_nesting_columns
from blpdemand.model.problem import InstrumentsLike, Problem
from blpdemand.solve.covariance import cluster_ids, number_of_clusters
from blpdemand.solve.first_stage import ClusterCorrection, FirstStageReport, first_stage
from blpdemand.solve.linear_iv import (
    LinearIVResult,
    Method,
    check_options,
    estimate_covariance,
    fit_linear_iv,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class LogitFit:
    """Linear IV fit of a logit problem (sorted rows).

    Attributes
    ----------
    problem : the Problem; fit : the LinearIVResult (params = beta over X1 columns).
    delta : (N,) Berry inversion log s - log s0; xi : (N,) residuals net of fixed effects.
    clusters : (N,) or (N, 2) cluster ids in sorted order, or None.
    first_stage : FirstStageReport or None (OLS or no endogenous regressor).
    first_stage_correction : small-sample factor on the first stage's clustered V ("none",
        "stata"); kept by ``refit_covariance``.
    nests : nest membership of a nested logit (its rho are X1 coefficients), or None.
    """

    problem: Problem
    fit: LinearIVResult
    delta: FloatArray = field(repr=False)
    xi: FloatArray = field(repr=False)
    clusters: AnyArray | None = field(repr=False)
    first_stage: FirstStageReport | None
    center_moments: bool
    first_stage_correction: ClusterCorrection = "none"
    nests: Nests | None = None

    @property
    def absorbed_degrees(self) -> int:
        fe = self.problem.fixed_effects
        return 0 if fe is None else int(fe.degrees)


def logit_problem(products: pd.DataFrame, *, linear: str, instruments: InstrumentsLike = None,
                  absorb: Any = None, endogenous: Sequence[str] = ("prices",),
                  method: Method = "2sls", columns: Mapping[str, str] | None = None,
                  nesting: str | None = None, rho: RhoKind = "common") -> Problem:
    """Validate the data and build the Problem (no nonlinear part). OLS ignores instruments.

    With ``nesting`` (a column of nest ids) the log within-nest share columns ("rho", or
    "rho[g]" per nest) join X1 as endogenous regressors; without it, a 'nesting_ids' column in
    the data is warned about (UnusedNestingWarning).
    """
    given = {"linear": linear, "endogenous": list((endogenous,) if isinstance(endogenous, str)
                                                  else endogenous),
             "nesting": nesting, "rho": rho if nesting is not None else None}
    if nesting is None:
        warn_unused_nesting(products, stacklevel=4)  # the caller of estimate_logit
    else:
        products, names = with_nesting_columns(products, nesting, rho=rho, columns=columns)
        linear = linear + "".join(f" + `{n}`" for n in names)
        endogenous = ((endogenous,) if isinstance(endogenous, str) else tuple(endogenous))
        endogenous = (*endogenous, *names)
    if method == "ols":
        problem = Problem(products, linear=linear, absorb=absorb, endogenous=(), columns=columns)
        problem.inputs.update(given)  # as the user wrote them: saved results rebuild from these
        return problem
    if instruments is None or (not isinstance(instruments, (pd.DataFrame, np.ndarray))
                               and len(instruments) == 0):
        raise SpecificationError(
            f"method={method!r} needs excluded instruments for {list(endogenous)}: pass "
            "instruments=['column', ...], or use method='ols'")
    problem = Problem(products, linear=linear, absorb=absorb, instruments=instruments,
                      endogenous=endogenous, columns=columns)
    if not problem.endogenous:
        raise SpecificationError(
            f"none of the endogenous regressors {list(endogenous)} is in the linear formula "
            f"{list(problem.X1.names)}; add 'prices' to linear= or set endogenous=")
    problem.inputs.update(given)  # as the user wrote them: saved results rebuild from these
    return problem


def excluded_names(problem: Problem) -> tuple[str, ...]:
    """Names of the excluded instruments (Z_D columns that are not X1 columns)."""
    return tuple(n for n in problem.ZD.names if n not in problem.X1.names)


def fit_logit(problem: Problem, *, method: Method = "2sls",
              covariance: LinearCovarianceKind = "robust",
              clusters: Any = None, center_moments: bool = False, warn_weak: bool = True,
              first_stage_correction: ClusterCorrection = "none",
              nests: Nests | None = None) -> LogitFit:
    """Estimate beta by OLS, 2SLS or linear GMM on the within-transformed Berry inversion.

    Parameters
    ----------
    problem : a Problem without a nonlinear part.
    method, covariance, center_moments : see ``fit_linear_iv``.
    clusters : column name(s) or ids in the user's row order (one- or two-way).
    warn_weak : warn (WeakInstrumentsWarning) when a first-stage F is below 10.
    first_stage_correction : "stata" multiplies the first stage's clustered covariance by
        G/(G-1) (N-1)/(N-K) (``first_stage``); the second stage's covariance is unchanged.
    nests : nest membership of a nested logit whose problem came from ``logit_problem``.
    """
    check_options(method, covariance)
    if problem.K2 > 0:
        raise SpecificationError("the plain logit has no nonlinear part; use bd.estimate for BLP")
    ids = cluster_ids(problem, clusters)
    if covariance == "clustered" and ids is None:
        raise SpecificationError("covariance='clustered' needs clusters= (column name or ids)")
    delta = problem.products.logit_delta
    y = problem.residualize(delta)
    absorbed = 0 if problem.fixed_effects is None else int(problem.fixed_effects.degrees)
    X, Z = problem.X1_tilde, problem.ZD_tilde
    report = None
    if method != "ols" and problem.endogenous:
        report = first_stage(X, Z, x_names=problem.X1.names, z_names=problem.ZD.names,
                             endogenous=problem.endogenous, excluded=excluded_names(problem),
                             covariance=covariance, clusters=ids, absorbed_degrees=absorbed,
                             warn=warn_weak, cluster_correction=first_stage_correction)
    fit = fit_linear_iv(y, X, None if method == "ols" else Z, method=method,
                        covariance=covariance, clusters=ids, absorbed_degrees=absorbed,
                        x_names=problem.X1.names, z_names=problem.ZD.names,
                        center_moments=center_moments, check=False)
    return LogitFit(problem=problem, fit=fit, delta=delta, xi=fit.residuals, clusters=ids,
                    first_stage=report, center_moments=center_moments,
                    first_stage_correction=first_stage_correction, nests=nests)


def refit_covariance(logit: LogitFit, *, covariance: LinearCovarianceKind, clusters: Any = None,
                     warn_weak: bool = True,
                     first_stage_correction: ClusterCorrection | None = None) -> LogitFit:
    """The same estimates with another covariance (a new record; W and xi unchanged).

    ``first_stage_correction`` None keeps the record's own.
    """
    correction = (logit.first_stage_correction if first_stage_correction is None
                  else first_stage_correction)
    check_options(logit.fit.method, covariance)
    problem = logit.problem
    ids = cluster_ids(problem, clusters) if clusters is not None else logit.clusters
    if covariance == "clustered" and ids is None:
        raise SpecificationError("covariance='clustered' needs clusters= (column name or ids)")
    X = problem.X1_tilde
    Z = X if logit.fit.method == "ols" else problem.ZD_tilde
    V = estimate_covariance(X, Z, logit.xi, logit.fit.weighting, covariance=covariance,
                            clusters=ids, absorbed_degrees=logit.absorbed_degrees,
                            center=logit.center_moments)
    G = number_of_clusters(ids, problem.N) if covariance == "clustered" else None
    fit = LinearIVResult(params=logit.fit.params, covariance=V, residuals=logit.xi,
                         weighting=logit.fit.weighting, method=logit.fit.method,
                         covariance_type=covariance, nobs=logit.fit.nobs,
                         df_resid=logit.fit.df_resid, clusters=G,
                         j_statistic=logit.fit.j_statistic)
    report = logit.first_stage
    if report is not None:
        report = first_stage(X, problem.ZD_tilde, x_names=problem.X1.names,
                             z_names=problem.ZD.names, endogenous=problem.endogenous,
                             excluded=excluded_names(problem), covariance=covariance,
                             clusters=ids, absorbed_degrees=logit.absorbed_degrees,
                             warn=warn_weak, cluster_correction=correction)
    return LogitFit(problem=problem, fit=fit, delta=logit.delta, xi=logit.xi, clusters=ids,
                    first_stage=report, center_moments=logit.center_moments,
                    first_stage_correction=correction, nests=logit.nests)
