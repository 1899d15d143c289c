"""Reproducibility: the same rng gives bit-identical estimates; row order and market labels do not
change estimates beyond 1e-10.

Reference: the estimator run twice (bit equality, ``np.testing.assert_array_equal``), and the
same data with rows shuffled or markets relabelled (1e-10, the floating-point noise of summing
in another order, far below any statistical precision).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import BLPDemandWarning
from blpdemand.model.simulation import simulate

TIGHT = 1e-10


@pytest.fixture(scope="module")
def sim() -> bd.SimulatedMarkets:
    return simulate(markets=8, products=4, sigma={"x1": 1.0}, draws=30, rng=51)


def _problem(products: pd.DataFrame, agents: object, sim: bd.SimulatedMarkets) -> bd.Problem:
    return bd.Problem(products, linear=sim.linear, nonlinear=sim.nonlinear, agents=agents,
                      instruments=list(sim.instruments))


def _estimate(problem: bd.Problem, **options: object) -> bd.BLPResults:
    config = bd.EstimationConfig(hessian=False, **options)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BLPDemandWarning)
        return bd.estimate(problem, sigma=[0.5], config=config)


def _same(a: bd.BLPResults, b: bd.BLPResults) -> None:
    np.testing.assert_array_equal(a.theta, b.theta)
    np.testing.assert_array_equal(a.beta, b.beta)
    np.testing.assert_array_equal(a.delta, b.delta)
    np.testing.assert_array_equal(a.standard_errors, b.standard_errors)
    assert a.objective == b.objective


def _close(a: bd.BLPResults, b: bd.BLPResults) -> None:
    np.testing.assert_allclose(b.theta, a.theta, rtol=TIGHT, atol=TIGHT)
    np.testing.assert_allclose(b.beta, a.beta, rtol=TIGHT, atol=TIGHT)
    np.testing.assert_allclose(b.standard_errors, a.standard_errors, rtol=1e-8, atol=TIGHT)


# ---------------------------------------------------------------- same rng, same bits
def test_simulate_is_bit_identical() -> None:
    a = simulate(markets=3, products=3, sigma={"x1": 1.0}, draws=10, rng=5)
    b = simulate(markets=3, products=3, sigma={"x1": 1.0}, draws=10, rng=np.random.default_rng(5))
    pd.testing.assert_frame_equal(a.products, b.products, check_exact=True)
    assert a.agents is not None and b.agents is not None
    pd.testing.assert_frame_equal(a.agents, b.agents, check_exact=True)


@pytest.mark.parametrize("kind, size", [("monte_carlo", 20), ("sobol", 16), ("halton", 20),
                                        ("lhs", 20), ("product", 5), ("sparse_grid", 3)])
def test_integration_problem_estimates_are_bit_identical(sim: bd.SimulatedMarkets, kind: str,
                                                         size: int) -> None:
    a = _estimate(_problem(sim.products, bd.Integration(kind, size, rng=7), sim), max_iterations=30)
    b = _estimate(_problem(sim.products, bd.Integration(kind, size, rng=7), sim), max_iterations=30)
    _same(a, b)


def test_generator_seeded_integration_is_bit_identical(sim: bd.SimulatedMarkets) -> None:
    # a Generator is resolved to an int seed once: two Generators with one seed, one result
    rules = [bd.Integration("monte_carlo", 20, rng=np.random.default_rng(9), per_market=True)
             for _ in range(2)]
    assert rules[0].seed == rules[1].seed
    a, b = (_estimate(_problem(sim.products, rule, sim), max_iterations=30) for rule in rules)
    _same(a, b)


def test_multi_start_is_bit_identical(sim: bd.SimulatedMarkets) -> None:
    problem = _problem(sim.products, sim.agents, sim)
    a = _estimate(problem, starts=2, rng=4, max_iterations=20)
    b = _estimate(problem, starts=2, rng=4, max_iterations=20)
    _same(a, b)
    for s, t in zip(a.starts, b.starts):
        np.testing.assert_array_equal(s.start, t.start)
        np.testing.assert_array_equal(s.optimization.theta, t.optimization.theta)


def test_two_step_is_bit_identical(sim: bd.SimulatedMarkets) -> None:
    problem = _problem(sim.products, sim.agents, sim)
    _same(_estimate(problem, method="2s"), _estimate(problem, method="2s"))


# ---------------------------------------------------------------- row order and labels
@pytest.fixture(scope="module")
def sorted_results(sim: bd.SimulatedMarkets) -> dict[str, bd.BLPResults]:
    problem = _problem(sim.products, sim.agents, sim)
    return {"1s": _estimate(problem), "2s": _estimate(problem, method="2s")}


@pytest.mark.parametrize("method", ["1s", "2s"])
def test_shuffled_products_and_agents(sim: bd.SimulatedMarkets,
                                      sorted_results: dict[str, bd.BLPResults], method: str) -> None:
    assert sim.agents is not None
    products = sim.products.sample(frac=1.0, random_state=1)
    agents = sim.agents.sample(frac=1.0, random_state=2)
    shuffled = _estimate(_problem(products, agents, sim), method=method)
    _close(sorted_results[method], shuffled)
    # per-row outputs are in the sorted order of the problem; mapped back they agree row by row
    a, b = sorted_results[method], shuffled
    np.testing.assert_allclose(b.xi,
                               pd.Series(a.xi, index=sim.products.index)
                               .loc[products.index].to_numpy(), rtol=1e-8, atol=TIGHT)


def test_string_market_ids_match_integers(sim: bd.SimulatedMarkets,
                                          sorted_results: dict[str, bd.BLPResults]) -> None:
    # "m10" sorts before "m2": another market order, the same markets, the same estimates
    assert sim.agents is not None
    label = lambda f: f.assign(market_ids="m" + f["market_ids"].astype(str))
    relabelled = _estimate(_problem(label(sim.products), label(sim.agents), sim))
    _close(sorted_results["1s"], relabelled)


def test_shuffled_rows_with_integration_rule(sim: bd.SimulatedMarkets) -> None:
    # Integration nodes are per sorted market position: shuffling product rows changes nothing
    rule = bd.Integration("halton", 20, rng=3)
    a = _estimate(_problem(sim.products, rule, sim))
    b = _estimate(_problem(sim.products.sample(frac=1.0, random_state=8), rule, sim))
    _close(a, b)


@pytest.mark.parametrize("method", ["ols", "2sls", "gmm", "2s-gmm"])
def test_logit_row_order(sim: bd.SimulatedMarkets, method: str) -> None:
    options = {"linear": sim.linear, "method": method, "covariance": "clustered",
               "clusters": "market_ids"}
    if method != "ols":
        options["instruments"] = list(sim.instruments)
    a = bd.estimate_logit(sim.products, **options)  # type: ignore[arg-type]
    b = bd.estimate_logit(sim.products.sample(frac=1.0, random_state=6), **options)  # type: ignore[arg-type]
    np.testing.assert_allclose(b.params, a.params, rtol=TIGHT, atol=TIGHT)
    np.testing.assert_allclose(b.bse, a.bse, rtol=TIGHT, atol=TIGHT)
