"""Bertrand-Nash pricing for random-coefficients logit demand that is linear in prices.

Market t, agent i, product j: u_ij = delta_j + mu_ij with d u_ij / d p_j = alpha_i, where
alpha_i = alpha + [Sigma nu_i + Pi y_i]_prices (the X1 and X2 'prices' coefficients).
Share derivatives: ds_j/dp_k = sum_i w_i alpha_i s_ij (1{j=k} - s_ik) = Lambda_jk - Gamma_jk,
Lambda = diag(sum_i w_i alpha_i s_ij), Gamma_jk = sum_i w_i alpha_i s_ij s_ik.
Bertrand-Nash first-order conditions with ownership O: s + (O * ds/dp') (p - c) = 0, so the
markups are eta = p - c = -(O * ds/dp')^{-1} s. Counterfactual prices solve the zeta-markup
fixed point p <- c + zeta(p), zeta = Lambda^{-1} (O * Gamma)' (p - c) - Lambda^{-1} s
(Morrow and Skerlos 2011), with Newton's method on p - c - zeta(p) as a fallback.
Everything here is a pure function of data and parameters, one market at a time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from blpdemand._checks import check_field_types
from blpdemand._types import ON_FAILURE, AnyArray, BoolArray, FloatArray, OnFailure, Status
from blpdemand.errors import ConvergenceError, DataError, SpecificationError

Method = Literal["zeta", "newton"]
Fallback = Literal["newton", "none"]
_METHODS = ("zeta", "newton")
_FALLBACKS = ("newton", "none")


@dataclass(frozen=True, slots=True)
class MarketDemand:
    """Demand in one market, linear in prices (and in any one characteristic).

    Attributes
    ----------
    market_id : the market's id.
    prices : (J,) prices at which ``utility`` is evaluated.
    utility : (J, I) u_ij = delta_j + mu_ij at ``prices``.
    alpha : (I,) d u_ij / d p_j for each agent.
    weights : (I,) integration weights w_i.
    """

    market_id: object
    prices: FloatArray
    utility: FloatArray
    alpha: FloatArray
    weights: FloatArray

    @property
    def J(self) -> int:
        return int(self.prices.shape[0])

    def utility_at(self, prices: FloatArray) -> FloatArray:
        """(J, I) u_ij(p') = u_ij(p) + alpha_i (p'_j - p_j)."""
        return self.utility + (np.asarray(prices) - self.prices)[:, None] * self.alpha[None, :]

    def probabilities(self, prices: FloatArray | None = None) -> FloatArray:
        """(J, I) logit choice probabilities s_ij at ``prices`` (default: the stored ones)."""
        return choice_probabilities(self.utility if prices is None else self.utility_at(prices))

    def shares(self, prices: FloatArray | None = None) -> FloatArray:
        """(J,) s_j = sum_i w_i s_ij."""
        return self.probabilities(prices) @ self.weights

    def subset(self, keep: BoolArray) -> MarketDemand:
        """The same market with only the products in ``keep`` (the rest leave the choice set)."""
        keep = np.asarray(keep, dtype=bool)
        return replace(self, prices=self.prices[keep], utility=self.utility[keep])


def choice_probabilities(utility: FloatArray) -> FloatArray:
    """(J, I) s_ij = exp(u_ij) / (1 + sum_k exp(u_ik)), shifted by the column maximum."""
    top = np.maximum(utility.max(axis=0, initial=0.0), 0.0)
    e = np.exp(utility - top)
    return e / (np.exp(-top) + e.sum(axis=0))  # type: ignore[no-any-return]


def log_sum(utility: FloatArray) -> FloatArray:
    """(I,) inclusive value log(1 + sum_j exp(u_ij)), overflow-safe."""
    top = np.maximum(utility.max(axis=0, initial=0.0), 0.0)
    return top + np.log(  # type: ignore[no-any-return]
        np.exp(-top) + np.exp(utility - top).sum(axis=0))


def share_jacobian(probabilities: FloatArray, weights: FloatArray,
                   coefficients: FloatArray) -> FloatArray:
    """(J, J) ds_j / dx_k = sum_i w_i a_i s_ij (1{j=k} - s_ik) for a characteristic x with
    agent-specific coefficient a_i = d u_ij / d x_j (prices: a_i = alpha_i)."""
    lam, gamma = lambda_gamma(probabilities, weights, coefficients)
    return np.diag(lam) - gamma


def block_share_jacobians(probabilities: FloatArray, weights: FloatArray,
                          coefficients: FloatArray) -> FloatArray:
    """``share_jacobian`` for a block of markets of equal size: (T_b, J, J) ds_j / dx_k =
    sum_i w_i a_i s_ij (1{j=k} - s_ik) from (T_b, J, I) probabilities and (T_b, I) weights and
    coefficients a_i, by one batched product (no loop over markets)."""
    weighted = probabilities * (weights * coefficients)[:, None, :]
    out: FloatArray = -np.matmul(weighted, probabilities.transpose(0, 2, 1))  # -Gamma
    j = np.arange(probabilities.shape[1])
    out[:, j, j] += weighted.sum(axis=2)  # + Lambda
    return out


def lambda_gamma(probabilities: FloatArray, weights: FloatArray,
                 alpha: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Lambda's diagonal (J,) and Gamma (J, J), ds/dp = Lambda - Gamma (Morrow-Skerlos 2011)."""
    weighted = probabilities * (weights * alpha)[None, :]
    return weighted.sum(axis=1), weighted @ probabilities.T


def ownership_matrix(firm_ids: AnyArray,
                     kappa: Mapping[tuple[object, object], float] | None = None) -> FloatArray:
    """(J, J) ownership O_jk = 1 if products j and k have the same owner, else 0.

    ``kappa`` adds partial ownership: O_jk = kappa[(f_j, f_k)] for the listed firm pairs (the
    weight firm f_j puts on the profits of k's owner; Salop and O'Brien 2000).
    """
    if kappa is not None and not isinstance(kappa, Mapping):
        raise SpecificationError(f"kappa must be a {{(firm, firm): weight}} dict, got {kappa!r}")
    firm_ids = np.asarray(firm_ids)
    owner: FloatArray = (firm_ids[:, None] == firm_ids[None, :]).astype(np.float64)
    for (f, g), value in (kappa or {}).items():
        owner[np.ix_(firm_ids == f, firm_ids == g)] = float(value)
    return owner


def markups(demand: MarketDemand, ownership: FloatArray,
            prices: FloatArray | None = None) -> FloatArray:
    """(J,) Bertrand-Nash markups eta = -(O * ds/dp')^{-1} s (Berry, Levinsohn and Pakes 1995).

    Raises DataError naming the market where O * ds/dp' is singular or eta is not finite.
    """
    prob = demand.probabilities(prices)
    jac = share_jacobian(prob, demand.weights, demand.alpha)
    shares = prob @ demand.weights
    with np.errstate(all="ignore"):
        try:
            eta: FloatArray = -np.linalg.solve(ownership * jac.T, shares).astype(np.float64)
        except np.linalg.LinAlgError:
            eta = np.full(demand.J, np.nan)
    if not np.all(np.isfinite(eta)):
        market = np.asarray(demand.market_id).tolist()
        raise DataError(
            f"market {market!r}: the Bertrand first-order conditions (O * ds/dp') eta = -s are "
            f"singular (smallest share {shares.min(initial=np.inf):.3g}, smallest |ds_j/dp_j| "
            f"{np.abs(np.diag(jac)).min(initial=np.inf):.3g}), so markups and marginal costs are "
            "not determined there; check the estimates (a failed contraction, extreme "
            "parameters, a price coefficient near zero) or the ownership matrix (a zero row)")
    return eta


def zeta_markups(demand: MarketDemand, ownership: FloatArray, prices: FloatArray,
                 costs: FloatArray) -> FloatArray:
    """(J,) zeta(p) = Lambda^{-1} (O * Gamma) (p - c) - Lambda^{-1} s (Morrow and Skerlos 2011).

    From the FOC s_j + sum_k O_jk (d s_k / d p_j) (p_k - c_k) = 0 with d s / d p = Lambda - Gamma
    (Gamma symmetric): O_jk, the weight product j's owner puts on product k's profit, multiplies
    Gamma_jk, so an asymmetric (partial) ownership enters untransposed, as in ``markups``.
    """
    prob = demand.probabilities(prices)
    lam, gamma = lambda_gamma(prob, demand.weights, demand.alpha)
    return ((ownership * gamma) @ (prices - costs) - prob @ demand.weights) / lam


@dataclass(frozen=True, slots=True, kw_only=True)
class PricingConfig:
    """How to solve for Bertrand-Nash prices.

    method : "zeta" (Morrow-Skerlos fixed point) or "newton" (on p - c - zeta(p)).
    fallback : "newton" (tried from the start prices when the method fails) or "none".
    tol : convergence when max_j |p_j^{k+1} - p_j^k| < tol.
    max_iterations : zeta iterations per market; newton_iterations : Newton steps per market.
    newton_step : relative finite-difference step of Newton's Jacobian.
    capped_iterations : zeta iterations (and no fallback) in a market where some consumer with
        positive weight has alpha_i >= 0: there profits rise without bound in price, so no
        Bertrand-Nash equilibrium need exist and the iteration is stopped early.
    on_failure : what callers do when a market fails: "report" (its status in the record, with
        NaN prices), "warn" (also a ConvergenceWarning) or "raise" (ConvergenceError).
    """

    method: Method = "zeta"
    fallback: Fallback = "newton"
    tol: float = 1e-12
    max_iterations: int = 10_000
    newton_iterations: int = 100
    newton_step: float = 1e-7
    capped_iterations: int = 100
    on_failure: OnFailure = "report"

    def __post_init__(self) -> None:
        check_field_types(self)
        choices = {"method": _METHODS, "fallback": _FALLBACKS, "on_failure": ON_FAILURE}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise SpecificationError(
                    f"PricingConfig {name}={getattr(self, name)!r}; valid: {list(valid)}")
        if not self.tol > 0:
            raise SpecificationError(f"PricingConfig tol must be positive, got {self.tol}")
        if min(self.max_iterations, self.newton_iterations, self.capped_iterations) < 1:
            raise SpecificationError("PricingConfig max_iterations, newton_iterations and "
                                     "capped_iterations must be >= 1")


@dataclass(frozen=True, slots=True)
class PriceSolution:
    """Equilibrium prices of one market: prices (J,), status, iterations, method used."""

    prices: FloatArray
    status: Status
    iterations: int
    method: str


def solve_prices(demand: MarketDemand, costs: FloatArray, ownership: FloatArray, *,
                 start: FloatArray | None = None,
                 config: PricingConfig | None = None) -> PriceSolution:
    """Bertrand-Nash prices of one market given marginal costs (J,) and ownership (J, J).

    Solves p = c + zeta(p) by fixed-point iteration (Morrow and Skerlos 2011); if that fails
    (iteration limit or non-finite values) and ``config.fallback == "newton"``, runs Newton's
    method on r(p) = p - c - zeta(p) from the start. Failed markets keep NaN prices.
    Where some consumer has alpha_i >= 0 (``nonnegative_alpha``) at most
    ``config.capped_iterations`` zeta iterations run, with no fallback; a failure there has
    status NONNEGATIVE_ALPHA.
    """
    config = PricingConfig() if config is None else config
    costs = np.asarray(costs, dtype=np.float64)
    p0 = demand.prices.copy() if start is None else np.asarray(start, dtype=np.float64)
    if demand.J == 0:
        return PriceSolution(prices=p0, status=Status.CONVERGED, iterations=0, method="none")
    if nonnegative_alpha(demand):
        capped = replace(config, max_iterations=min(config.max_iterations,
                                                    config.capped_iterations))
        prices, status, iterations = _zeta_iteration(demand, costs, ownership, p0, capped)
        if not status.converged:
            prices, status = np.full(demand.J, np.nan), Status.NONNEGATIVE_ALPHA
        return PriceSolution(prices=prices, status=status, iterations=iterations, method="zeta")
    first = _zeta_iteration if config.method == "zeta" else _newton
    prices, status, iterations = first(demand, costs, ownership, p0, config)
    if status.converged:
        return PriceSolution(prices=prices, status=status, iterations=iterations,
                             method=config.method)
    if config.fallback == "newton" and config.method != "newton":
        prices, fb_status, more = _newton(demand, costs, ownership, p0, config)
        if fb_status.converged:
            return PriceSolution(prices=prices, status=Status.CONVERGED_FALLBACK,
                                 iterations=iterations + more, method="newton")
        iterations += more
    return PriceSolution(prices=np.full(demand.J, np.nan), status=status, iterations=iterations,
                         method=config.method)


def nonnegative_alpha(demand: MarketDemand) -> bool:
    """Whether some consumer i with w_i > 0 has alpha_i = d u_ij / d p_j >= 0.

    Firm j's profit (p_j - c_j) s_j >= (p_j - c_j) w_i s_ij then grows without bound in p_j
    (s_ij does not fall), so no Bertrand-Nash equilibrium need exist.
    """
    return bool(np.any((demand.alpha >= 0) & (demand.weights > 0)))


_ZETA_STATUS = (Status.CONVERGED, Status.MAX_ITERATIONS, Status.NONFINITE)


def _zeta_iteration(demand: MarketDemand, costs: FloatArray, ownership: FloatArray,
                    prices: FloatArray,
                    config: PricingConfig) -> tuple[FloatArray, Status, int]:
    """p^{k+1} = c + zeta(p^k) until max |p^{k+1} - p^k| < tol: compiled (``pricing_compiled``);
    ``zeta_markups`` is the numpy reference of the same step."""
    from blpdemand.model.pricing_compiled import zeta_fixed_point

    found, code, iterations = zeta_fixed_point(
        demand.utility, demand.alpha, demand.weights, demand.prices, prices, costs, ownership,
        config.tol, config.max_iterations)
    return found, _ZETA_STATUS[code], iterations


def _zeta_iteration_numpy(demand: MarketDemand, costs: FloatArray, ownership: FloatArray,
                          prices: FloatArray, config: PricingConfig
                          ) -> tuple[FloatArray, Status, int]:
    """The same iteration in numpy (the reference the compiled one is tested against)."""
    with np.errstate(all="ignore"):
        for iteration in range(1, config.max_iterations + 1):
            new = costs + zeta_markups(demand, ownership, prices, costs)
            if not np.all(np.isfinite(new)):
                return prices, Status.NONFINITE, iteration
            change = np.max(np.abs(new - prices))
            prices = new
            if change < config.tol:
                return prices, Status.CONVERGED, iteration
    return prices, Status.MAX_ITERATIONS, config.max_iterations


def _newton(demand: MarketDemand, costs: FloatArray, ownership: FloatArray,
            prices: FloatArray, config: PricingConfig) -> tuple[FloatArray, Status, int]:
    """Newton with a forward-difference Jacobian and backtracking on max |r(p)|."""
    def residual(p: FloatArray) -> FloatArray:
        return p - costs - zeta_markups(demand, ownership, p, costs)

    J = demand.J
    with np.errstate(all="ignore"):
        r = residual(prices)
        for iteration in range(1, config.newton_iterations + 1):
            if not np.all(np.isfinite(r)):
                return prices, Status.NONFINITE, iteration
            h = config.newton_step * np.maximum(np.abs(prices), 1.0)
            jac = np.empty((J, J))
            for k in range(J):
                step = prices.copy()
                step[k] += h[k]
                jac[:, k] = (residual(step) - r) / h[k]
            try:
                direction = -np.linalg.solve(jac, r)
            except np.linalg.LinAlgError:
                return prices, Status.NONFINITE, iteration
            norm, size = np.max(np.abs(r)), 1.0
            while size > 1e-4:
                new = prices + size * direction
                new_r = residual(new)
                if np.all(np.isfinite(new_r)) and np.max(np.abs(new_r)) < norm:
                    break
                size /= 2
            change = np.max(np.abs(new - prices))
            prices, r = new, new_r
            if change < config.tol or np.max(np.abs(r)) < config.tol:
                status = (Status.CONVERGED if np.all(np.isfinite(prices))
                          else Status.NONFINITE)
                return prices, status, iteration
    return prices, Status.MAX_ITERATIONS, config.newton_iterations


def solve_block_prices(utility: FloatArray, alpha: FloatArray, weights: FloatArray,
                       base: FloatArray, costs: FloatArray, ownership: FloatArray, *,
                       available: BoolArray | None = None, start: FloatArray | None = None,
                       market_ids: AnyArray | None = None,
                       config: PricingConfig | None = None
                       ) -> tuple[FloatArray, list[PriceSolution]]:
    """Bertrand-Nash prices of a block of T_b markets of equal size, with the rules of
    ``solve_prices`` in each market, on one call of the compiled zeta fixed point.

    utility (T_b, J, I) at prices ``base`` (T_b, J); alpha, weights (T_b, I); costs (T_b, J);
    ownership (T_b, J, J); available (T_b, J) bool, the products in the choice set (default
    all); start (T_b, J) (default ``base``). Returns (T_b, J) prices (NaN for unavailable
    products and failed markets) and one PriceSolution per market (prices of its available
    products). Newton's method (``config.method`` or the fallback) runs market by market.
    """
    from blpdemand.model.pricing_compiled import zeta_fixed_points

    config = PricingConfig() if config is None else config
    T, J, _ = utility.shape
    available = np.ones((T, J), dtype=bool) if available is None else available
    start = base if start is None else start
    ids = np.arange(T) if market_ids is None else market_ids
    capped = np.any((alpha >= 0) & (weights > 0), axis=1)
    prices = np.full((T, J), np.nan)
    if config.method == "newton":
        solutions = []
        for t in range(T):
            keep = available[t]
            demand = MarketDemand(market_id=ids[t], prices=base[t][keep],
                                  utility=utility[t][keep], alpha=alpha[t], weights=weights[t])
            solution = solve_prices(demand, costs[t][keep], ownership[t][np.ix_(keep, keep)],
                                    start=start[t][keep], config=config)
            prices[t, keep] = solution.prices
            solutions.append(solution)
        return prices, solutions
    limits = np.where(capped, min(config.max_iterations, config.capped_iterations),
                      config.max_iterations).astype(np.int64)
    found, codes, iterations = zeta_fixed_points(utility, alpha, weights, base, start, costs,
                                                 ownership, available, config.tol, limits)
    solutions = []
    done = codes == 0
    prices[done] = np.where(available[done], found[done], np.nan)
    empty = (~np.any(available, axis=1)).tolist()
    for t, (count, code) in enumerate(zip(iterations.tolist(), codes.tolist())):
        keep = available[t]
        if empty[t]:
            solutions.append(PriceSolution(prices=start[t][keep], status=Status.CONVERGED,
                                           iterations=0, method="none"))
            continue
        if code == 0:
            solutions.append(PriceSolution(prices=prices[t][keep], status=Status.CONVERGED,
                                           iterations=count, method="zeta"))
            continue
        status = Status.NONNEGATIVE_ALPHA if capped[t] else _ZETA_STATUS[code]
        if not capped[t] and config.fallback == "newton":
            demand = MarketDemand(market_id=ids[t], prices=base[t][keep],
                                  utility=utility[t][keep], alpha=alpha[t], weights=weights[t])
            values, fb_status, more = _newton(demand, costs[t][keep],
                                              ownership[t][np.ix_(keep, keep)],
                                              np.array(start[t][keep]), config)
            if fb_status.converged:
                prices[t, keep] = values
                solutions.append(PriceSolution(prices=values,
                                               status=Status.CONVERGED_FALLBACK,
                                               iterations=count + more, method="newton"))
                continue
            count += more
        solutions.append(PriceSolution(prices=np.full(int(keep.sum()), np.nan), status=status,
                                       iterations=count, method="zeta"))
    return prices, solutions


def bertrand_prices(utility: FloatArray, alpha: FloatArray, weights: FloatArray,
                    costs: FloatArray, firm_ids: AnyArray, *,
                    config: PricingConfig | None = None) -> tuple[FloatArray, list[PriceSolution]]:
    """Bertrand-Nash prices of T markets with J products each (e.g. simulated markets).

    Parameters
    ----------
    utility : (T, J, I) utility net of price, u_ij - alpha_i p_j; alpha : (T, I) price
        coefficients alpha_i (or (T, 1) for plain logit); weights : (T, I) (or (T, 1)).
    costs : (T, J) marginal costs; firm_ids : (T, J) owners.

    Returns (T, J) prices (NaN rows in markets that failed) and one PriceSolution per market.
    Iteration starts at c - 1 / mean_i(alpha_i), the single-product logit markup at s -> 0.
    """
    utility = np.asarray(utility, dtype=np.float64)
    T, J, _ = utility.shape
    alpha = np.asarray(alpha, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    costs = np.asarray(costs, dtype=np.float64)
    for t in np.flatnonzero(~np.all(alpha < 0, axis=1)).tolist()[:1]:
        raise SpecificationError(
            f"market {t}: price coefficients alpha_i must be negative for Bertrand pricing "
            f"(max {alpha[t].max():.4g}); lower sigma on prices or make alpha more negative")
    mean_alpha = np.sum(weights * alpha, axis=1) / weights.sum(axis=1)
    start = costs - 1.0 / mean_alpha[:, None]
    firm_ids = np.asarray(firm_ids)
    ownership = (firm_ids[:, :, None] == firm_ids[:, None, :]).astype(np.float64)
    return solve_block_prices(utility, alpha, weights, np.zeros((T, J)), costs, ownership,
                              start=start, config=config)


def simulated_bertrand(mean_utility: FloatArray, alpha: float, costs: FloatArray,
                       firm_ids: AnyArray, *, characteristics: FloatArray | None = None,
                       sigma: FloatArray | None = None, nodes: FloatArray | None = None,
                       price_column: int | None = None,
                       config: PricingConfig | None = None) -> tuple[FloatArray, FloatArray]:
    """Bertrand-Nash prices and shares of simulated markets (used by ``bd.simulate``).

    u_ij = m_j + alpha_i p_j + sum_k sigma_k v_jk nu_ik, alpha_i = alpha + sigma_p nu_ip.

    Parameters
    ----------
    mean_utility : (T, J) m_j, mean utility net of price (x' beta + xi).
    alpha : mean price coefficient. costs : (T, J) marginal costs. firm_ids : (T, J).
    characteristics : (T, J, K) v with random coefficients (the price column is ignored),
        sigma : (K,) their standard deviations, nodes : (T, I, K) draws (equal weights),
        price_column : position of prices among the K (None if prices have no random coefficient).
        All None for plain logit.

    Returns (T, J) prices and shares. Raises ConvergenceError naming the markets that fail.
    """
    mean_utility = np.asarray(mean_utility, dtype=np.float64)
    T = mean_utility.shape[0]
    if characteristics is None or sigma is None or nodes is None:
        utility = mean_utility[:, :, None]
        alpha_i = np.full((T, 1), float(alpha))
    else:
        v = np.array(characteristics, dtype=np.float64)
        if price_column is not None:
            v[:, :, price_column] = 0.0
        utility = mean_utility[:, :, None] + np.einsum("tjk,tik->tji", v * sigma, nodes)
        alpha_i = float(alpha) + (sigma[price_column] * nodes[:, :, price_column]
                                  if price_column is not None else np.zeros(nodes.shape[:2]))
    weights = np.full(alpha_i.shape, 1.0 / alpha_i.shape[1])
    prices, solutions = bertrand_prices(utility, alpha_i, weights, costs, firm_ids, config=config)
    failed = [t for t, s in enumerate(solutions) if not s.status.converged]
    if failed:
        raise ConvergenceError(
            f"Bertrand-Nash prices not found in simulated market(s) {failed[:10]} "
            f"({solutions[failed[0]].status.value}); lower sigma on prices or costs' spread")
    probabilities = choice_probabilities_3d(utility + prices[:, :, None] * alpha_i[:, None, :])
    return prices, np.einsum("tji,ti->tj", probabilities, weights)


def choice_probabilities_3d(utility: FloatArray) -> FloatArray:
    """(T, J, I) logit probabilities along axis 1, shifted by the maximum."""
    top = np.maximum(utility.max(axis=1, keepdims=True), 0.0)
    e = np.exp(utility - top)
    out: FloatArray = e / (np.exp(-top) + e.sum(axis=1, keepdims=True))
    return out
