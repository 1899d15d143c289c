"""Plain logit results and ``estimate_logit``, the public entry point of the logit model.

log(s_jt / s_0t) = delta_jt = x_jt' beta + alpha p_jt + xi_jt (Berry 1994), estimated by OLS,
2SLS or linear GMM with absorbed fixed effects. Own-price elasticities are
e_jt = alpha p_jt (1 - s_jt). The nested logit adds rho log s_{j|g,t} (the log within-nest
share, endogenous; Berry 1994, Cardell 1997), with own-price elasticities
e_jt = alpha p_jt [1 / (1 - rho) - rho / (1 - rho) s_{j|g,t} - s_jt]. The estimator sits here,
above ``solve``, because it returns a results object (layers point down).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from blpdemand._types import LinearCovarianceKind
from blpdemand.errors import EconomicWarning, SpecificationError
from blpdemand.model.fitted import FittedDemand, logit_layout
from blpdemand.model.nesting import Nests, RhoKind, read_nests, within_shares
from blpdemand.model.problem import InstrumentsLike, Problem
from blpdemand.results.tables import Table, coefficient_table
from blpdemand.solve.first_stage import ClusterCorrection, FirstStageReport
from blpdemand.solve.linear_iv import Method
from blpdemand.solve.logit import LogitFit, fit_logit, logit_problem, refit_covariance

if TYPE_CHECKING:
    from blpdemand.results.costs import Kappa
    from blpdemand.results.counterfactual import Counterfactual
    from blpdemand.results.elasticities import MarketMatrices

METHOD_LABELS = {"ols": "OLS", "2sls": "2SLS", "gmm": "one-step GMM", "2s-gmm": "two-step GMM"}


@dataclass(frozen=True, eq=False)
class LogitResults:
    """Frozen estimates of a plain logit. Other standard errors: ``with_covariance`` (new object).

    Attributes
    ----------
    params, bse, tvalues : pandas Series over the X1 column names.
    covariance : (K1, K1) DataFrame; nobs : N; df_resid : N - K1 - D_FE.
    method, covariance_type : the options used; first_stage : FirstStageReport or None.
    problem : the Problem (rows sorted by market inside); xi, delta : (N,) in the user's row
        order, like every per-product output.
    nests, rho : a nested logit's nest membership and nesting parameters (None otherwise); the
        rho are also among ``params`` (the coefficients of the log within-nest shares).
    """

    _fit: LogitFit = field(repr=False)

    # ------------------------------------------------------------------ estimates
    @property
    def problem(self) -> Problem:
        return self._fit.problem

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.problem.X1.names)

    @property
    def params(self) -> pd.Series:
        return pd.Series(self._fit.fit.params, index=list(self.names), name="params")

    @property
    def bse(self) -> pd.Series:
        return pd.Series(self._fit.fit.bse, index=list(self.names), name="bse")

    @property
    def tvalues(self) -> pd.Series:
        return pd.Series(self._fit.fit.params / self._fit.fit.bse, index=list(self.names),
                         name="tvalues")

    @property
    def covariance(self) -> pd.DataFrame:
        names = list(self.names)
        return pd.DataFrame(self._fit.fit.covariance, index=names, columns=names)

    @property
    def nobs(self) -> int:
        return self._fit.fit.nobs

    @property
    def df_resid(self) -> int:
        return self._fit.fit.df_resid

    @property
    def df(self) -> int:
        """Residual degrees of freedom N - K1 - D_FE (alias of ``df_resid``)."""
        return self.df_resid

    @property
    def absorbed_degrees(self) -> int:
        return self._fit.absorbed_degrees

    @property
    def method(self) -> str:
        return self._fit.fit.method

    @property
    def covariance_type(self) -> str:
        return self._fit.fit.covariance_type

    @property
    def clusters(self) -> int | None:
        """Number of clusters G (the smaller dimension for two-way) or None."""
        return self._fit.fit.clusters

    @property
    def j_statistic(self) -> float | None:
        """Hansen's J for two-step GMM."""
        return self._fit.fit.j_statistic

    @property
    def first_stage(self) -> FirstStageReport | None:
        return self._fit.first_stage

    @property
    def xi(self) -> np.ndarray:
        """(N,) structural errors net of absorbed fixed effects, in the user's row order."""
        return self.problem.products.unsort(self._fit.xi)

    @property
    def delta(self) -> np.ndarray:
        """(N,) Berry inversion log s - log s0, in the user's row order."""
        return self.problem.products.unsort(self._fit.delta)

    @property
    def fixed_effects(self) -> np.ndarray:
        """(N,) the absorbed fixed effects' contribution to delta, delta - X1 beta - xi, in the
        user's row order (zeros without absorbed effects): e.g. an entrant's ``fixed_effect``
        taken from its brand's products (``simulate_entry``)."""
        X1_beta = self.problem.products.unsort(self.problem.X1.values @ self._fit.fit.params)
        return np.asarray(self.delta - X1_beta - self.xi, dtype=np.float64)

    @property
    def alpha(self) -> float:
        """The price coefficient (X1 column 'prices')."""
        if "prices" not in self.names:
            raise KeyError(f"no 'prices' in the linear formula; columns: {list(self.names)}")
        return float(self.params["prices"])

    @property
    def nests(self) -> Nests | None:
        """Nest membership of a nested logit (sorted rows), None for the plain logit."""
        return self._fit.nests

    @property
    def rho(self) -> pd.Series:
        """The nesting parameters: "rho", or "rho[g]" per nest (nested logit only)."""
        if self.nests is None:
            raise SpecificationError("a plain logit has no rho; pass nesting='nesting_ids' to "
                                     "bd.estimate_logit for the nested logit")
        return self.params[list(self.nests.names)].rename("rho")

    @property
    def fitted(self) -> FittedDemand:
        """The estimates as a FittedDemand (theta empty) for post-estimation."""
        return FittedDemand(problem=self.problem, layout=logit_layout(self.problem),
                            theta=np.zeros(0), beta=self._fit.fit.params.copy(),
                            delta=self._fit.delta.copy(), nests=self.nests)

    # ------------------------------------------------------------------ post-estimation
    def own_price_elasticities(self) -> np.ndarray:
        """(N,) e_jt = alpha p_jt (1 - s_jt) (nested: alpha p_jt [1/(1 - rho) - rho/(1 - rho)
        s_{j|g,t} - s_jt]), in the user's row order."""
        data = self.problem.products
        inner = 1.0 - data.shares
        if self.nests is not None:
            rho = self.fitted.rho
            inner = (1.0 - rho * within_shares(data.shares, self.nests.cells)) / (1.0 - rho) \
                - data.shares
        values = self.alpha * data.array("prices").astype(np.float64) * inner
        out: np.ndarray = data.unsort(values)
        return out

    def elasticities(self, name: str = "prices") -> MarketMatrices:
        """Own and cross elasticities per market: ``blpdemand.compute_elasticities(self, name)``."""
        from blpdemand.results.elasticities import compute_elasticities

        return compute_elasticities(self, name)

    def diversion_ratios(self, name: str = "prices") -> MarketMatrices:
        """Diversion ratios per market: ``blpdemand.compute_diversion_ratios(self, name)``."""
        from blpdemand.results.diversion import compute_diversion_ratios

        return compute_diversion_ratios(self, name)

    def markups(self, *, firm_ids: Any = None, ownership: Any = None,
                kappa: Kappa | None = None) -> np.ndarray:
        """(N,) Bertrand-Nash markups p - c: ``blpdemand.compute_markups(self, ...)``."""
        from blpdemand.results.costs import compute_markups

        return compute_markups(self, firm_ids=firm_ids, ownership=ownership, kappa=kappa)

    def costs(self, *, firm_ids: Any = None, ownership: Any = None,
              kappa: Kappa | None = None) -> np.ndarray:
        """(N,) marginal costs c = p - eta: ``blpdemand.compute_costs(self, ...)``."""
        from blpdemand.results.costs import compute_costs

        return compute_costs(self, firm_ids=firm_ids, ownership=ownership, kappa=kappa)

    def merger(self, merging: Sequence[object], **kwargs: Any) -> Counterfactual:
        """Bertrand-Nash prices after ``merging`` firms merge: ``blpdemand.simulate_merger``."""
        from blpdemand.results.counterfactual import simulate_merger

        return simulate_merger(self, merging, **kwargs)

    def consumer_surplus(self, *, prices: Any = None, keep: Any = None) -> np.ndarray:
        """(T,) consumer surplus per market: ``blpdemand.compute_consumer_surplus(self, ...)``."""
        from blpdemand.results.surplus import compute_consumer_surplus

        return compute_consumer_surplus(self, prices=prices, keep=keep)

    def with_covariance(self, kind: LinearCovarianceKind, *,
                        clusters: Any = None) -> LogitResults:
        """A NEW results object with ``kind`` standard errors ("unadjusted", "robust", "hc0",
        "hc1" or "clustered"); ``clusters`` is a column name, two names, or ids in user order."""
        return LogitResults(refit_covariance(self._fit, covariance=kind, clusters=clusters))

    # ------------------------------------------------------------------ tables
    def summary(self, *, title: str | None = None) -> Table:
        """Coefficient table (normal p-values and 95% intervals) with the sample and options."""
        fe = self.problem.fixed_effects
        notes = [(f"N = {self.nobs:,}, markets = {self.problem.T:,}, "
                 f"residual df = {self.df_resid:,}"),
                 f"method: {METHOD_LABELS[self.method]}; covariance: {self.covariance_type}"
                 + (f" ({self.clusters} clusters)" if self.clusters else "")]
        if fe is not None:
            notes.append(f"absorbed fixed effects: {', '.join(fe.columns)} "
                         f"({fe.degrees:,} degrees of freedom)")
        if self.nests is not None:
            notes.append(f"nests: column '{self.nests.column}' ({self.nests.labels.size} nests); "
                         "rho: coefficient of the log within-nest share")
        if self.first_stage is not None:
            for stage in self.first_stage.stages:
                notes.append(f"first-stage F ({stage.endogenous}, {stage.q} excluded): "
                             f"{stage.f_statistic:.2f}")
        if self.j_statistic is not None:
            notes.append(f"Hansen J = {self.j_statistic:.4f}")
        if "prices" in self.names:
            notes.append(f"mean own-price elasticity: {self.own_price_elasticities().mean():.4f}")
        return coefficient_table(self.names, self._fit.fit.params, self._fit.fit.bse,
                                 title=title or (f"{'Nested l' if self.nests else 'L'}ogit "
                                                 f"demand ({METHOD_LABELS[self.method]})"),
                                 notes=notes)

    def first_stage_table(self) -> Table:
        """First-stage partial F statistics per endogenous regressor."""
        if self.first_stage is None:
            raise ValueError("no first stage: the model was estimated by OLS")
        kind = ("homoskedastic" if self.covariance_type == "unadjusted"
                else "effective (Montiel Olea and Pflueger 2013)")
        factor = max(s.cluster_factor for s in self.first_stage.stages)
        small = ((f"clustered V times G/(G-1) (N-1)/(N-K) = {factor:.4f} (Stata)",)
                 if factor != 1.0 else ())
        return Table(title="First stage", body=self.first_stage.to_frame(),
                     notes=(f"headline F: {kind}; weak if below 10", *small))

    def to_frame(self) -> pd.DataFrame:
        """One row per X1 column: estimate, std. error, t, p-value and the 95% interval (the
        numbers of ``summary()``, unformatted)."""
        return coefficient_table(self.names, self._fit.fit.params, self._fit.fit.bse).to_frame()

    def __str__(self) -> str:
        return self.summary().to_text()

    def __repr__(self) -> str:
        return self.summary().preview(heading=type(self).__name__)

    def __rich__(self) -> Any:
        return self.summary().__rich__()


def estimate_logit(products: pd.DataFrame, *, linear: str, instruments: InstrumentsLike = None,
                   absorb: Any = None, endogenous: Sequence[str] = ("prices",),
                   method: Method = "2sls", covariance: LinearCovarianceKind = "robust",
                   clusters: Any = None, columns: Mapping[str, str] | None = None,
                   center_moments: bool = False,
                   first_stage_correction: ClusterCorrection = "none",
                   nesting: str | None = None, rho: RhoKind = "common") -> LogitResults:
    """Estimate the logit log(s_jt/s_0t) = x_jt' beta + xi_jt by OLS, 2SLS or GMM; with
    ``nesting``, the nested logit log(s_jt/s_0t) = x_jt' beta + rho log s_{j|g,t} + xi_jt.

    Parameters
    ----------
    products : DataFrame, one row per (market, product), with market_ids and shares.
    linear : formula of X1, e.g. ``"prices + log(hp)"``.
    instruments : excluded instruments (column names, a DataFrame or an array); not for OLS.
    absorb : fixed effects to absorb, ``"C(year) + C(make)"`` (within transformation).
    endogenous : endogenous X1 columns (default prices).
    method : "ols", "2sls", "gmm" (one step) or "2s-gmm" (two step, robust optimal W).
    covariance : "unadjusted", "robust" (HC0), "hc1" or "clustered" (one- or two-way).
    clusters : column name, two column names, or ids in the user's row order.
    columns : map from reserved names to the user's columns, e.g. ``{"market_ids": "year"}``.
    center_moments : center the moments in S (for robust/clustered covariance and 2-step W).
    first_stage_correction : ``"stata"`` multiplies the first stage's clustered covariance by
        G/(G-1) (N-1)/(N-K), K = first-stage regressors + absorbed degrees (Stata's factor; the
        paper's make-clustered F on the cars data is computed this way); the second stage's
        standard errors are unchanged. Default ``"none"``.
    nesting : column of nest ids (e.g. ``"nesting_ids"``, PyBLP's name): the nested logit
        (Berry 1994; Cardell 1997). The log within-nest share log s_{j|g,t} joins X1 as an
        endogenous regressor named "rho" (so instruments must move it too, e.g.
        ``bd.build_nesting_instruments``). Without ``nesting`` a 'nesting_ids' column in the
        data is warned about (UnusedNestingWarning) and the model is a plain logit.
    rho : ``"common"`` (one rho, default) or ``"per_nest"`` (one "rho[g]" per nest g).

    Returns
    -------
    LogitResults.

    Examples
    --------
    >>> from blpdemand.model.simulation import simulate
    >>> sim = simulate(markets=20, products=5)
    >>> res = estimate_logit(sim.products, linear=sim.linear, instruments=list(sim.instruments))
    >>> round(float(res.params["prices"]), 1)
    -1.0
    """
    problem = logit_problem(products, linear=linear, instruments=instruments, absorb=absorb,
                            endogenous=endogenous, method=method, columns=columns,
                            nesting=nesting, rho=rho)
    nests = None if nesting is None else read_nests(problem.products, nesting, rho=rho)
    fit = fit_logit(problem, method=method, covariance=covariance, clusters=clusters,
                    center_moments=center_moments, first_stage_correction=first_stage_correction,
                    nests=nests)
    results = LogitResults(fit)
    if nests is not None:
        _check_rho(results.rho)
    return results


def _check_rho(rho: pd.Series) -> None:
    """EconomicWarning for nesting parameters outside [0, 1), where the nested logit is not a
    random utility model (McFadden 1978; Cardell 1997)."""
    bad = rho[~((rho >= 0) & (rho < 1))]
    if len(bad):
        shown = ", ".join(f"{name} = {value:.4g}" for name, value in bad.items())
        warnings.warn(EconomicWarning(
            f"nesting parameter(s) {shown} outside [0, 1): the nested logit is consistent with "
            "utility maximization only for 0 <= rho < 1, so elasticities and markups at this "
            "estimate are not meaningful; check the instruments for the within-nest share and "
            "the nests"), stacklevel=3)
