"""Consumer surplus: the expected maximum utility (log-sum) in money units.

CS_t = sum_i w_i log(1 + sum_j exp(u_ij)) / (-alpha_i), alpha_i = d u_ij / d p_j
(Small and Rosen 1981; Train 2009, ch. 3). It is exact, up to an additive constant that cancels
in changes, when utility is linear in price for each agent. When the price coefficient depends
on income (e.g. alpha_i = pi / income_i as in Berry, Levinsohn and Pakes 1995), each agent's
surplus is converted with that agent's own alpha_i: this treats the marginal utility of income
as constant over the price change, an approximation to the compensating variation that ignores
income effects (McFadden 1999). Surplus is per consumer (per unit of market size).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from blpdemand._types import FloatArray
from blpdemand.errors import SpecificationError
from blpdemand.model.nested_demand import NestedMarketDemand
from blpdemand.model.nesting import within_shares
from blpdemand.model.pricing import MarketDemand, log_sum
from blpdemand.results.costs import per_product
from blpdemand.results.elasticities import as_fitted, model_demands


def market_surplus(demand: MarketDemand, prices: FloatArray | None = None) -> float:
    """CS of one market at ``prices`` (J,) (default: the stored prices)."""
    if np.any(demand.alpha >= 0):
        raise SpecificationError(
            f"market {np.asarray(demand.market_id).tolist()!r}: some agents have a non-negative "
            "price coefficient "
            f"(max alpha_i = {demand.alpha.max():.4g}); consumer surplus needs alpha_i < 0")
    utility = demand.utility if prices is None else demand.utility_at(prices)
    return float(demand.weights @ (log_sum(utility) / -demand.alpha))


def compute_consumer_surplus(results: Any, *, prices: Any = None,
                             keep: Any = None) -> FloatArray:
    """(T,) consumer surplus of each market (problem's market order).

    Parameters
    ----------
    prices : (N,) prices in the user's row order (default: observed prices).
    keep : (N,) bool, products available to consumers (default: all); removed products leave
        the choice set.

    Examples
    --------
    >>> cs = compute_consumer_surplus(results)                 # doctest: +SKIP
    """
    fitted = as_fitted(results, nested=True)
    markets = fitted.problem.products.markets
    p = None if prices is None else per_product(fitted, prices, "prices")
    available = (np.ones(markets.N, dtype=bool) if keep is None
                 else fitted.problem.products.sort(np.asarray(keep, dtype=bool)))
    if fitted.nests is not None:
        return _nested_surplus(fitted, p, available)
    out = np.empty(markets.T)
    for t, demand in enumerate(model_demands(fitted)):
        rows = markets.slice(t)
        prices_t = demand.prices if p is None else p[rows]
        mask = available[rows]
        sub = demand.subset(mask)
        out[t] = (sub.surplus(prices_t[mask]) if isinstance(sub, NestedMarketDemand)
                  else market_surplus(sub, prices_t[mask]))
    return out


def _nested_surplus(fitted: Any, prices: FloatArray | None, available: Any) -> FloatArray:
    """(T,) nested-logit surplus: CS_t = log(1 + sum_g D_g^{1 - rho_g}) / -alpha with
    D_g = sum_{j in g} exp(V_j / (1 - rho_g)) over the available products, V_j the mean utility
    without the nesting term, V_j = log(s_j / s_0) - rho_g log s_{j|g} (Berry 1994; McFadden 1978),
    moved by alpha (p'_j - p_j) at new prices."""
    problem, nests = fitted.problem, fitted.nests
    names = problem.X1.names
    if "prices" not in names:
        raise SpecificationError("consumer surplus needs the price coefficient: 'prices' is not "
                                 f"in the linear formula {list(names)}")
    alpha = float(fitted.beta[names.index("prices")])
    if alpha >= 0:
        raise SpecificationError(f"consumer surplus needs a negative price coefficient, got "
                                 f"{alpha:.4g}")
    products, markets = problem.products, problem.products.markets
    rho = fitted.rho
    shares = products.shares
    V = fitted.delta - rho * np.log(within_shares(shares, nests.cells))
    if prices is not None:
        V = V + alpha * (prices - products.array("prices"))
    out = np.empty(markets.T)
    for t in range(markets.T):
        rows = markets.slice(t)
        keep = np.asarray(available[rows], dtype=bool)
        scaled = V[rows][keep] / (1.0 - rho[rows][keep])
        cells = nests.codes[rows][keep]
        top = max(float(scaled.max(initial=0.0)), 0.0)
        D = np.bincount(cells, weights=np.exp(scaled - top), minlength=nests.labels.size)
        rho_g = np.zeros(nests.labels.size)
        rho_g[cells] = rho[rows][keep]
        present = D > 0
        inclusive = (1.0 - rho_g[present]) * (np.log(D[present]) + top)
        shift = max(float(inclusive.max(initial=0.0)), 0.0)
        out[t] = (shift + np.log(np.exp(-shift) + np.exp(inclusive - shift).sum())) / -alpha
    return out
