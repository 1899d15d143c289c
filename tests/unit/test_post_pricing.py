"""Bertrand-Nash pricing kernels on a random-coefficients market, checked by finite differences.

References: share derivatives vs central differences of simulated shares (rtol 1e-6); the
equilibrium vs the firms' profit gradients by central differences (zero to 1e-8); markups at the
equilibrium vs p - c (rtol 1e-9); zeta iteration vs Newton (rtol 1e-9).
"""

from __future__ import annotations

import numpy as np
import pytest

from blpdemand.errors import SpecificationError
from blpdemand.model.pricing import (
    MarketDemand,
    PricingConfig,
    bertrand_prices,
    markups,
    ownership_matrix,
    share_jacobian,
    simulated_bertrand,
    solve_prices,
)

J, I = 6, 300
FIRMS = np.array([0, 0, 1, 1, 2, 3])


def _market(rng: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    gen = np.random.default_rng(rng)
    nu = gen.standard_normal(I)
    alpha = -2.0 + 0.4 * nu                      # random price coefficient, all negative here
    utility = 1.0 + gen.normal(size=(J, 1)) + 0.8 * gen.normal(size=(J, 1)) * gen.standard_normal(I)
    weights = np.full(I, 1.0 / I)
    costs = gen.uniform(0.5, 1.0, J)
    assert np.all(alpha < 0)
    return utility, alpha, weights, costs


def _demand(prices: np.ndarray) -> MarketDemand:
    """The market's demand stored at ``prices`` (utility u_ij = u0_ij + alpha_i p_j)."""
    utility, alpha, weights, _ = _market()
    return MarketDemand(market_id=0, prices=prices, utility=utility + prices[:, None] * alpha[None, :],
                        alpha=alpha, weights=weights)


def test_share_jacobian_matches_finite_differences() -> None:
    p = np.linspace(1.0, 2.0, J)
    demand = _demand(p)
    analytic = share_jacobian(demand.probabilities(), demand.weights, demand.alpha)
    h = 1e-6
    numeric = np.column_stack([(demand.shares(p + h * e) - demand.shares(p - h * e)) / (2 * h)
                               for e in np.eye(J)])
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-10)


def test_equilibrium_zeroes_profit_gradients() -> None:
    utility, alpha, weights, costs = _market()
    prices, solutions = bertrand_prices(utility[None], alpha[None], weights[None], costs[None],
                                        FIRMS[None])
    assert solutions[0].status.converged
    p = prices[0]
    demand = _demand(np.zeros(J))
    h = 1e-6
    for j in range(J):
        same = FIRMS == FIRMS[j]
        up, down = p.copy(), p.copy()
        up[j] += h
        down[j] -= h
        gradient = (((up - costs) * demand.shares(up))[same].sum()
                    - ((down - costs) * demand.shares(down))[same].sum()) / (2 * h)
        assert abs(gradient) < 1e-8
    at_p = _demand(p)
    np.testing.assert_allclose(markups(at_p, ownership_matrix(FIRMS)), p - costs, rtol=1e-9)


def test_newton_equals_zeta_and_merger_raises_prices() -> None:
    _, _, _, costs = _market()
    demand = _demand(np.full(J, 1.5))
    owner = ownership_matrix(FIRMS)
    zeta = solve_prices(demand, costs, owner)
    newton = solve_prices(demand, costs, owner, config=PricingConfig(method="newton"))
    assert zeta.status.converged and newton.status.converged and newton.method == "newton"
    np.testing.assert_allclose(newton.prices, zeta.prices, rtol=1e-9)
    merged = solve_prices(demand, costs, ownership_matrix(np.where(FIRMS == 3, 2, FIRMS)))
    assert np.all(merged.prices[4:] > zeta.prices[4:])


def test_partial_ownership_matrix() -> None:
    # kappa = 0.5 from firm 2 to firm 3 only: a hand-built matrix.
    owner = ownership_matrix(FIRMS, {(2, 3): 0.5})
    expected = (FIRMS[:, None] == FIRMS[None, :]).astype(float)
    expected[4, 5] = 0.5
    np.testing.assert_array_equal(owner, expected)


def test_upward_sloping_demand_is_refused() -> None:
    utility, alpha, weights, costs = _market()
    with pytest.raises(SpecificationError, match="negative"):
        bertrand_prices(utility[None], -alpha[None], weights[None], costs[None], FIRMS[None])


def test_simulated_bertrand_logit_closed_form() -> None:
    # Plain logit: p - c = -1 / (alpha (1 - s_f)) for every product of firm f (Nevo 2001).
    gen = np.random.default_rng(4)
    T, firms = 3, np.array([[0, 0, 1, 2]] * 3)
    mean, costs = gen.normal(size=(T, 4)), gen.uniform(1.0, 2.0, (T, 4))
    prices, shares = simulated_bertrand(mean, -1.5, costs, firms)
    for t in range(T):
        firm_share = np.array([shares[t][firms[t] == f].sum() for f in firms[t]])
        np.testing.assert_allclose(prices[t] - costs[t], 1 / (1.5 * (1 - firm_share)), rtol=1e-9)
        u = mean[t] - 1.5 * prices[t]
        np.testing.assert_allclose(shares[t], np.exp(u) / (1 + np.exp(u).sum()), rtol=1e-12)


def test_simulated_bertrand_random_price_coefficient() -> None:
    # With sigma on prices: the equilibrium of simulated_bertrand equals bertrand_prices on the
    # hand-built utilities u_ij = m_j + v_j s_v nu_iv and alpha_i = alpha + s_p nu_ip.
    gen = np.random.default_rng(6)
    T, J, I = 2, 4, 50
    mean, costs = gen.normal(size=(T, J)), gen.uniform(1.0, 2.0, (T, J))
    v = np.stack([gen.normal(size=(T, J)), np.zeros((T, J))], axis=-1)
    nodes = gen.standard_normal((T, I, 2))
    sigma = np.array([0.7, 0.1])
    firms = np.tile([0, 1, 1, 2], (T, 1))
    prices, _ = simulated_bertrand(mean, -2.0, costs, firms, characteristics=v, sigma=sigma,
                                   nodes=nodes, price_column=1)
    utility = mean[:, :, None] + 0.7 * v[:, :, :1] * nodes[:, None, :, 0]
    expected, _ = bertrand_prices(utility, -2.0 + 0.1 * nodes[:, :, 1], np.full((T, I), 1 / I),
                                  costs, firms)
    np.testing.assert_allclose(prices, expected, rtol=1e-10)


def test_counterfactual_prices_where_consumer_surplus_is_undefined() -> None:
    # Reference: observed prices are the Bertrand equilibrium at the costs they imply (the
    # first-order conditions hold there by construction). With a random price coefficient of
    # s.d. 1.2 around -1, 17-29% of agents have alpha_i >= 0: consumer surplus is undefined,
    # but prices are not. compute_prices used to raise on the surplus and return no prices;
    # it must return the observed prices (1e-10), NaN surplus there, and one warning naming
    # the markets, while compute_consumer_surplus itself still refuses.
    import warnings

    import blpdemand as bd
    from blpdemand.errors import BLPDemandWarning, SpecificationError

    sim = bd.simulate(markets=8, products=4, sigma={"x1": 0.5, "prices": 1.2}, draws=100, rng=3)
    fitted = bd.fitted_from_truth(sim)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cf = bd.compute_prices(fitted)
    assert cf.converged
    np.testing.assert_allclose(cf.prices, sim.products["prices"].to_numpy(), rtol=1e-10)
    assert np.all(np.isnan(cf.consumer_surplus_change))
    messages = [str(w.message) for w in caught if issubclass(w.category, BLPDemandWarning)]
    assert len(messages) == 1 and "consumer surplus is not defined in 8 market(s)" in messages[0]
    with pytest.raises(SpecificationError, match="non-negative price coefficient"):
        bd.compute_consumer_surplus(fitted)
