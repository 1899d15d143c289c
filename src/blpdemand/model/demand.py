"""Demand from estimates: the markets' utilities, price coefficients and weights, per market
and in blocks of markets of equal size, the one engine post-estimation runs on.

u_ij = delta_j + x2_j' c_i with c_i = Sigma nu_i + Pi y_i (lognormal columns s_k exp(.)), and
alpha_i = d u_ij / d p_j = alpha + c_i,prices (Berry, Levinsohn and Pakes 1995). A plain logit
has one agent of weight 1 per market. ``demand_blocks`` groups markets of equal (J_t, I_t) into
dense (T_b, J, I) arrays (no padding), so that shares, d s / d p, markups, consumer surplus and
the Bertrand zeta fixed point (``model.pricing.solve_block_prices``) run on whole blocks with
no Python loop over markets; ``market_demands`` gives one ``MarketDemand`` per market for the
per-market computations (elasticity matrices, the Newton fallback).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from blpdemand._types import BoolArray, FloatArray, IntArray
from blpdemand.errors import SpecificationError
from blpdemand.model.fitted import FittedDemand
from blpdemand.model.pricing import MarketDemand, choice_probabilities_3d
from blpdemand.model.utility import agent_coefficients as random_coefficients

_TOKEN = r"(?<![A-Za-z0-9_.]){}(?![A-Za-z0-9_])"


def coefficient_columns(fitted: FittedDemand, name: str) -> tuple[int | None, int | None]:
    """Positions of column ``name`` in X1 and X2 (None if absent).

    Raises SpecificationError when ``name`` enters some column nonlinearly (``log(prices)``,
    ``prices:sugar``, ``I(prices**2)``): derivatives here assume u is linear in ``name``.
    """
    problem = fitted.problem
    if not isinstance(name, str):
        raise SpecificationError(f"name={name!r} must be a column name of X1 or X2, e.g. 'prices'")
    pattern = re.compile(_TOKEN.format(re.escape(name)))
    for what, names in (("X1", problem.X1.names), ("X2", problem.X2.names)):
        for column in names:
            if column != name and pattern.search(column):
                raise SpecificationError(
                    f"{name!r} enters {what} column {column!r} nonlinearly; post-estimation "
                    f"derivatives need {name!r} to enter utility linearly (as the column "
                    f"{name!r} in X1 and/or X2); this is not supported yet")
    k1 = problem.X1.names.index(name) if name in problem.X1.names else None
    k2 = problem.X2.names.index(name) if name in problem.X2.names else None
    if k1 is None and k2 is None:
        raise SpecificationError(
            f"{name!r} is neither in X1 {list(problem.X1.names)} nor in X2 "
            f"{list(problem.X2.names)}; derivatives are taken with respect to a model column")
    return k1, k2


def agent_coefficients(fitted: FittedDemand) -> FloatArray:
    """(I, K2) random coefficients Sigma nu_i + Pi y_i of every agent (sorted agent rows),
    s_k exp(.) on lognormal columns."""
    problem = fitted.problem
    if problem.agents is None or problem.K2 == 0:
        return np.zeros((0, problem.K2))
    sigma, pi = fitted.layout.unpack(fitted.theta)
    return random_coefficients(problem.nodes_for(fitted.layout), problem.agents.demographics,
                               sigma, pi, problem.lognormal)


def market_demands(fitted: FittedDemand, name: str = "prices") -> list[MarketDemand]:
    """One MarketDemand per market (market order of the problem) from estimates.

    ``alpha`` holds d u_ij / d x_j for the column ``name`` (default prices): the X1
    coefficient plus the agent's X2 random coefficient. Logit problems have one agent of
    weight 1 per market. ``prices`` holds the values of ``name`` in the data.
    """
    problem = fitted.problem
    k1, k2 = coefficient_columns(fitted, name)
    mean = float(fitted.beta[k1]) if k1 is not None else 0.0
    values = (problem.X1.values[:, k1] if k1 is not None else problem.X2.values[:, k2])
    pm = problem.products.markets
    delta = np.asarray(fitted.delta, dtype=np.float64)
    out = []
    if problem.agents is None or problem.K2 == 0:
        for t in range(pm.T):
            rows = pm.slice(t)
            out.append(MarketDemand(market_id=pm.ids[t], prices=values[rows].astype(np.float64),
                                    utility=delta[rows][:, None], alpha=np.array([mean]),
                                    weights=np.ones(1)))
        return out
    coefficients = agent_coefficients(fitted)
    am = problem.agents.markets
    for t in range(pm.T):
        rows, arows = pm.slice(t), am.slice(t)
        coef = coefficients[arows]
        utility = delta[rows][:, None] + problem.X2.values[rows] @ coef.T
        alpha = mean + (coef[:, k2] if k2 is not None else np.zeros(coef.shape[0]))
        out.append(MarketDemand(market_id=pm.ids[t], prices=values[rows].astype(np.float64),
                                utility=utility, alpha=np.asarray(alpha, dtype=np.float64),
                                weights=problem.agents.weights[arows]))
    return out


@dataclass(frozen=True, slots=True, eq=False)
class DemandBlock:
    """Markets of equal size (J, I): the demand of each at the observed prices.

    Attributes
    ----------
    markets : (T_b,) market positions t. rows : (T_b, J) sorted product rows of each market.
    utility : (T_b, J, I) u_ij at ``prices``. alpha : (T_b, I) d u_ij / d p_j.
    weights : (T_b, I) integration weights. prices : (T_b, J) observed prices.
    """

    markets: IntArray
    rows: IntArray
    utility: FloatArray
    alpha: FloatArray
    weights: FloatArray
    prices: FloatArray

    def utility_at(self, prices: FloatArray | None = None,
                   available: BoolArray | None = None) -> FloatArray:
        """(T_b, J, I) u_ij(p') = u_ij(p) + alpha_i (p'_j - p_j); -inf for products outside
        ``available`` (T_b, J) (they leave the choice set)."""
        utility = self.utility
        if prices is not None:
            utility = utility + (prices - self.prices)[:, :, None] * self.alpha[:, None, :]
        if available is not None and not available.all():
            utility = np.where(available[:, :, None], utility, -np.inf)
        return utility

    def probabilities(self, prices: FloatArray | None = None,
                      available: BoolArray | None = None) -> FloatArray:
        """(T_b, J, I) logit choice probabilities s_ij (0 for unavailable products)."""
        with np.errstate(invalid="ignore"):
            return choice_probabilities_3d(self.utility_at(prices, available))

    def shares(self, prices: FloatArray | None = None,
               available: BoolArray | None = None) -> FloatArray:
        """(T_b, J) s_j = sum_i w_i s_ij."""
        return block_shares(self.probabilities(prices, available), self.weights)

    def surplus(self, prices: FloatArray | None = None,
                available: BoolArray | None = None) -> FloatArray:
        """(T_b,) CS_t = sum_i w_i log(1 + sum_j exp(u_ij)) / (-alpha_i) (Small and Rosen 1981);
        NaN in markets where some alpha_i >= 0 (the surplus is not defined there)."""
        return self.shares_and_surplus(prices, available)[1]

    def shares_and_surplus(self, prices: FloatArray | None = None,
                           available: BoolArray | None = None) -> tuple[FloatArray, FloatArray]:
        """``shares`` (T_b, J) and ``surplus`` (T_b,) from one exp(u) (shifted by m_i =
        max(0, max_j u_ij): s_ij = e_ij / D_i, log-sum = m_i + log D_i, D_i = e^-m_i + sum e_ij)."""
        utility = self.utility_at(prices, available)
        with np.errstate(divide="ignore", invalid="ignore"):
            top = np.maximum(utility.max(axis=1, keepdims=True), 0.0)  # (T_b, 1, I)
            e = np.exp(utility - top)
            denominator = np.exp(-top) + e.sum(axis=1, keepdims=True)
            shares = block_shares(e / denominator, self.weights)
            inclusive = (top + np.log(denominator))[:, 0, :]
            values = np.sum(self.weights * (inclusive / -self.alpha), axis=1)
        return shares, np.where(np.any(self.alpha >= 0, axis=1), np.nan, values)


def block_shares(probabilities: FloatArray, weights: FloatArray) -> FloatArray:
    """(T_b, J) s_j = sum_i w_i s_ij of (T_b, J, I) probabilities and (T_b, I) weights."""
    out: FloatArray = np.matmul(probabilities, weights[:, :, None])[:, :, 0]
    return out


def price_values(fitted: FittedDemand, name: str = "prices") -> FloatArray:
    """(N,) the values of column ``name`` (default prices) in the model, sorted rows."""
    k1, k2 = coefficient_columns(fitted, name)
    X = fitted.problem.X1 if k1 is not None else fitted.problem.X2
    return np.asarray(X.values[:, k1 if k1 is not None else k2], dtype=np.float64)


def demand_blocks(fitted: FittedDemand, name: str = "prices") -> tuple[DemandBlock, ...]:
    """The markets of ``fitted`` grouped by (J_t, I_t) into DemandBlocks (column ``name``
    as the price, as in ``market_demands``); markets without products are left out."""
    problem = fitted.problem
    k1, k2 = coefficient_columns(fitted, name)
    mean = float(fitted.beta[k1]) if k1 is not None else 0.0
    values = price_values(fitted, name)
    delta = np.asarray(fitted.delta, dtype=np.float64)
    pm = problem.products.markets
    agents = None if problem.K2 == 0 else problem.agents
    J_t = pm.sizes
    I_t = np.ones(pm.T, dtype=np.int64) if agents is None else agents.markets.sizes
    coefficients = None if agents is None else agent_coefficients(fitted)
    blocks = []
    for J, I in sorted({(int(j), int(i)) for j, i in zip(J_t, I_t) if j > 0}):
        markets = np.flatnonzero((J_t == J) & (I_t == I)).astype(np.int64)
        rows = pm.offsets[markets][:, None] + np.arange(J)[None, :]
        if coefficients is None or agents is None:
            utility = delta[rows][:, :, None]
            alpha = np.full((markets.size, 1), mean)
            weights = np.ones((markets.size, 1))
        else:
            slots = agents.markets.offsets[markets][:, None] + np.arange(I)[None, :]
            coef = coefficients[slots]  # (T_b, I, K2)
            utility = delta[rows][:, :, None] + np.matmul(problem.X2.values[rows],
                                                          coef.transpose(0, 2, 1))
            alpha = mean + (coef[:, :, k2] if k2 is not None else np.zeros(slots.shape))
            weights = agents.weights[slots]
        blocks.append(DemandBlock(markets=markets, rows=rows, utility=utility,
                                  alpha=np.asarray(alpha, dtype=np.float64), weights=weights,
                                  prices=values[rows]))
    return tuple(blocks)


def block_demand(block: DemandBlock, k: int, market_id: object) -> MarketDemand:
    """The MarketDemand of the block's k-th market (for per-market computations)."""
    return MarketDemand(market_id=market_id, prices=block.prices[k], utility=block.utility[k],
                        alpha=block.alpha[k], weights=block.weights[k])
