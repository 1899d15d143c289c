"""Synthetic markets from known parameters, with endogenous prices, reproducible from ``rng``.

delta_jt = beta_0 + x_jt' beta + alpha p_jt + xi_jt,
mu_ijt = sum_k sigma_k v_jtk nu_itk   (v: the characteristics with random coefficients),
s_jt = (1/I) sum_i exp(delta_jt + mu_ijt) / (1 + sum_k exp(delta_kt + mu_ikt)).

Shares are computed exactly from the utilities given the I fixed draws nu_it, which are
returned as agent data: a BLP estimation with those agents recovers the truth up to sampling
error in xi (there is no simulation error). Without ``sigma`` the shares are closed-form logit.

Prices follow one small rule, ``price_rule``, so that a Bertrand-Nash pricing rule can replace
it: log p_jt = gamma_0 + w_jt' gamma + rho xi_jt + eta_jt, positive, and correlated with xi
(rho > 0 makes OLS estimates of alpha biased toward zero). The cost shifters w are valid
excluded instruments (independent of xi). With ``pricing="bertrand"`` the rule gives marginal
costs instead: log c_jt = gamma_0 + w_jt' gamma + omega_jt with omega = rho xi + eta correlated
with xi, the supply side of a joint estimation (X3 = 1 + w, log costs; ``supply``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from blpdemand._types import FloatArray, as_generator
from blpdemand.errors import SpecificationError

DEFAULT_BETA: Mapping[str, float] = {"1": -0.5, "x1": 1.0, "x2": -0.5}


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatedMarkets:
    """Simulated product (and agent) data with the true parameters.

    Attributes
    ----------
    products : DataFrame with market_ids, product_ids, firm_ids, shares, prices, the
        characteristics (x1, ...), the cost shifters (w1, ...) and the true xi.
    agents : DataFrame with market_ids, weights, nodes0.. (nodes{k} is the draw of the k-th
        entry of ``truth["sigma"]``), or None for a pure logit.
    truth : {"beta": {name: value} (intercept "1"), "alpha", "sigma": {name: sd},
        "gamma0", "gamma": {name: value}, "rho", "xi_sd", "eta_sd"}.
    linear : formula of X1 that matches the truth, e.g. "1 + prices + x1 + x2".
    nonlinear : formula of X2 (random coefficients, in node order), or None.
    instruments : names of the excluded instruments (the cost shifters).
    supply : with ``pricing="bertrand"``, the X3 formula of the true log marginal costs
        ("1 + w1 + w2"; columns ``costs`` and ``omega`` hold c and omega), else None.
    """

    products: pd.DataFrame = field(repr=False)
    agents: pd.DataFrame | None = field(repr=False)
    truth: dict[str, Any]
    linear: str
    nonlinear: str | None
    instruments: tuple[str, ...]
    supply: str | None = None

    @property
    def sigma_matrix(self) -> FloatArray:
        """(K2, K2) diagonal Sigma in the order of ``nonlinear`` (empty without sigma)."""
        return np.diag(np.array(list(self.truth["sigma"].values()), dtype=np.float64))


def price_rule(costs: FloatArray, xi: FloatArray, eta: FloatArray, *, gamma0: float,
               rho: float) -> FloatArray:
    """Posted prices p = exp(gamma_0 + c + rho xi + eta), c = w' gamma: positive, endogenous.

    Shapes: all (T, J). The one place that decides prices; a Bertrand-Nash rule can replace it.
    """
    out: FloatArray = np.exp(gamma0 + costs + rho * xi + eta)
    return out


def logit_choice_probabilities(utilities: FloatArray) -> FloatArray:
    """exp(u_j) / (1 + sum_k exp(u_k)) along axis 1 of (T, J, ...), stable (shift by max)."""
    shift = np.maximum(utilities.max(axis=1, keepdims=True), 0.0)
    numerator = np.exp(utilities - shift)
    out: FloatArray = numerator / (np.exp(-shift) + numerator.sum(axis=1, keepdims=True))
    return out


def simulate(*, markets: int = 50, products: int = 10, firms: int = 3,
             beta: Mapping[str, float] | None = None, alpha: float = -1.0,
             sigma: Mapping[str, float] | None = None, cost_shifters: int = 2,
             gamma: Sequence[float] | None = None, gamma0: float = 0.0, rho: float = 0.5,
             xi_sd: float = 0.5, eta_sd: float = 0.2, draws: int = 2000,
             rng: int | np.random.Generator | None = 0,
             pricing: str = "rule", lognormal: bool = False, nests: int = 0,
             nesting_rho: float = 0.0) -> SimulatedMarkets:
    """Simulate ``markets`` markets of ``products`` products each from known parameters.

    Parameters
    ----------
    markets, products, firms : T markets, J products per market (the same J product ids in
        every market), products owned by firms round-robin (product j -> firm j mod firms).
    beta : mean utility coefficients by name; "1" is the intercept, every other name becomes
        a standard-normal characteristic column. Default {"1": -0.5, "x1": 1, "x2": -0.5}.
    alpha : price coefficient (negative).
    sigma : standard deviations of random coefficients by name ("prices", "1" or a
        characteristic), e.g. {"prices": 0.3, "x1": 1.0}; None for the pure logit.
    cost_shifters, gamma, gamma0, rho, eta_sd : the price rule (see ``price_rule``); the cost
        shifters w1.. are U(0, 1) and gamma defaults to 1 for each.
    xi_sd : standard deviation of the demand unobservable xi ~ N(0, xi_sd^2).
    draws : I standard-normal draws per market integrating the random coefficients.
    rng : seed or Generator; the same seed gives the same data.
    pricing : "rule" (prices from ``price_rule``) or "bertrand": ``price_rule`` gives marginal
        costs (column ``costs``) and prices are the Bertrand-Nash equilibrium of the true demand
        with the firms' ownership (``model.pricing.simulated_bertrand``, Morrow-Skerlos zeta).
    lognormal : the price coefficient is lognormal, alpha_i = -exp(log(-alpha) + sigma_p nu_i)
        (median alpha; needs sigma["prices"] and pricing "rule"); ``linear`` then leaves prices
        out, and the truth's location log(-alpha) is the Pi element of a constant demographic
        (``Problem(..., demographics="1", lognormal=["prices"])``).
    nests, nesting_rho : with nests > 0, product j falls in nest j mod nests (column
        ``nesting_ids``)
        and shares are the (random-coefficients) nested logit's with a common rho in [0, 1)
        (``model.rcnl``; needs pricing "rule").

    Examples
    --------
    >>> sim = simulate(markets=2, products=3)
    >>> sim.products.shape[0], sim.linear
    (6, '1 + prices + x1 + x2')
    """
    beta = dict(DEFAULT_BETA if beta is None else beta)
    sigma = None if sigma is None else dict(sigma)
    _check(markets, products, firms, alpha, cost_shifters, draws, xi_sd, eta_sd, sigma)
    if nests and (not isinstance(nests, int) or nests < 1 or not 0 <= nesting_rho < 1
                  or pricing != "rule"):
        raise SpecificationError(f"nests={nests!r}, nesting_rho={nesting_rho!r}: give a positive "
                                 "number of nests, 0 <= nesting_rho < 1 and pricing='rule'")
    if lognormal and (not sigma or "prices" not in sigma or pricing != "rule"):
        raise SpecificationError("lognormal=True draws a lognormal price coefficient: give "
                                 "sigma={'prices': ...} and pricing='rule'")
    if pricing not in ("rule", "bertrand"):
        raise SpecificationError(f"pricing={pricing!r}; valid: ['rule', 'bertrand']")
    gen = as_generator(rng)
    T, J = int(markets), int(products)
    names = [n for n in beta if n != "1"]
    for n in names:
        supply_columns = ("costs", "omega") if pricing == "bertrand" else ()
        if n in ("prices", "shares", "market_ids", "product_ids", "firm_ids", "xi") or \
                n.startswith("w") and n[1:].isdigit() or n in supply_columns:
            raise SpecificationError(f"beta name {n!r} clashes with a reserved or cost-shifter "
                                     "column (or 'costs'/'omega', the marginal costs of pricing="
                                     "'bertrand'); use names like 'x1', 'size'")
    x = gen.standard_normal((T, J, len(names)))
    w = gen.uniform(size=(T, J, cost_shifters))
    gamma_arr = np.ones(cost_shifters) if gamma is None else np.asarray(gamma, dtype=np.float64)
    if gamma_arr.shape != (cost_shifters,):
        raise SpecificationError(f"gamma has {gamma_arr.size} values for {cost_shifters} cost "
                                 "shifters; give one per cost shifter")
    xi = xi_sd * gen.standard_normal((T, J))
    eta = eta_sd * gen.standard_normal((T, J))
    prices = price_rule(w @ gamma_arr, xi, eta, gamma0=gamma0, rho=rho)
    delta = beta.get("1", 0.0) + x @ np.array([beta[n] for n in names]) + xi
    if not lognormal:
        delta += alpha * prices

    columns: dict[str, FloatArray] = {"prices": prices}
    columns.update({n: x[:, :, k] for k, n in enumerate(names)})
    agents = None
    if sigma:
        order = sorted(sigma, key=lambda n: n != "1")  # the intercept first, as formulas put it
        sigma = {n: float(sigma[n]) for n in order}
        for n in order:
            if n != "1" and n not in columns:
                raise SpecificationError(f"sigma names {n!r}, which is neither '1', 'prices' nor "
                                         f"a characteristic in beta {names}")
        V = np.stack([np.ones((T, J)) if n == "1" else columns[n] for n in order], axis=-1)
        nodes = gen.standard_normal((T, draws, len(order)))
        coefficients = nodes * np.array(list(sigma.values()))  # (T, I, K)
        if lognormal:
            k = order.index("prices")
            coefficients[:, :, k] = -np.exp(np.log(-alpha) + coefficients[:, :, k])
        mu = np.einsum("tjk,tik->tji", V, coefficients)
        shares = _probabilities(delta[:, :, None] + mu, nests, nesting_rho).mean(axis=2)
        agents = pd.DataFrame({"market_ids": np.repeat(np.arange(T), draws),
                               "weights": np.full(T * draws, 1.0 / draws)})
        for k in range(len(order)):
            agents[f"nodes{k}"] = nodes[:, :, k].reshape(-1)
    else:
        shares = _probabilities(delta[:, :, None], nests, nesting_rho)[:, :, 0]

    # --- Bertrand-Nash prices (issue 5): price_rule's output becomes marginal costs. ---
    costs = prices
    if pricing == "bertrand":
        from blpdemand.model.pricing import simulated_bertrand

        random = bool(sigma)
        prices, shares = simulated_bertrand(
            delta - alpha * costs, alpha, costs, np.tile(np.arange(J) % firms, (T, 1)),
            characteristics=V if random else None,
            sigma=np.array(list(sigma.values())) if random and sigma else None,
            nodes=nodes if random else None,
            price_column=order.index("prices") if random and "prices" in order else None)
    # --- end of Bertrand-Nash prices ---

    frame = pd.DataFrame({"market_ids": np.repeat(np.arange(T), J),
                          "product_ids": np.tile(np.arange(J), T),
                          "firm_ids": np.tile(np.arange(J) % firms, T),
                          "shares": shares.reshape(-1), "prices": prices.reshape(-1)})
    for k, n in enumerate(names):
        frame[n] = x[:, :, k].reshape(-1)
    instruments = tuple(f"w{k + 1}" for k in range(cost_shifters))
    for k, n in enumerate(instruments):
        frame[n] = w[:, :, k].reshape(-1)
    frame["xi"] = xi.reshape(-1)
    if nests:
        frame["nesting_ids"] = frame["product_ids"] % nests
    if pricing == "bertrand":
        frame["costs"] = costs.reshape(-1)
        frame["omega"] = (rho * xi + eta).reshape(-1)  # log c = gamma_0 + w' gamma + omega
    truth: dict[str, Any] = {
        "beta": beta, "alpha": float(alpha), "sigma": sigma or {}, "gamma0": float(gamma0),
        "gamma": dict(zip(instruments, map(float, gamma_arr))), "rho": float(rho),
        "xi_sd": float(xi_sd), "eta_sd": float(eta_sd),
        "pricing": pricing, "lognormal": bool(lognormal), "nests": int(nests),
        "nesting_rho": float(nesting_rho)}
    linear = " + ".join((["1"] if "1" in beta else ["0"]) + ([] if lognormal else ["prices"])
                        + names)
    nonlinear = None if not sigma else " + ".join(
        (["1"] if "1" in sigma else ["0"]) + [n for n in sigma if n != "1"])
    supply = " + ".join(["1", *instruments]) if pricing == "bertrand" else None
    return SimulatedMarkets(products=frame, agents=agents, truth=truth, linear=linear,
                            nonlinear=nonlinear, instruments=instruments, supply=supply)


def _probabilities(utilities: FloatArray, nests: int, rho: float) -> FloatArray:
    """(T, J, I) choice probabilities: the logit's, or with nests > 0 the nested logit's with
    product j in nest j mod nests (``model.rcnl``)."""
    if not nests:
        return logit_choice_probabilities(utilities)
    from blpdemand.model.rcnl import nest_membership, nested_probabilities

    T, J, _ = utilities.shape
    codes = np.tile(np.arange(J) % nests, (T, 1))
    onehot = nest_membership(codes, nests, None)
    return nested_probabilities(utilities, onehot, np.full(nests, 1.0 - rho)).probabilities


def _check(markets: int, products: int, firms: int, alpha: float, cost_shifters: int,
           draws: int, xi_sd: float, eta_sd: float, sigma: dict[str, float] | None) -> None:
    for name, value, low in (("markets", markets, 1), ("products", products, 1),
                             ("firms", firms, 1), ("cost_shifters", cost_shifters, 0),
                             ("draws", draws, 1)):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise SpecificationError(f"{name}={value!r} must be an integer >= {low}")
    if firms > products:
        raise SpecificationError(f"firms={firms} exceeds products={products} per market")
    if not np.isfinite(alpha) or alpha >= 0:
        raise SpecificationError(f"alpha={alpha!r} must be negative (demand slopes down)")
    if xi_sd < 0 or eta_sd < 0:
        raise SpecificationError("xi_sd and eta_sd must be non-negative")
    for n, v in (sigma or {}).items():
        if not np.isfinite(v) or v < 0:
            raise SpecificationError(f"sigma[{n!r}]={v!r} must be a non-negative number")
