"""The estimated cost function after joint estimation (results/cost_function.py): fitted,
structural and counterfactual costs, and entrants' costs, against closed forms on simulated
Bertrand markets: c = f^{-1}(x3' gamma + omega), so moving one shifter by d moves f(c) by
gamma_k d exactly, and omega held fixed reproduces the structural costs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import DataError, SpecificationError

RTOL = 1e-12  # the same floating-point operations in another order: a few ulps of each cost


def _results(costs: str = "linear", absorb: str | None = None) -> tuple[bd.BLPResults,
                                                                         pd.DataFrame]:
    sim = bd.simulate(markets=6, products=4, firms=2, sigma={"x1": 1.0}, draws=30,
                      pricing="bertrand", rng=2)
    agents = sim.agents.copy()
    agents["one"] = 1.0
    supply = "0 + w1 + w2" if absorb else sim.supply
    problem = bd.Problem(sim.products, linear="1 + x1 + x2", nonlinear="0 + x1 + prices",
                         demographics="0 + one", agents=agents, instruments=["w1", "w2"],
                         supply=supply, supply_instruments=["x1"], costs=costs,
                         absorb_supply=absorb)
    # at the truth (sigma_x1 = 1, alpha = -1): implied costs are the simulated ones
    results = bd.evaluate(problem, sigma=np.diag([1.0, 0.0]), pi=np.c_[[0.0, -1.0]],
                          config=bd.EstimationConfig(hessian=False))
    return results, sim.products


@pytest.mark.parametrize("costs", ["linear", "log"])
def test_fitted_structural_and_shifted_costs_are_the_closed_forms(costs: str) -> None:
    results, products = _results(costs)
    c = np.asarray(results.marginal_costs)
    np.testing.assert_allclose(c, products["costs"], rtol=1e-8)  # the simulation's costs
    f = np.log if costs == "log" else (lambda v: v)
    finv = np.exp if costs == "log" else (lambda v: v)
    x3 = np.column_stack([np.ones(len(products)), products["w1"], products["w2"]])
    np.testing.assert_allclose(bd.fitted_costs(results), finv(x3 @ results.gamma), rtol=RTOL)
    np.testing.assert_allclose(f(c) - x3 @ results.gamma, results.omega, rtol=1e-9, atol=1e-12)
    # omega held fixed at unchanged shifters: the structural costs
    np.testing.assert_allclose(bd.counterfactual_costs(results), c, rtol=RTOL)
    np.testing.assert_allclose(bd.counterfactual_costs(results, omega="zero"),
                               bd.fitted_costs(results), rtol=RTOL)
    # w1 up by 0.5 for every product: f(c') = f(c) + 0.5 gamma_w1
    moved = bd.counterfactual_costs(results, {"w1": products["w1"] + 0.5})
    np.testing.assert_allclose(f(moved), f(c) + 0.5 * results.gamma[1], rtol=RTOL, atol=1e-14)


def test_a_merger_with_the_cost_function_held_fixed() -> None:
    # omega and gamma fixed at unchanged shifters: the same equilibrium as the implied costs;
    # a cost shock shifts every cost by gamma_w2 d and raises the merged prices
    results, products = _results()
    merged = products["firm_ids"].replace({1: 0})
    implied = bd.compute_prices(results, firm_ids=merged)
    held = bd.compute_prices(results, firm_ids=merged, costs=bd.counterfactual_costs(results))
    np.testing.assert_allclose(held.prices, implied.prices, rtol=1e-10)
    shocked = bd.compute_prices(results, firm_ids=merged, costs=bd.counterfactual_costs(
        results, pd.DataFrame({"w2": products["w2"] + 0.2})))
    assert results.gamma[2] > 0 and np.all(shocked.prices > held.prices)


def test_entrant_costs_and_simulated_entry() -> None:
    results, _ = _results("log")
    new = pd.DataFrame({"market_ids": [0, 3], "firm_ids": [0, 7], "x1": [0.2, -0.1],
                        "x2": [0.5, 0.0], "w1": [0.3, 1.0], "w2": [-0.2, 0.4]})
    g = results.gamma
    expected = np.exp(g[0] + new["w1"] * g[1] + new["w2"] * g[2] + np.array([0.0, 0.1]))
    got = bd.entrant_costs(results, new, omega=[0.0, 0.1])
    np.testing.assert_allclose(got, expected, rtol=RTOL)
    entry = bd.simulate_entry(results, new, costs=bd.entrant_costs(results, new))
    assert entry.converged and np.all(entry.prices[entry.entrants] > expected * 0.99)


def test_absorbed_supply_effects() -> None:
    results, products = _results(absorb="C(firm_ids)")
    c = np.asarray(results.marginal_costs)
    np.testing.assert_allclose(bd.counterfactual_costs(results), c, rtol=RTOL)
    np.testing.assert_allclose(bd.fitted_costs(results), c - results.omega, rtol=RTOL)
    moved = bd.counterfactual_costs(results, {"w1": products["w1"] - 1.0})
    np.testing.assert_allclose(moved, c - results.gamma[0], rtol=RTOL, atol=1e-14)
    new = pd.DataFrame({"market_ids": [1], "firm_ids": [0], "x1": [0.0], "x2": [0.0],
                        "w1": [0.5], "w2": [0.5]})
    with pytest.raises(SpecificationError, match="supply_fixed_effect"):
        bd.entrant_costs(results, new)
    new["supply_fixed_effect"] = 0.25
    np.testing.assert_allclose(bd.entrant_costs(results, new),
                               0.25 + 0.5 * results.gamma.sum(), rtol=RTOL)


def test_named_errors() -> None:
    results, products = _results()
    with pytest.raises(DataError, match="'w9'"):
        bd.counterfactual_costs(results, {"w9": np.zeros(len(products))})
    with pytest.raises(DataError, match="one row per product"):
        bd.counterfactual_costs(results, {"w1": np.zeros(3)})
    with pytest.raises(SpecificationError, match="omega='both'"):
        bd.counterfactual_costs(results, omega="both")  # type: ignore[arg-type]
    sim = bd.simulate(markets=4, products=3, sigma={"x1": 1.0}, draws=20, rng=1)
    demand = bd.evaluate(bd.Problem(sim.products, linear="1 + x1 + x2 + prices",
                                    nonlinear="0 + x1", agents=sim.agents,
                                    instruments=["w1", "w2"]), sigma=[[1.0]],
                         config=bd.EstimationConfig(hessian=False))
    with pytest.raises(SpecificationError, match="supply="):
        bd.fitted_costs(demand)
