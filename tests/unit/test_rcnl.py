"""The random-coefficients nested logit's inner loop (issue 20) against closed forms and
finite differences: rho = 0 is the plain BLP model, Sigma = 0 the nested logit, and the
analytic d Q / d theta (through d delta / d (Sigma, Pi, rho)) matches central differences."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import SpecificationError
from blpdemand.model.nesting import nested_shares
from blpdemand.solve.gmm import DemandObjective
from blpdemand.solve.moments import problem_stack
from blpdemand.solve.nested_loop import NestedInnerLoop

TIGHT = bd.FixedPointConfig(tol=1e-14)


def _data(seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    sim = bd.simulate(markets=10, products=7, sigma={"x1": 0.5}, draws=40, rng=seed,
                      cost_shifters=4)
    products = sim.products.copy()
    # unequal nests, one market with a single nest
    products["nesting_ids"] = np.where(products["product_ids"] % 3 == 0, "a", "b")
    products.loc[products["market_ids"] == 0, "nesting_ids"] = "a"
    agents = sim.agents.copy()
    agents["income"] = np.random.default_rng(seed).standard_normal(len(agents))
    return products, agents, list(sim.instruments)


def _problem(rho: str = "common", **options: object) -> bd.Problem:
    products, agents, instruments = _data()
    return bd.Problem(products, linear="1 + prices + x1 + x2", nonlinear="0 + x1",
                      agents=agents, instruments=instruments, nesting="nesting_ids", rho=rho,
                      **options)  # type: ignore[arg-type]


def test_rho_zero_is_the_plain_model() -> None:
    nested = _problem()
    products, agents, instruments = _data()
    plain = bd.Problem(products.drop(columns="nesting_ids"), linear="1 + prices + x1 + x2",
                       nonlinear="0 + x1", agents=agents, instruments=instruments)
    layout, theta = nested.layout([0.7], None, 0.0)
    plain_layout, plain_theta = plain.layout([0.7])
    ours = NestedInnerLoop(nested, layout, config=TIGHT).solve(theta).delta
    reference = bd.solve_delta(plain, plain_layout, plain_theta, config=TIGHT).delta
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-12)


def test_no_random_coefficient_is_the_nested_logit() -> None:
    # Sigma = 0: every agent's shares are the nested logit's, so delta inverts them exactly
    problem = _problem()
    layout, theta = problem.layout([1e-300], None, 0.6)  # sigma free but numerically zero
    loop = NestedInnerLoop(problem, layout, config=TIGHT)
    delta = loop.solve(theta).delta
    markets = problem.products.markets
    codes = problem.nests.codes  # type: ignore[union-attr]
    for t in range(markets.T):
        rows = markets.slice(t)
        shares = nested_shares(delta[rows], codes[rows], np.full(rows.stop - rows.start, 0.6))
        np.testing.assert_allclose(shares, problem.products.shares[rows], rtol=1e-12)


@pytest.mark.parametrize("rho", ["common", "per_nest"])
@pytest.mark.parametrize("pi", [False, True])
def test_gradient_matches_finite_differences(rho: str, pi: bool) -> None:
    problem = _problem(rho=rho, demographics="income")
    layout, theta = problem.layout([0.6], [[0.4 if pi else 0.0]], [0.55, 0.3] if
                                   rho == "per_nest" else 0.55)
    Z = problem_stack(problem).Z
    objective = DemandObjective(problem, layout, np.linalg.inv(Z.T @ Z / problem.N),
                                contraction=TIGHT)
    gradient = objective.evaluate(theta).gradient
    step = 1e-5
    numeric = np.array([(objective.evaluate(theta + step * e, report=False).objective
                         - objective.evaluate(theta - step * e, report=False).objective)
                        / (2 * step) for e in np.eye(theta.size)])
    # central differences: O(step^2 Q''') ~ 1e-10 against gradients of order 0.01..10
    np.testing.assert_allclose(gradient, numeric, rtol=1e-6, atol=1e-8)


def test_newton_and_squarem_agree() -> None:
    problem = _problem(rho="per_nest")
    layout, theta = problem.layout([0.6], None, [0.7, 0.2])
    squarem = NestedInnerLoop(problem, layout, config=TIGHT).solve(theta).delta
    newton = NestedInnerLoop(problem, layout, config=bd.FixedPointConfig(
        tol=1e-14, method="newton")).solve(theta).delta
    np.testing.assert_allclose(newton, squarem, rtol=0, atol=1e-12)


def test_rho_errors_name_the_fix() -> None:
    problem = _problem()
    with pytest.raises(SpecificationError, match="rho="):
        problem.layout([0.5])
    with pytest.raises(SpecificationError, match=r"\[0, 1\)"):
        problem.layout([0.5], None, 1.2)
    with pytest.raises(SpecificationError, match=r"3 values .*rho\[a\]"):
        _problem(rho="per_nest").layout([0.5], None, [0.1, 0.2, 0.3])
    products, agents, instruments = _data()
    with pytest.raises(SpecificationError, match="estimate_logit"):
        bd.Problem(products, linear="1 + prices", instruments=instruments,
                   nesting="nesting_ids")
    plain = bd.Problem(products, linear="1 + prices + x1 + x2", nonlinear="0 + x1",
                       agents=agents, instruments=instruments)
    with pytest.raises(SpecificationError, match="no nests"):
        plain.layout([0.5], None, 0.5)


def test_rho_is_bounded_and_reported() -> None:
    results = bd.estimate(_problem(), sigma=[0.6], rho=0.5,
                          config=bd.EstimationConfig(starts=0))
    assert results.names[:2] == ("sigma[x1, x1]", "rho")
    assert 0.0 <= float(results.rho[0]) <= 0.99
    assert "rho" in results.summary().to_frame().index


def test_what_is_not_built_for_nests_says_so() -> None:
    from blpdemand.solve.shards import split_markets

    problem = _problem()
    results = bd.estimate(problem, sigma=[0.6], rho=0.5, config=bd.EstimationConfig(starts=0))
    for compute in (lambda: bd.compute_long_run_diversion_ratios(results),
                    lambda: bd.bootstrap(results, draws=3),
                    lambda: bd.optimal_instruments(results),
                    lambda: bd.estimate_approximation(problem),
                    lambda: split_markets(problem, 2)):
        with pytest.raises(SpecificationError, match="nested logit"):
            compute()


def test_consumer_surplus_with_rho_zero_is_the_plain_models() -> None:
    # rho = 0: the nested log-sum is the logit's, so CS equals the plain problem's at the same
    # theta and beta (a closed form check of NestedMarketDemand.surplus)
    nested = _problem()
    products, agents, instruments = _data()
    plain = bd.Problem(products.drop(columns="nesting_ids"), linear="1 + prices + x1 + x2",
                       nonlinear="0 + x1", agents=agents, instruments=instruments)
    config = bd.EstimationConfig(method="1s", contraction=TIGHT)
    ours = bd.evaluate(nested, sigma=[0.7], rho=0.0, config=config)
    reference = bd.evaluate(plain, sigma=[0.7], config=config)
    np.testing.assert_allclose(bd.compute_consumer_surplus(ours),
                               bd.compute_consumer_surplus(reference), rtol=1e-10)
