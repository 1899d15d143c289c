"""Cost pass-through dp/dc' (results/passthrough.py) against independent references.

- The demand curvature term against the brute-force second-derivative tensor, and that
  tensor against central differences of the analytic share Jacobian.
- The whole matrix against central differences of equilibrium prices solved by
  ``compute_prices`` at perturbed costs (random coefficients, several firms, unequal markets).
- Closed forms: a logit multi-product monopolist passes through I - 1 s' (prices move by
  own cost change less the common markup's fall, s_l); perfect competition (O = 0) the
  identity.
- Nested demand (differenced first-order conditions): the closed form where nests vanish
  (lambda = 1), and differenced equilibrium prices for the RCNL and the nested logit.
Tolerances: the closed forms and the tensor identity are exact algebra (some ulps of the
largest entry); the differenced prices carry O(h^2) truncation (seen: 2.6e-5, 2.6e-7, 5e-9 of
the largest entry at h = 1e-3, 1e-4, 1e-5) and the price solver's tolerance over h (1e-14 /
1e-5), so 1e-7 of the largest entry at h = 1e-5.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import EconomicWarning, WeakInstrumentsWarning
from blpdemand.model.fitted import FittedDemand, logit_layout
from blpdemand.model.nested_demand import NestedMarketDemand
from blpdemand.model.pricing import (
    MarketDemand,
    PricingConfig,
    block_share_jacobians,
    choice_probabilities_3d,
    markups,
)
from blpdemand.results.costs import compute_costs
from blpdemand.results.counterfactual import compute_prices
from blpdemand.results.passthrough import (
    compute_passthrough,
    curvature_term,
    nested_passthrough,
    passthrough_blocks,
)


def _block(rng: np.random.Generator, T: int = 3, J: int = 5, I: int = 9):
    utility = rng.normal(-1.0, 1.0, (T, J, I))
    weights = rng.uniform(0.5, 1.5, (T, I))
    weights /= weights.sum(axis=1, keepdims=True)
    alpha = -rng.uniform(0.5, 3.0, (T, I))
    firms = rng.integers(0, 3, (T, J))
    ownership = (firms[:, :, None] == firms[:, None, :]).astype(float)
    margins = rng.uniform(0.2, 1.0, (T, J))
    return utility, weights, alpha, ownership, margins


def _tensor(s: np.ndarray, w: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """(J, J, J) d^2 s_k / dp_j dp_l of one market, term by term."""
    J = s.shape[0]
    eye = np.eye(J)
    a = w * alpha**2
    H = np.zeros((J, J, J))
    for k in range(J):
        for j in range(J):
            for m in range(J):
                H[k, j, m] = np.sum(a * (s[k] * (eye[k, m] - s[m]) * (eye[k, j] - s[j])
                                         - s[k] * s[j] * (eye[j, m] - s[m])))
    return H


def test_curvature_term_equals_the_brute_force_tensor() -> None:
    utility, weights, alpha, ownership, margins = _block(np.random.default_rng(0))
    probabilities = choice_probabilities_3d(utility)
    R = curvature_term(probabilities, weights, alpha, ownership, margins)
    for t in range(utility.shape[0]):
        H = _tensor(probabilities[t], weights[t], alpha[t])
        expected = np.einsum("jk,k,kjl->jl", ownership[t], margins[t], H)
        np.testing.assert_allclose(R[t], expected, rtol=0,
                                   atol=1e-13 * np.abs(expected).max())


def test_the_tensor_is_the_derivative_of_the_share_jacobian() -> None:
    # d/dp_l of D_kj = ds_k/dp_j, by central differences of the closed-form Jacobian
    utility, weights, alpha, _, _ = _block(np.random.default_rng(1), T=1)
    J, h = utility.shape[1], 1e-5
    s = choice_probabilities_3d(utility)[0]
    H = _tensor(s, weights[0], alpha[0])
    for m in range(J):
        shift = np.zeros((1, J, 1))
        shift[0, m] = h
        up = block_share_jacobians(choice_probabilities_3d(utility + shift * alpha[:, None, :]),
                                   weights, alpha)[0]
        down = block_share_jacobians(choice_probabilities_3d(utility - shift * alpha[:, None, :]),
                                     weights, alpha)[0]
        np.testing.assert_allclose((up - down) / (2 * h), H[:, :, m], rtol=0,
                                   atol=1e-8 * np.abs(H).max())


@pytest.fixture(scope="module", params=["normal", "lognormal", "rcnl"])
def random_coefficients(request) -> FittedDemand:
    # the true demand of simulated markets (Bertrand-priced where the simulation can)
    if request.param == "rcnl":
        sim = bd.simulate(markets=4, products=5, sigma={"x1": 1.0}, alpha=-2.0, draws=40,
                          rng=3, nests=2, nesting_rho=0.6)
    else:
        lognormal = request.param == "lognormal"
        sim = bd.simulate(markets=4, products=5, sigma={"x1": 1.0, "prices": 0.4}, alpha=-3.0,
                          draws=40, rng=3, pricing="rule" if lognormal else "bertrand",
                          lognormal=lognormal)
    return bd.fitted_from_truth(sim)


def test_passthrough_equals_differenced_equilibrium_prices(random_coefficients) -> None:
    results = fitted = random_coefficients
    rho = compute_passthrough(results)
    costs = compute_costs(results)
    config = PricingConfig(tol=1e-14)
    products = fitted.problem.products
    markets = products.markets
    assert np.array_equal(products.order, np.arange(products.N))  # simulated rows are sorted
    for t in (0, 3):
        rows = np.arange(markets.offsets[t], markets.offsets[t + 1])
        expected = np.zeros((rows.size, rows.size))
        for col, l in enumerate(rows.tolist()):
            h = 1e-5 * max(1.0, abs(costs[l]))
            up, down = costs.copy(), costs.copy()
            up[l] += h
            down[l] -= h
            p_up = compute_prices(results, costs=up, config=config).prices[rows]
            p_down = compute_prices(results, costs=down, config=config).prices[rows]
            expected[:, col] = (p_up - p_down) / (2 * h)
        ours = rho.market(markets.ids[t]).to_numpy()
        assert ours.shape == expected.shape
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-7 * np.abs(expected).max())
        assert np.all(np.diag(ours) > 0)


def test_methods_and_stacked_form() -> None:
    sim = bd.simulate(markets=4, products=5, sigma={"x1": 1.0}, draws=30, rng=2,
                      pricing="bertrand")
    problem = bd.Problem(sim.products, linear="1 + prices + x1 + x2", nonlinear="0 + x1",
                         agents=sim.agents, instruments=["w1", "w2"])
    results = bd.evaluate(problem, sigma=[[1.0]], config=bd.EstimationConfig(hessian=False))
    rho = compute_passthrough(results)
    assert rho.kind == "pass-through"
    np.testing.assert_array_equal(results.passthrough().stacked(), rho.stacked())
    stacked = rho.stacked()
    assert stacked.shape == (len(sim.products), 5)
    np.testing.assert_array_equal(rho.diagonal(), stacked[np.arange(stacked.shape[0]),
                                                          _position(results)])
    assert "marginal cost" in rho.table(rho.market_ids[0]).notes[0]


def test_heatmap_greys_the_own_passthrough() -> None:
    import matplotlib

    matplotlib.use("Agg")
    fitted, _ = _logit(np.arange(12) % 2)
    rho = compute_passthrough(fitted)
    ax = bd.ElasticityHeatmap.from_results(rho, market=1).plot()
    own = np.diag(rho.matrices[0])
    assert f"own pass-through, {own.min():.3g} to {own.max():.3g}" in ax.get_xlabel()
    assert ax.get_ylabel() == "j (price that responds)"
    assert "marginal cost rises by one unit" in ax.get_title()


def _position(results) -> np.ndarray:
    products = results.fitted.problem.products
    markets = products.markets
    sorted_position = np.arange(products.N) - markets.offsets[markets.codes]
    return products.unsort(sorted_position)


def _logit(firms: np.ndarray) -> tuple[FittedDemand, pd.DataFrame]:
    rng = np.random.default_rng(5)
    market = np.array([2, 1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4])  # out of order; market 4: one product
    data = pd.DataFrame({"market_ids": market, "firm_ids": firms,
                         "prices": rng.uniform(1.0, 2.0, market.size),
                         "x": rng.normal(size=market.size), "z": rng.normal(size=market.size),
                         "shares": rng.uniform(0.05, 0.2, market.size)})
    problem = bd.Problem(data, linear="1 + prices + x", instruments=["z"])
    return FittedDemand(problem=problem, layout=logit_layout(problem), theta=np.zeros(0),
                        beta=np.array([0.5, -2.0, 0.3]), delta=problem.products.logit_delta), data


def test_logit_monopolist_closed_form() -> None:
    # one owner per market: common markup -1/(alpha s_0); dp_j/dc_l = 1{j=l} - s_l, rows of
    # the matrix sum to s_0 (a common cost rise of one lifts every price by s_0)
    fitted, data = _logit(np.ones(12, dtype=int))
    rho = compute_passthrough(fitted)
    for market in (1, 2, 3, 4):
        s = data.loc[data["market_ids"] == market, "shares"].to_numpy()
        expected = np.eye(s.size) - np.ones((s.size, 1)) * s[None, :]
        np.testing.assert_allclose(rho.market(market).to_numpy(), expected, rtol=0, atol=1e-12)


def test_perfect_competition_is_the_identity() -> None:
    fitted, data = _logit(np.arange(12))
    width = int(data["market_ids"].value_counts().max())
    rho = compute_passthrough(fitted, ownership=np.zeros((12, width)))
    for matrix in rho.matrices:
        np.testing.assert_array_equal(matrix, np.eye(matrix.shape[0]))


def test_rivals_responses_raise_own_passthrough() -> None:
    # single-product firms: holding rivals' prices, j passes through 1 - s_j (its own FOC, as
    # a monopolist of one product); rivals' prices rise with j's (strategic complements), which
    # raises j's. The market of one product has no rival: exactly 1 - s_j there.
    fitted, data = _logit(np.arange(12))
    own = compute_passthrough(fitted).diagonal()
    alone = (data["market_ids"] == 4).to_numpy()
    single = 1 - data["shares"].to_numpy()
    assert np.all(own[~alone] > single[~alone] + 1e-6)
    np.testing.assert_allclose(own[alone], single[alone], rtol=1e-12)


def test_nested_differences_equal_the_closed_form_where_nests_vanish() -> None:
    # with lambda = 1 (rho = 0) the nested demand is the random-coefficients logit: at the
    # Bertrand markups (G = 0) the differenced markup equation meets the closed-form curvature
    # (measured 3.6e-12 of the largest entry, asserted 1e-9: see NESTED_STEP)
    utility, weights, alpha, ownership, _ = _block(np.random.default_rng(4), T=2)
    prices = np.random.default_rng(5).uniform(1.0, 3.0, utility.shape[:2])
    for t in range(2):
        plain = MarketDemand(market_id=t, prices=prices[t], utility=utility[t], alpha=alpha[t],
                             weights=weights[t])
        margins = markups(plain, ownership[t])
        closed = passthrough_blocks(choice_probabilities_3d(utility[t:t + 1]), weights[t:t + 1],
                                    alpha[t:t + 1], ownership[t:t + 1], margins[None])[0]
        demand = NestedMarketDemand(market_id=t, prices=prices[t], utility=utility[t],
                                    alpha=alpha[t], weights=weights[t],
                                    nests=np.arange(5) % 2, lam=np.ones(2))
        differenced = nested_passthrough(demand, ownership[t], margins)
        np.testing.assert_allclose(differenced, closed, rtol=0,
                                   atol=1e-9 * np.abs(closed).max())


def test_nested_logit_equals_differenced_equilibrium_prices() -> None:
    sim = bd.simulate(markets=30, products=4, rng=0, nests=2, nesting_rho=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WeakInstrumentsWarning)  # not what is tested here
        results = bd.estimate_logit(sim.products, linear="1 + prices + x1 + x2",
                                    instruments=["w1", "w2"], nesting="nesting_ids")
    rho = compute_passthrough(results)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EconomicWarning)  # implied costs may be negative
        costs = compute_costs(results)
    rows = np.flatnonzero(sim.products["market_ids"].to_numpy() == 0)
    expected = np.zeros((rows.size, rows.size))
    config = PricingConfig(tol=1e-14)
    for col, l in enumerate(rows.tolist()):
        h = 1e-5 * max(1.0, abs(costs[l]))
        up, down = costs.copy(), costs.copy()
        up[l] += h
        down[l] -= h
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EconomicWarning)
            p_up = compute_prices(results, costs=up, config=config).prices[rows]
            p_down = compute_prices(results, costs=down, config=config).prices[rows]
        expected[:, col] = (p_up - p_down) / (2 * h)
    np.testing.assert_allclose(rho.market(0).to_numpy(), expected, rtol=0,
                               atol=1e-7 * np.abs(expected).max())
