"""Counterfactual Bertrand-Nash equilibria: mergers, cost changes, taxes, products removed.

Marginal costs c are recovered from the observed prices and ownership (see costs.py), then the
new prices solve the first-order conditions s + (O' * ds/dp') (p - c') = 0 in every market by
the zeta-markup fixed point (Morrow and Skerlos 2011) with Newton as a fallback. Taxes act
through costs: a consumer pays p, the firm keeps p / (1 + t) - tau, so its effective cost in
consumer prices is c' = (1 + t)(c + tau) and its profit (p - c') s / (1 + t).
Reported: prices, shares, markups, profits, HHI, consumer surplus before and after, a status
per market; markets that fail get NaN, never a silently wrong number.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from blpdemand._types import AnyArray, FloatArray, IntArray, Status
from blpdemand.errors import (
    ConvergenceError,
    ConvergenceWarning,
    DataError,
    EconomicWarning,
    SpecificationError,
)
from blpdemand.model.demand import demand_blocks, price_values
from blpdemand.model.fitted import FittedDemand
from blpdemand.model.pricing import PricingConfig
from blpdemand.results.costs import Kappa, firm_ids_sorted, markups_sorted, per_product
from blpdemand.results.elasticities import as_fitted
from blpdemand.results.equilibrium import blocked_equilibrium, market_equilibrium
from blpdemand.results.tables import Table


@dataclass(frozen=True, slots=True)
class Counterfactual:
    """A counterfactual equilibrium. (N,) arrays in the user's row order, (T,) in market order.

    Attributes
    ----------
    market_ids : (T,). row_markets : (N,) market id of each product. status : T Status.
    iterations : (T,) iterations used.
    prices_before, prices : (N,) observed and counterfactual prices (NaN: removed or failed).
    shares_before, shares : (N,) shares at those prices. costs : (N,) marginal costs c'.
    markups : (N,) p - c' after. profits_before, profits : (N,) producer profits per consumer.
    hhi_before, hhi : (T,) Herfindahl index of inside shares, 0 to 10,000.
    consumer_surplus_before, consumer_surplus : (T,) per consumer (see surplus.py).
    firm_ids_before, firm_ids : (N,) owners before and after (None for custom ownership).
    merging : the merging firms' ids (set by simulate_merger).
    entrants : (N,) bool, True for products added by ``simulate_entry`` (rows appended after the
        original ones; their ``*_before`` prices are NaN and shares/profits before are 0).
    """

    market_ids: AnyArray
    row_markets: AnyArray
    status: tuple[Status, ...]
    iterations: IntArray
    prices_before: FloatArray
    prices: FloatArray
    shares_before: FloatArray
    shares: FloatArray
    costs: FloatArray
    markups: FloatArray
    profits_before: FloatArray
    profits: FloatArray
    hhi_before: FloatArray
    hhi: FloatArray
    consumer_surplus_before: FloatArray
    consumer_surplus: FloatArray
    config: PricingConfig
    firm_ids_before: AnyArray | None = None
    firm_ids: AnyArray | None = None
    merging: tuple[object, ...] = ()
    entrants: AnyArray | None = None

    @property
    def converged(self) -> bool:
        return all(s.converged for s in self.status)

    @property
    def failed_markets(self) -> AnyArray:
        """Ids of the markets whose equilibrium was not found (their numbers are NaN)."""
        return self.market_ids[[not s.converged for s in self.status]]

    @property
    def price_changes(self) -> FloatArray:
        """(N,) relative price changes (p' - p) / p."""
        return (self.prices - self.prices_before) / self.prices_before

    @property
    def consumer_surplus_change(self) -> FloatArray:
        """(T,) CS' - CS per consumer."""
        return self.consumer_surplus - self.consumer_surplus_before

    def overview(self) -> Table:
        """A compact table: mean prices and shares before and after for the merging firms'
        products, the other products and all products; mean changes in CS and HHI in the notes."""
        groups: dict[str, np.ndarray] = {}
        if self.merging and self.firm_ids_before is not None:
            inside = np.isin(self.firm_ids_before, np.asarray(self.merging))
            groups[f"merging firms {list(self.merging)}"] = inside
            groups["other firms"] = ~inside
        if self.entrants is not None:
            groups["incumbents"], groups["entrants"] = ~self.entrants, self.entrants
        groups["all products"] = np.ones(self.prices.shape[0], dtype=bool)
        rows = {}
        for label, mask in groups.items():
            ok = mask & np.isfinite(self.prices)
            rows[label] = (_mean(self.prices_before[ok]), _mean(self.prices[ok]),
                           100 * _mean(self.price_changes[ok]), _mean(self.shares_before[ok]),
                           _mean(self.shares[ok]), int(ok.sum()))
        body = pd.DataFrame.from_dict(rows, orient="index", columns=[
            "mean price before", "mean price after", "mean price change (%)",
            "mean share before", "mean share after", "products"])
        finite = np.isfinite(self.consumer_surplus_change)
        notes = [(f"mean change in consumer surplus per consumer: "
                  f"{self.consumer_surplus_change[finite].mean():.4g} "
                  f"(before {self.consumer_surplus_before[finite].mean():.4g}); "
                  "log-sum / -alpha (Small and Rosen 1981)")]
        if np.any(np.isfinite(self.hhi)):
            notes.append(f"mean HHI: before {np.nanmean(self.hhi_before):.0f}, after "
                         f"{np.nanmean(self.hhi):.0f}")
        notes.append("all markets converged" if self.converged else
                     f"failed markets (NaN): {list(self.failed_markets)[:10]}")
        title = ("Merger simulation" if self.merging else "Entry" if self.entrants is not None
                 else "Counterfactual equilibrium")
        return Table(title=f"{title}: Bertrand-Nash prices", body=body, notes=tuple(notes))

    def summary(self) -> Table:
        """By market: mean price change, HHI before/after, change in CS, status."""
        changes = (pd.Series(self.price_changes).groupby(self.row_markets).mean()
                   .reindex(self.market_ids))
        body = pd.DataFrame({
            "mean price change (%)": 100 * changes.to_numpy(),
            "HHI before": self.hhi_before, "HHI after": self.hhi,
            "change in CS": self.consumer_surplus_change,
            "status": [s.value for s in self.status]},
            index=pd.Index(self.market_ids, name="market"))
        notes = (f"{len(self.failed_markets)} of {len(self.market_ids)} markets failed: "
                 f"{list(self.failed_markets)[:10]}" if not self.converged else
                 "all markets converged",)
        return Table(title="Counterfactual equilibrium", body=body, notes=notes)

    def __repr__(self) -> str:
        return self.overview().preview(heading=f"Counterfactual: {len(self.market_ids)} markets, "
                                               f"{self.prices.shape[0]} products; .summary() "
                                               "by market")


def _mean(values: FloatArray) -> float:
    """Mean of the finite values (NaN when there are none; entrants have no price before)."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def compute_prices(results: Any, *, firm_ids: Any = None, ownership: Any = None,
                   kappa: Kappa | None = None, costs: Any = None, unit_tax: Any = 0.0,
                   ad_valorem_tax: Any = 0.0, keep: Any = None,
                   config: PricingConfig | None = None, executor: Any = None) -> Counterfactual:
    """Counterfactual Bertrand-Nash equilibrium of every market.

    Parameters
    ----------
    firm_ids : (N,) new owners (a merger), or ownership : (N, max J_t) stacked custom ownership,
        and/or kappa : {(f, g): weight} partial ownership. Default: the data's firm_ids.
    costs : (N,) marginal costs (default: implied by observed prices and the data's ownership).
    unit_tax, ad_valorem_tax : scalars or (N,) taxes paid by consumers per unit / proportionally.
    keep : (N,) bool, products that stay on the market (default all).
    config : PricingConfig (method, tolerance, fallback, failure policy).
    executor : a concurrent.futures.Executor or dask.distributed.Client: each block of
        equal-size markets is a job there (random coefficients and logit; the same prices).

    Examples
    --------
    >>> merged = products.firm_ids.replace({2: 1})                    # doctest: +SKIP
    >>> cf = compute_prices(results, firm_ids=merged)                  # doctest: +SKIP
    >>> cf.price_changes, cf.consumer_surplus_change, cf.failed_markets  # doctest: +SKIP
    """
    config = PricingConfig() if config is None else config
    fitted = as_fitted(results, nested=True)
    products = fitted.problem.products
    markets = products.markets
    nested = fitted.nests is not None or fitted.problem.nests is not None
    blocks = None if nested else demand_blocks(fitted)  # the demand engine, built once
    if costs is None:
        base_costs = price_values(fitted) - markups_sorted(fitted, blocks=blocks)
        bad = ~np.isfinite(base_costs)
        if bad.any():
            shown = np.unique(markets.ids[markets.codes[bad]])[:10].tolist()
            raise DataError(
                f"marginal costs implied by the observed prices are not finite in market(s) "
                f"{shown} (the markup system -(O * ds/dp')^-1 s is singular there: shares near "
                "zero or a non-negative price coefficient); pass costs= or check the estimates")
    else:
        base_costs = per_product(fitted, costs, "costs")
    tau = per_product(fitted, unit_tax, "unit_tax")
    rate = per_product(fitted, ad_valorem_tax, "ad_valorem_tax")
    if np.any(rate <= -1):
        raise DataError("ad_valorem_tax must be greater than -1")
    effective = (1 + rate) * (base_costs + tau)
    available = (np.ones(markets.N, dtype=bool) if keep is None
                 else products.sort(_bool_array(keep, markets.N)))
    firms_before = _firms_or_none(fitted, None)
    firms_after = _firms_or_none(fitted, firm_ids) if ownership is None else None
    if blocks is None:
        found = market_equilibrium(fitted, effective, available, firm_ids=firm_ids,
                                   ownership=ownership, kappa=kappa, firms_before=firms_before,
                                   firms_after=firms_after, config=config)
    else:
        found = blocked_equilibrium(fitted, effective, available, firm_ids=firm_ids,
                                    ownership=ownership, kappa=kappa, firms_before=firms_before,
                                    firms_after=firms_after, config=config, blocks=blocks,
                                    executor=executor)
    _warn_nonnegative_alpha(markets.ids, found.undefined, found.capped, found.status, config)
    _apply_policy(markets.ids, found.status, config)
    with np.errstate(invalid="ignore"):
        profits_before = (found.prices_before - base_costs) * found.shares_before
        profits = (found.prices - effective) * found.shares / (1 + rate)
    unsort = products.unsort
    return Counterfactual(
        market_ids=markets.ids, row_markets=unsort(markets.ids[markets.codes]),
        status=tuple(found.status), iterations=found.iterations,
        prices_before=unsort(found.prices_before), prices=unsort(found.prices),
        shares_before=unsort(found.shares_before), shares=unsort(found.shares),
        costs=unsort(effective), markups=unsort(found.prices - effective),
        profits_before=unsort(profits_before), profits=unsort(profits),
        hhi_before=found.hhi_before, hhi=found.hhi,
        consumer_surplus_before=found.surplus_before, consumer_surplus=found.surplus,
        config=config, firm_ids_before=None if firms_before is None else unsort(firms_before),
        firm_ids=None if firms_after is None else unsort(firms_after))


def simulate_merger(results: Any, merging: Sequence[object], *,
                    config: PricingConfig | None = None, **changes: Any) -> Counterfactual:
    """Merge the firms in ``merging`` (they take the first one's id) and solve for new prices.

    Other keyword arguments (costs, taxes, keep) go to :func:`compute_prices`.

    Examples
    --------
    >>> cf = simulate_merger(results, [1, 2])          # doctest: +SKIP
    >>> cf.summary()                                   # doctest: +SKIP
    """
    fitted = as_fitted(results, nested=True)
    merging = list(merging)
    if len(merging) < 2:
        raise DataError(f"a merger needs at least two firms, got {merging}")
    before = fitted.problem.products.unsort(firm_ids_sorted(fitted))
    unknown = [f for f in merging if not np.any(before == f)]
    if unknown:
        raise DataError(f"firm(s) {unknown} are not in the data's firm_ids")
    after = before.copy()
    after[np.isin(before, np.asarray(merging))] = merging[0]
    out = compute_prices(fitted, firm_ids=after, config=config, **changes)
    return replace(out, merging=tuple(merging))


def _bool_array(values: Any, N: int) -> np.ndarray:
    array = np.asarray(values)
    if array.shape != (N,) or array.dtype != np.bool_:
        raise DataError(f"keep must be a boolean array with one value per product ({N})")
    return array


def _firms_or_none(fitted: FittedDemand, firm_ids: Any) -> AnyArray | None:
    if firm_ids is None and not fitted.problem.products.has("firm_ids"):
        return None
    return firm_ids_sorted(fitted, firm_ids)


def _warn_nonnegative_alpha(market_ids: AnyArray, undefined: list[object], capped: list[int],
                            status: list[Status], config: PricingConfig) -> None:
    """One warning for the markets where some consumer has alpha_i >= 0: consumer surplus is
    undefined there, and the price iteration was capped (no equilibrium need exist)."""
    if not undefined and not capped:
        return
    shown = list(dict.fromkeys(undefined))
    message = (f"consumer surplus is not defined in {len(shown)} market(s) "
               f"({shown[:5]}{' ...' if len(shown) > 5 else ''}): some agents have a "
               "non-negative price coefficient alpha_i; the surplus there is NaN")
    failed = [np.asarray(market_ids[t]).tolist() for t in capped if not status[t].converged]
    if not failed:
        warnings.warn(f"{message} (prices, shares and profits are unaffected)",
                      EconomicWarning, stacklevel=3)
        return
    warnings.warn(
        f"{message}. There firms' profits rise without bound in price, so no Bertrand-Nash "
        f"equilibrium need exist: the price iteration was capped at "
        f"{config.capped_iterations} iterations in those {len(capped)} market(s) and failed in "
        f"{len(failed)} ({failed[:5]}{' ...' if len(failed) > 5 else ''}; NaN prices, status "
        f"'{Status.NONNEGATIVE_ALPHA.value}'); check the estimated price coefficient's "
        "distribution (sigma and pi on prices)", EconomicWarning, stacklevel=3)


def _apply_policy(market_ids: AnyArray, status: list[Status], config: PricingConfig) -> None:
    failed = [(m, s) for m, s in zip(np.asarray(market_ids).tolist(), status) if not s.converged]
    if not failed or config.on_failure == "report":
        return
    names = ", ".join(f"{m!r} ({s.value})" for m, s in failed[:10])
    message = (f"Bertrand-Nash prices not found in {len(failed)} market(s): {names}; their prices "
               f"are NaN. Try PricingConfig(max_iterations=..., fallback='newton') or check costs")
    if config.on_failure == "raise":
        raise ConvergenceError(message)
    warnings.warn(message, ConvergenceWarning, stacklevel=3)


def merger_comparison(models: Mapping[str, Any], merging: Sequence[object], *,
                      config: PricingConfig | None = None) -> Table:
    """The same merger under several demand estimates (e.g. truth, OLS, IV): one row each.

    Each model recovers its own marginal costs from the observed prices, then solves the
    post-merger equilibrium. Columns: mean price change (%) of the merging firms' products and
    of the others, mean change in consumer surplus per consumer, mean HHI after, failed markets.

    Examples
    --------
    >>> merger_comparison({"OLS": ols, "IV": iv}, [0, 1])       # doctest: +SKIP
    """
    rows = {}
    for label, model in models.items():
        cf = simulate_merger(model, merging, config=config)
        inside = np.isin(np.asarray(cf.firm_ids_before), np.asarray(list(merging)))
        changes = 100 * cf.price_changes
        rows[label] = (np.nanmean(changes[inside]), np.nanmean(changes[~inside]) if (~inside).any()
                       else np.nan, np.nanmean(cf.consumer_surplus_change), np.nanmean(cf.hhi),
                       len(cf.failed_markets))
    body = pd.DataFrame.from_dict(rows, orient="index", columns=[
        "price change, merging (%)", "price change, others (%)", "change in CS",
        "HHI after", "failed markets"])
    body.index.name = "demand"
    return Table(title=f"Merger of firms {list(merging)}: Bertrand-Nash counterfactual", body=body,
                 notes=("costs recovered from observed prices under each demand estimate",
                        "CS per consumer: log-sum / -alpha (Small and Rosen 1981)"))


def fitted_from_truth(simulation: Any) -> FittedDemand:
    """The true demand of a ``bd.simulate`` result as a FittedDemand (beta, Sigma, xi known).

    delta = X1 beta + xi with the simulation's formulas, agents and true parameters, in the
    simulation's own model: a lognormal price coefficient (``lognormal=True``) has its
    location log(-alpha) as Pi on a constant demographic, and nests with random coefficients
    (RCNL) their rho. A nested logit without random coefficients is refused
    (SpecificationError): its demand is the linear IV regression of ``bd.estimate_logit(...,
    nesting=...)``, not built from the truth here.
    """
    from blpdemand.model.fitted import logit_layout
    from blpdemand.model.problem import Problem

    truth = simulation.truth
    nests, lognormal = bool(truth.get("nests", 0)), bool(truth.get("lognormal", False))
    if nests and not simulation.nonlinear:
        raise SpecificationError(
            "fitted_from_truth builds random-coefficients and plain logit demand; this "
            "simulation is a nested logit without random coefficients (estimate it with "
            "bd.estimate_logit(..., nesting='nesting_ids'))")
    extra: dict[str, Any] = {"nesting": "nesting_ids"} if nests else {}
    if lognormal:
        extra.update(demographics="1", lognormal=["prices"])
    problem = Problem(simulation.products, linear=simulation.linear,
                      nonlinear=simulation.nonlinear, agents=simulation.agents,
                      instruments=list(simulation.instruments), **extra)
    values = {"prices": truth["alpha"], **truth["beta"]}
    beta = np.array([values[name] for name in problem.X1.names], dtype=np.float64)
    if simulation.nonlinear:
        sd = truth["sigma"]
        sigma = np.array([sd[name] for name in problem.X2.names], dtype=np.float64)
        rho = truth["nesting_rho"] if nests else None
        location = np.array([[name == "prices"] for name in problem.X2.names], dtype=np.float64)
        # the layout from a nonzero placeholder (log(-alpha) = 0 at alpha = -1 is still free)
        layout, _ = problem.layout(sigma=sigma, pi=location if lognormal else None, rho=rho)
        theta = layout.pack(np.diag(sigma), np.log(-truth["alpha"]) * location if lognormal
                            else None, rho)
    else:
        layout, theta = logit_layout(problem), np.zeros(0)
    xi = problem.products.sort(simulation.products["xi"].to_numpy(dtype=np.float64))
    return FittedDemand(problem=problem, layout=layout, theta=theta, beta=beta,
                        delta=problem.X1.values @ beta + xi)
