"""Price (and characteristic) elasticities of demand, market by market.

epsilon_jk = (ds_j / dx_k) (x_k / s_j), ds_j/dx_k = sum_i w_i a_i s_ij (1{j=k} - s_ik), with
a_i = d u_ij / d x_j (prices: alpha_i = alpha + [Sigma nu_i + Pi y_i]_prices).
Plain logit closed forms: own alpha p_j (1 - s_j), cross -alpha p_k s_k (Berry 1994).
Nested logit: ds_j/dp_k from ``model.nesting.nested_share_jacobian`` (Cardell 1997).
Per-product inputs and outputs are in the user's row order (as the product data were given).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from blpdemand._types import AnyArray, FloatArray, IntArray
from blpdemand.errors import SpecificationError
from blpdemand.model.demand import block_shares, demand_blocks, market_demands, price_values
from blpdemand.model.fitted import FittedDemand
from blpdemand.model.nested_demand import NestedMarketDemand
from blpdemand.model.nesting import nested_share_jacobian, within_shares
from blpdemand.model.pricing import MarketDemand, block_share_jacobians
from blpdemand.model.rcnl import nest_membership, nested_delta_jacobian, nested_probabilities
from blpdemand.results.sanity import elasticity_check, usable_fitted, warns
from blpdemand.results.tables import Table


def as_fitted(results: Any, *, nested: bool = False) -> FittedDemand:
    """The FittedDemand of a results object (its ``.fitted``), or ``results`` itself, checked
    usable: ConvergenceError where the contraction failed at the estimate (``usable_fitted``).

    A nested logit raises SpecificationError unless the caller handles nests (``nested``):
    the other computations would silently give plain-logit numbers.
    """
    fitted = usable_fitted(results)
    if (fitted.nests is not None or fitted.problem.nests is not None) and not nested:
        raise SpecificationError(
            "this computation is not available for nested logit results (it would give the "
            "numbers of the model without nests); compute_elasticities, "
            "compute_diversion_ratios, compute_markups and compute_costs are")
    return fitted


@dataclass(frozen=True, slots=True)
class MarketMatrices:
    """One (J_t, J_t) matrix per market, rows and columns in the market's product order.

    Attributes
    ----------
    kind : what the entries are ("elasticities", "diversion ratios", ...).
    name : the characteristic (e.g. "prices").
    market_ids : (T,) market ids; matrices : T arrays of shape (J_t, J_t).
    product_ids : (N,) product labels in the problem's sorted order (positions if none).
    order : (N,) user row of each sorted row; offsets : (T+1,) market offsets (sorted order).
    """

    kind: str
    name: str
    market_ids: AnyArray
    matrices: tuple[FloatArray, ...]
    product_ids: AnyArray
    order: IntArray
    offsets: IntArray

    def market(self, market_id: object) -> pd.DataFrame:
        """The matrix of one market labelled by product (rows j, columns k)."""
        hits = np.flatnonzero(self.market_ids == market_id)
        if hits.size == 0:
            from blpdemand.errors import SpecificationError

            raise SpecificationError(f"no market {market_id!r}; markets are e.g. "
                                     f"{np.asarray(self.market_ids[:5]).tolist()}")
        t = int(hits[0])
        labels = self.product_ids[self.offsets[t]:self.offsets[t + 1]]
        return pd.DataFrame(self.matrices[t], index=pd.Index(labels, name="j"),
                            columns=pd.Index(labels, name="k"))

    def title(self, market_id: object) -> str:
        """A heading for one market's matrix, e.g. "Price elasticities, market 2018"."""
        if self.kind == "elasticities" and self.name == "prices":
            return f"Price elasticities, market {market_id}"
        return f"{self.kind.capitalize()} ({self.name}), market {market_id}"

    @property
    def meaning(self) -> str:
        """What entry [j, k] (row j, column k) is, in words, for captions and plot titles."""
        noun = "price" if self.name == "prices" else self.name
        if self.kind == "elasticities":
            return f"% change in j's share when k's {noun} rises 1%"
        if self.kind == "pass-through":
            return "change in j's price when k's marginal cost rises by one unit"
        if self.kind.startswith("long-run"):
            return ("share of j's sales that go to k when j leaves the market; diagonal: to "
                    "the outside good")
        return (f"share of j's lost sales that go to k when j's {noun} rises; diagonal: to the "
                "outside good")

    def table(self, market_id: object, *, digits: int = 4) -> Table:
        """One market's matrix as a Table (rows j, columns k)."""
        return Table(title=self.title(market_id), body=self.market(market_id),
                     notes=(f"row j, column k: {self.meaning}",), digits=digits)

    def stacked(self) -> FloatArray:
        """(N, max J_t) rows in the user's order, row j holding its market's row, NaN padded."""
        width = max((m.shape[0] for m in self.matrices), default=0)
        out = np.full((self.order.size, width), np.nan)
        for t, matrix in enumerate(self.matrices):
            out[self.order[self.offsets[t]:self.offsets[t + 1]], : matrix.shape[0]] = matrix
        return out

    def diagonal(self) -> FloatArray:
        """(N,) diagonal entries (own elasticities; diversion to the outside good; own
        pass-through), user order."""
        values = (np.concatenate([np.diag(m) for m in self.matrices]) if self.matrices
                  else np.zeros(0))
        out = np.empty_like(values)
        out[self.order] = values
        return out

    def __repr__(self) -> str:
        sizes = [m.shape[0] for m in self.matrices] or [0]
        head = (f"MarketMatrices: {self.kind} ({self.name}), {len(self.matrices)} markets of "
                f"{min(sizes)} to {max(sizes)} products; .market(id), .table(id), .diagonal()")
        if not self.matrices:
            return head
        labels = [str(v) for v in self.product_ids[self.offsets[0]:self.offsets[1]][:8]]
        body = pd.DataFrame(self.matrices[0][:8, :8], index=labels, columns=labels)
        return Table(title=f"market {self.market_ids[0]} (at most 8 rows and columns)",
                     body=body).preview(heading=head)


def _labels(fitted: FittedDemand) -> AnyArray:
    products = fitted.problem.products
    if products.has("product_ids"):
        return products.array("product_ids")
    markets = products.markets
    return np.arange(products.N) - markets.offsets[markets.codes]


def _record(fitted: FittedDemand, kind: str, name: str,
            matrices: list[FloatArray]) -> MarketMatrices:
    products = fitted.problem.products
    return MarketMatrices(kind=kind, name=name, market_ids=products.markets.ids,
                          matrices=tuple(matrices), product_ids=_labels(fitted),
                          order=products.order, offsets=products.markets.offsets)


def blocked_jacobians(fitted: FittedDemand, name: str = "prices"
                      ) -> tuple[list[FloatArray], list[FloatArray]]:
    """ds_j / dx_k and s_j of every market (random coefficients or logit) from the blocked
    engine (``model.demand.demand_blocks``): one batched product per block of equal-size
    markets instead of a Python loop over markets."""
    T = fitted.problem.products.markets.T
    jacobians: list[FloatArray] = [np.zeros((0, 0))] * T
    shares: list[FloatArray] = [np.zeros(0)] * T
    for block in demand_blocks(fitted, name):
        probabilities = block.probabilities()
        jac = block_share_jacobians(probabilities, block.weights, block.alpha)
        values = block_shares(probabilities, block.weights)
        for k, t in enumerate(block.markets.tolist()):
            jacobians[t], shares[t] = jac[k], values[k]
    return jacobians, shares


def nested_jacobians(fitted: FittedDemand, name: str = "prices") -> list[FloatArray]:
    """ds_j / dx_k of a nested logit for each market at the observed shares (which the
    estimates reproduce exactly): T arrays (J_t, J_t), ``nested_share_jacobian``."""
    problem, nests = fitted.problem, fitted.nests
    assert nests is not None
    if name not in problem.X1.names or name in nests.names:
        raise SpecificationError(f"{name!r} is not a characteristic of the nested logit's X1 "
                                 f"{[n for n in problem.X1.names if n not in nests.names]}")
    coefficient, rho = fitted.coefficient(name), fitted.rho
    markets, shares = problem.products.markets, problem.products.shares
    return [nested_share_jacobian(shares[rows], nests.codes[rows], rho[rows], coefficient)
            for rows in map(markets.slice, range(markets.T))]


def rcnl_jacobians(fitted: FittedDemand, name: str = "prices") -> list[FloatArray]:
    """ds_j / dx_k of a random-coefficients nested logit for each market: T arrays (J_t, J_t),
    sum_i w_i a_i ds_ij/dV_ik with a_i = d u_ij / d x_j (``model.rcnl``)."""
    problem, layout = fitted.problem, fitted.layout
    nests = problem.nests
    assert nests is not None
    G = int(nests.labels.size)
    rho = layout.rho(fitted.theta)
    lam = 1.0 - (rho if nests.per_nest else np.full(G, float(rho[0])))
    markets = problem.products.markets
    out = []
    for t, demand in enumerate(market_demands(fitted, name)):
        codes = nests.codes[markets.slice(t)][None, :]
        p = nested_probabilities(demand.utility[None], nest_membership(codes, G, None), lam)
        out.append(nested_delta_jacobian(p, (demand.weights * demand.alpha)[None])[0])
    return out


def model_demands(fitted: FittedDemand) -> list[MarketDemand]:
    """One demand per market for the model the results hold: MarketDemand (random
    coefficients or logit), or NestedMarketDemand with the nests of a nested logit (V_j =
    delta_j - rho_g log s_{j|g}, one agent) or of a random-coefficients nested logit."""
    demands = market_demands(fitted)
    problem = fitted.problem
    if fitted.nests is not None:
        nests, codes = fitted.nests, fitted.nests.codes
        lam = 1.0 - fitted.nests.rho_by_nest(fitted.beta, problem.X1.names)
        within = np.log(within_shares(problem.products.shares, nests.cells))
        V = fitted.delta - fitted.rho * within
    elif problem.nests is not None:
        nests, codes = problem.nests, problem.nests.codes
        rho = fitted.layout.rho(fitted.theta)
        lam = 1.0 - (rho if nests.per_nest else np.full(nests.labels.size, float(rho[0])))
        V = None
    else:
        return demands
    markets = problem.products.markets
    out: list[MarketDemand] = []
    for t, demand in enumerate(demands):
        rows = markets.slice(t)
        utility = demand.utility if V is None else V[rows][:, None]
        out.append(NestedMarketDemand(market_id=demand.market_id, prices=demand.prices,
                                      utility=utility, alpha=demand.alpha,
                                      weights=demand.weights, nests=codes[rows], lam=lam))
    return out


def demand_jacobians(fitted: FittedDemand, name: str = "prices"
                     ) -> tuple[list[FloatArray], list[FloatArray]]:
    """ds_j / dx_k and the shares s_j of every market, for the model the results hold: random
    coefficients (with or without nests) or the nested logit."""
    problem = fitted.problem
    if fitted.nests is not None:
        jacobians = nested_jacobians(fitted, name)
    elif problem.nests is not None:
        jacobians = rcnl_jacobians(fitted, name)
    else:
        return blocked_jacobians(fitted, name)
    markets, shares = problem.products.markets, problem.products.shares
    # nested models reproduce the observed shares at the estimate
    return jacobians, [shares[markets.slice(t)] for t in range(markets.T)]


def compute_elasticities(results: Any, name: str = "prices") -> MarketMatrices:
    """Elasticities epsilon_jk = (ds_j/dx_k) x_k / s_j of every market for column ``name``.

    ``name`` is any column of X1 and/or X2 that enters utility linearly (default prices).
    For estimation results (not a bare FittedDemand), positive own-price elasticities are
    counted in an EconomicWarning naming the worst products (see ``check_economics``).

    Examples
    --------
    >>> e = compute_elasticities(results)              # doctest: +SKIP
    >>> e.market("C01Q1")                              # doctest: +SKIP
    """
    fitted = as_fitted(results, nested=True)
    values, markets = price_values(fitted, name), fitted.problem.products.markets
    jacobians, market_shares = demand_jacobians(fitted, name)
    out = []
    for t, (jac, shares) in enumerate(zip(jacobians, market_shares)):
        out.append(jac * values[markets.slice(t)][None, :] / shares[:, None])
    record = _record(fitted, "elasticities", name, out)
    if name == "prices" and warns(results):
        elasticity_check(fitted, record.diagonal()).warn(stacklevel=3)
    return record


def own_elasticity_summary(results: Any, name: str = "prices") -> Table:
    """Own elasticities by market (mean, median, min, max) and over all products."""
    fitted = as_fitted(results, nested=True)
    elasticities = compute_elasticities(fitted, name)
    rows = {}
    for t, matrix in enumerate(elasticities.matrices):
        own = np.diag(matrix)
        rows[elasticities.market_ids[t]] = (own.mean(), np.median(own), own.min(), own.max(),
                                            own.size)
    body = pd.DataFrame.from_dict(rows, orient="index",
                                  columns=["mean", "median", "min", "max", "products"])
    all_own = elasticities.diagonal()
    body.loc["all markets"] = (all_own.mean(), np.median(all_own), all_own.min(), all_own.max(),
                               all_own.size)
    body.index.name = "market"
    title = ("Own-price elasticities" if name == "prices"
             else f"Own elasticities with respect to {name}")
    return Table(title=title, body=body,
                 notes=(f"epsilon_jj = (ds_j/d{name}_j) {name}_j / s_j",))


def compute_aggregate_elasticities(results: Any, *, factor: float = 0.01) -> FloatArray:
    """(T,) market-level elasticity: the percent change in total inside share when all prices rise
    by ``factor`` (proportionally), divided by ``factor``:
    E_t = [sum_j s_j(p (1 + factor)) - sum_j s_j(p)] / (factor sum_j s_j(p)).
    """
    fitted = as_fitted(results)
    out = np.full(fitted.problem.T, np.nan)  # NaN for a market without products
    for block in demand_blocks(fitted):  # markets of equal size at once
        before = block.shares().sum(axis=1)
        after = block.shares(block.prices * (1 + factor)).sum(axis=1)
        out[block.markets] = (after - before) / (factor * before)
    return out
