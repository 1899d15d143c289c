"""Post-estimation against PyBLP 1.3.0 run live on the same data and the same estimates.

PyBLP evaluates its tutorial problems (Nevo 2000 cereal; BLP 1995 autos, demand side) at
fixed parameters (Optimization('return')); we build a FittedDemand from its beta, sigma, pi and
delta and compare elasticities, diversion ratios, costs, markups, merger prices, profits, HHI
and consumer surplus. Tolerance: relative 1e-6 (observed agreement is ~1e-12 or better).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import IntegrationWarning
from blpdemand.model.fitted import FittedDemand
from blpdemand.results.costs import compute_costs, compute_markups, compute_profits
from blpdemand.results.counterfactual import compute_prices, simulate_merger
from blpdemand.results.diversion import compute_diversion_ratios
from blpdemand.results.elasticities import compute_aggregate_elasticities, compute_elasticities
from blpdemand.results.surplus import compute_consumer_surplus

pyblp = pytest.importorskip("pyblp")
RTOL = 1e-6

NEVO_SIGMA = np.diag([0.5588, 3.3124, -0.0058, 0.0934])  # PyBLP tutorial estimates (rounded)
NEVO_PI = np.array([[2.2919, 0, 1.2842, 0], [588.3252, -30.1920, 0, 11.0546],
                    [-0.3842, 0, 0.0524, 0], [0.7480, 0, -1.3536, 0]])
BLP_SIGMA = np.diag([3.612, 0, 4.628, 1.818, 1.050, 2.056])  # PyBLP tutorial starting values
BLP_PI = np.c_[[0, -15.2, 0, 0, 0, 0]]


def _close(ours: np.ndarray, theirs: np.ndarray, rtol: float = RTOL) -> None:
    ours, theirs = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float).reshape(np.shape(ours))
    assert np.array_equal(np.isfinite(ours), np.isfinite(theirs))
    finite = np.isfinite(theirs)
    np.testing.assert_allclose(ours[finite], theirs[finite], rtol=rtol, atol=0)


def _solve(pyblp_problem, sigma, pi):
    pyblp.options.verbose = False
    with np.errstate(all="ignore"):
        return pyblp_problem.solve(sigma, pi, optimization=pyblp.Optimization("return"),
                                   check_optimality="gradient")


def _fitted(problem: bd.Problem, results, sigma, pi) -> FittedDemand:
    layout, theta = problem.layout(sigma=sigma, pi=pi)
    return FittedDemand(problem=problem, layout=layout, theta=theta, beta=results.beta.ravel(),
                        delta=problem.products.sort(results.delta.ravel()))


@pytest.fixture(scope="module")
def nevo(nevo_products: pd.DataFrame, nevo_agents: pd.DataFrame):
    formulations = (pyblp.Formulation("0 + prices", absorb="C(product_ids)"),
                    pyblp.Formulation("1 + prices + sugar + mushy"))
    demographics = "income + income_squared + age + child"
    theirs = _solve(pyblp.Problem(formulations, nevo_products, pyblp.Formulation("0 + " + demographics),
                                  nevo_agents), NEVO_SIGMA, NEVO_PI)
    ours = bd.Problem(nevo_products, linear="prices", nonlinear="1 + prices + sugar + mushy",
                      demographics=demographics, agents=nevo_agents, absorb="C(product_ids)",
                      instruments=[f"demand_instruments{k}" for k in range(20)])
    return _fitted(ours, theirs, NEVO_SIGMA, NEVO_PI), theirs, nevo_products


@pytest.fixture(scope="module")
def blp(blp_products: pd.DataFrame, blp_agents: pd.DataFrame):
    # Prices enter only through X2, with an income-dependent coefficient pi / income.
    formulations = (pyblp.Formulation("1 + hpwt + air + mpd + space"),
                    pyblp.Formulation("1 + prices + hpwt + air + mpd + space"))
    with warnings.catch_warnings():  # BLP's importance-sampling weights do not sum to one
        warnings.simplefilter("ignore", UserWarning)
        problem = pyblp.Problem(formulations, blp_products, pyblp.Formulation("0 + I(1 / income)"),
                                blp_agents)
    theirs = _solve(problem, BLP_SIGMA, BLP_PI)
    with pytest.warns(IntegrationWarning):
        ours = bd.Problem(blp_products, linear="1 + hpwt + air + mpd + space",
                          nonlinear="1 + prices + hpwt + air + mpd + space",
                          demographics="I(1 / income)", agents=blp_agents,
                          instruments=[f"demand_instruments{k}" for k in range(8)])
    return _fitted(ours, theirs, BLP_SIGMA, BLP_PI), theirs, blp_products


@pytest.fixture(params=["nevo", "blp"])
def case(request):
    return request.getfixturevalue(request.param)


def test_price_elasticities(case) -> None:
    fitted, theirs, _ = case
    with np.errstate(all="ignore"):
        expected = theirs.compute_elasticities()
    _close(compute_elasticities(fitted).stacked(), expected)


def test_characteristic_elasticities(case) -> None:
    fitted, theirs, _ = case
    name = "sugar" if "sugar" in fitted.problem.X2.names else "hpwt"
    with np.errstate(all="ignore"):
        expected = theirs.compute_elasticities(name=name)
    _close(compute_elasticities(fitted, name).stacked(), expected)


def test_diversion_ratios(case) -> None:
    fitted, theirs, _ = case
    with np.errstate(all="ignore"):
        expected = theirs.compute_diversion_ratios()
    _close(compute_diversion_ratios(fitted).stacked(), expected)


def test_long_run_diversion_ratios(case) -> None:
    fitted, theirs, _ = case
    with np.errstate(all="ignore"):
        expected = theirs.compute_long_run_diversion_ratios()
    ours = bd.compute_long_run_diversion_ratios(fitted)
    _close(ours.stacked(), expected)
    for matrix in ours.matrices:  # each row splits the removed product's share
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0, rtol=1e-10)


def test_aggregate_elasticities(case) -> None:
    # PyBLP reports sum_j [s_j(1.01 p) - s_j(p)] / 0.01; ours divides by sum_j s_j (an elasticity).
    fitted, theirs, _ = case
    with np.errstate(all="ignore"):
        expected = theirs.compute_aggregate_elasticities(factor=0.01).ravel()
    inside = fitted.problem.products.markets.segment_sum(fitted.problem.products.shares)
    _close(compute_aggregate_elasticities(fitted, factor=0.01) * inside, expected)


def test_costs_markups_profits(case) -> None:
    # PyBLP's compute_markups is the Lerner index (p - c) / p.
    fitted, theirs, data = case
    with np.errstate(all="ignore"):
        costs = theirs.compute_costs()
        lerner = theirs.compute_markups()
        profits = theirs.compute_profits(costs=costs)
    _close(compute_costs(fitted), costs)
    _close(compute_markups(fitted) / data["prices"].to_numpy(), lerner)
    _close(compute_profits(fitted), profits)


def test_passthrough(case, request) -> None:
    # dp/dc' under the data's ownership at the implied costs; BLP in its first two markets
    # (PyBLP forms each market's profit Hessians: 12 s for all twenty). Entries far below a
    # market's largest are differences of terms of that size: their error is absolute (seen
    # 2e-12 of the largest), so each market allows 1e-9 of its largest entry beside RTOL.
    fitted, theirs, data = case
    rho = bd.compute_passthrough(fitted)
    markets = (None,) if request.node.callspec.params["case"] == "nevo" else (1971, 1972)
    for market in markets:
        with np.errstate(all="ignore"):
            expected = np.asarray(theirs.compute_passthrough(market_id=market))
        ours = rho.stacked() if market is None else rho.market(market).to_numpy()
        assert ours.shape == expected.shape
        assert np.array_equal(np.isfinite(ours), np.isfinite(expected))
        finite = np.isfinite(expected)
        gap = np.abs(ours[finite] - expected[finite])
        assert np.all(gap <= RTOL * np.abs(expected[finite])
                      + 1e-9 * np.abs(expected[finite]).max()), gap.max()


def test_consumer_surplus(case) -> None:
    fitted, theirs, _ = case
    with np.errstate(all="ignore"):
        expected = theirs.compute_consumer_surpluses()
    _close(compute_consumer_surplus(fitted), expected)


def _merger_case(case, request):
    """Nevo: all markets. BLP: two markets (PyBLP's zeta iteration is slow there, and in some
    markets stops at its default 5,000 evaluations with FOC residuals near 1e-6)."""
    fitted, theirs, data = case
    if request.node.callspec.params["case"] == "nevo":
        return fitted, theirs, data, None
    keep = data["market_ids"].isin([1971, 1972]).to_numpy()
    sub, agents = data.loc[keep].reset_index(drop=True), request.getfixturevalue("blp_agents")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IntegrationWarning)
        problem = bd.Problem(sub, linear="1 + hpwt + air + mpd + space",
                             nonlinear="1 + prices + hpwt + air + mpd + space",
                             demographics="I(1 / income)", agents=agents,
                             instruments=[f"demand_instruments{k}" for k in (0, 1, 3, 4)])
    small = FittedDemand(problem=problem, layout=fitted.layout, theta=fitted.theta,
                         beta=fitted.beta, delta=problem.products.sort(theirs.delta.ravel()[keep]))
    return small, theirs, sub, [1971, 1972]


def test_merger_prices_shares_surplus_hhi(case, request) -> None:
    # Merge the two firms with the most products; same zeta iteration as PyBLP (atol 1e-12).
    fitted, theirs, data, markets = _merger_case(case, request)
    big = data["firm_ids"].value_counts().index[:2].tolist()
    merged = data["firm_ids"].where(~data["firm_ids"].isin(big), big[0]).to_numpy()
    codes = data["market_ids"].to_numpy()
    expected: dict[str, list[np.ndarray]] = {k: [] for k in ("p", "s", "cs", "hhi", "hhi0", "pi", "c")}
    with np.errstate(all="ignore"):
        for market in markets or [None]:
            rows = np.ones(len(codes), dtype=bool) if market is None else codes == market
            costs = theirs.compute_costs(market_id=market)
            prices = theirs.compute_prices(firm_ids=merged[rows], costs=costs, market_id=market)
            shares = theirs.compute_shares(prices, market_id=market)
            expected["c"].append(costs.ravel())
            expected["p"].append(prices.ravel())
            expected["s"].append(shares.ravel())
            expected["cs"].append(theirs.compute_consumer_surpluses(prices=prices, market_id=market).ravel())
            expected["hhi"].append(theirs.compute_hhi(firm_ids=merged[rows], shares=shares,
                                                      market_id=market).ravel())
            expected["hhi0"].append(theirs.compute_hhi(market_id=market).ravel())
            expected["pi"].append(theirs.compute_profits(prices=prices, shares=shares, costs=costs,
                                                         market_id=market).ravel())
    want = {k: np.concatenate(v) for k, v in expected.items()}
    cf = simulate_merger(fitted, big)
    assert cf.converged
    _close(cf.costs, want["c"])
    _close(cf.prices, want["p"])
    _close(cf.shares, want["s"])
    _close(cf.consumer_surplus, want["cs"])
    _close(cf.hhi, want["hhi"])
    _close(cf.hhi_before, want["hhi0"])
    _close(cf.profits, want["pi"])
    # The same merger through compute_prices with explicit firm ids and costs.
    _close(compute_prices(fitted, firm_ids=merged, costs=want["c"]).prices, want["p"])


def test_cost_change_prices(nevo) -> None:
    # A 10% cost increase for every product under the original ownership.
    fitted, theirs, _ = nevo
    with np.errstate(all="ignore"):
        costs = 1.1 * theirs.compute_costs()
        prices = theirs.compute_prices(costs=costs)
    _close(compute_prices(fitted, costs=costs.ravel()).prices, prices)


def test_consumer_surplus_without_a_product(nevo) -> None:
    # PyBLP's eliminate_product_ids removes a product from every choice set.
    fitted, theirs, data = nevo
    with np.errstate(all="ignore"):
        expected = theirs.compute_consumer_surpluses(eliminate_product_ids=["F1B04"])
    keep = (data["product_ids"] != "F1B04").to_numpy()
    _close(compute_consumer_surplus(fitted, keep=keep), expected)


def test_asymmetric_partial_ownership(nevo) -> None:
    # Firm 1 puts weight 0.6 on firm 2's profits, firm 2 weight 0.2 on firm 1's (PyBLP's
    # build_ownership with kappa(f, g)): costs implied under it, and prices after a 10% cost
    # increase, against PyBLP's compute_costs / compute_prices with the same ownership.
    fitted, theirs, data = nevo
    kappa = {(1, 2): 0.6, (2, 1): 0.2}

    def specification(f, g):
        return 1.0 if f == g else kappa.get((int(f), int(g)), 0.0)

    with np.errstate(all="ignore"):
        ownership = pyblp.build_ownership(data, specification)
        costs = theirs.compute_costs(ownership=ownership)
        prices = theirs.compute_prices(ownership=ownership, costs=1.1 * costs)
    ours_costs = compute_costs(fitted, kappa=kappa)
    _close(ours_costs, costs)
    _close(compute_prices(fitted, kappa=kappa, costs=1.1 * ours_costs).prices, prices)
    # the same ownership passed as PyBLP's stacked (N, max J_t) matrix
    _close(compute_costs(fitted, ownership=ownership), costs)
    _close(compute_prices(fitted, ownership=ownership, costs=1.1 * ours_costs).prices, prices)
