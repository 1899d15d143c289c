"""Demand of one market with nests (the nested logit, or the random-coefficients nested logit):
shares, d s / d p, consumer surplus and Bertrand-Nash prices.

Agent i's utility V_ij(p) = V_ij + alpha_i (p_j - p_j^0) carries a nested-logit error with
lambda_g = 1 - rho_g (``model.rcnl``; Cardell 1997, Grigolon and Verboven 2014); the nested
logit is one agent of weight 1. With the agents' s_ij and the within-nest s_{k|g,i},

    d s_j / d p_k = sum_i w_i alpha_i s_ij [1{j=k} / lambda_g - 1{g(k)=g} (1/lambda_g - 1)
                    s_{k|g,i} - s_ik],
    CS = sum_i w_i log(1 + sum_g D_ig^lambda_g) / (-alpha_i),
    D_ig = sum_{k in g} exp(V_ik / lambda_g).

Prices solve the multi-product Bertrand first-order conditions p = c + eta(p),
eta = -(O * ds/dp')^{-1} s, by the zeta fixed point p = c + zeta(p) of Morrow and Skerlos
(2011) with the nested Lambda and Gamma (ds/dp = Lambda - Gamma), then Newton's method on
p - c - eta(p) where it stalls.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from blpdemand._types import BoolArray, FloatArray, IntArray, Status
from blpdemand.model.pricing import MarketDemand, PriceSolution, PricingConfig
from blpdemand.model.rcnl import (
    NestedProbabilities,
    nest_membership,
    nested_delta_jacobian,
    nested_probabilities,
)


@dataclass(frozen=True, slots=True)
class NestedMarketDemand(MarketDemand):
    """A MarketDemand whose agents choose with nests: ``nests`` (J,) codes 0..G-1 and ``lam``
    (G,) lambda_g = 1 - rho_g; ``utility`` holds V_ij without the nesting term."""

    nests: IntArray
    lam: FloatArray

    def _probabilities(self, prices: FloatArray | None = None) -> NestedProbabilities:
        utility = self.utility if prices is None else self.utility_at(prices)
        onehot = nest_membership(self.nests[None, :], self.lam.size, None)
        return nested_probabilities(utility[None], onehot, self.lam)

    def probabilities(self, prices: FloatArray | None = None) -> FloatArray:
        """(J, I) s_ij at ``prices`` (default: the stored ones)."""
        out: FloatArray = self._probabilities(prices).probabilities[0]
        return out

    def price_jacobian(self, prices: FloatArray | None = None) -> FloatArray:
        """(J, J) d s_j / d p_k at ``prices``."""
        p = self._probabilities(prices)
        out: FloatArray = nested_delta_jacobian(p, (self.weights * self.alpha)[None])[0]
        return out

    def log_sum(self, prices: FloatArray | None = None) -> FloatArray:
        """(I,) inclusive values log(1 + sum_g D_ig^lambda_g)."""
        p = self._probabilities(prices)
        inclusive = np.where(np.isfinite(p.log_D[0]), self.lam[:, None] * p.log_D[0], -np.inf)
        top = np.maximum(inclusive.max(axis=0, initial=0.0), 0.0)
        out: FloatArray = top + np.log(np.exp(-top) + np.exp(inclusive - top).sum(axis=0))
        return out

    def surplus(self, prices: FloatArray | None = None) -> float:
        """Consumer surplus sum_i w_i log(1 + sum_g D_ig^lambda_g) / (-alpha_i)."""
        return float(self.weights @ (self.log_sum(prices) / -self.alpha))

    def subset(self, keep: BoolArray) -> NestedMarketDemand:
        """The same market with only the products in ``keep``."""
        keep = np.asarray(keep, dtype=bool)
        return replace(self, prices=self.prices[keep], utility=self.utility[keep],
                       nests=self.nests[keep])


def zeta_markup(demand: NestedMarketDemand, ownership: FloatArray, prices: FloatArray,
                costs: FloatArray) -> FloatArray:
    """(J,) zeta(p) = Lambda^{-1} (O * Gamma) (p - c) - Lambda^{-1} s with ds/dp = Lambda - Gamma,
    Lambda_jj = sum_i w_i alpha_i s_ij / lambda_g(j) (Morrow and Skerlos 2011, with nests)."""
    p = demand._probabilities(prices)
    weighted = demand.weights * demand.alpha
    jacobian = nested_delta_jacobian(p, weighted[None])[0]
    diagonal = (p.probabilities[0] @ weighted) / p.lam_j[0]
    gamma = np.diag(diagonal) - jacobian
    shares = p.probabilities[0] @ demand.weights
    out: FloatArray = ((ownership * gamma) @ (prices - costs) - shares) / diagonal
    return out


def markup(demand: NestedMarketDemand, ownership: FloatArray, prices: FloatArray) -> FloatArray:
    """(J,) eta(p) = -(O * ds/dp')^{-1} s(p) (NaN where the system is singular)."""
    shares = demand.shares(prices)
    try:
        out: FloatArray = np.asarray(
            -np.linalg.solve(ownership * demand.price_jacobian(prices).T, shares), np.float64)
    except np.linalg.LinAlgError:
        out = np.full(shares.size, np.nan)
    return out


def solve_nested_prices(demand: NestedMarketDemand, costs: FloatArray, ownership: FloatArray,
                        *, start: FloatArray | None = None,
                        config: PricingConfig | None = None) -> PriceSolution:
    """Bertrand-Nash prices of one nested market: p <- c + zeta(p) to ``config.tol``, then
    (``config.fallback == "newton"``) Newton's method on r(p) = p - c - eta(p) with a
    finite-difference Jacobian from the start. Failed markets keep NaN prices."""
    config = PricingConfig() if config is None else config
    costs = np.asarray(costs, dtype=np.float64)
    p0 = demand.prices.copy() if start is None else np.asarray(start, dtype=np.float64)
    if demand.J == 0:
        return PriceSolution(prices=p0, status=Status.CONVERGED, iterations=0,
                             method="none")
    prices, status = p0, Status.MAX_ITERATIONS
    iterations = 0
    with np.errstate(all="ignore"):
        for iterations in range(1, config.max_iterations + 1):
            new = costs + zeta_markup(demand, ownership, prices, costs)
            if not np.all(np.isfinite(new)):
                status = Status.NONFINITE
                break
            change = float(np.max(np.abs(new - prices)))
            prices = new
            if change < config.tol:
                return PriceSolution(prices=prices, status=Status.CONVERGED,
                                     iterations=iterations, method="zeta")
        if config.fallback == "newton":
            solution = _newton(demand, costs, ownership, p0, config)
            if solution.status.converged:
                return replace(solution, status=Status.CONVERGED_FALLBACK,
                               iterations=iterations + solution.iterations)
    return PriceSolution(prices=np.full(demand.J, np.nan), status=status,
                         iterations=iterations, method="zeta")


def _newton(demand: NestedMarketDemand, costs: FloatArray, ownership: FloatArray,
            start: FloatArray, config: PricingConfig) -> PriceSolution:
    """Newton's method on r(p) = p - c - eta(p), forward-difference Jacobian."""
    prices = start.copy()
    for k in range(1, config.newton_iterations + 1):
        residual = prices - costs - markup(demand, ownership, prices)
        if not np.all(np.isfinite(residual)):
            break
        if np.max(np.abs(residual)) < config.tol:
            return PriceSolution(prices=prices, status=Status.CONVERGED, iterations=k,
                                 method="newton")
        jacobian = np.empty((prices.size, prices.size))
        for j in range(prices.size):
            step = config.newton_step * max(1.0, abs(prices[j]))
            moved = prices.copy()
            moved[j] += step
            jacobian[:, j] = (moved - costs - markup(demand, ownership, moved) - residual) / step
        try:
            prices = prices - np.linalg.solve(jacobian, residual)
        except np.linalg.LinAlgError:
            break
    return PriceSolution(prices=np.full(prices.size, np.nan),
                         status=Status.MAX_ITERATIONS, iterations=config.newton_iterations,
                         method="newton")
