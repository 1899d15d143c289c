"""Costs from the estimated cost function of a covariance-restricted joint estimate
(``bd.counterfactual_costs``, ``bd.fitted_costs``) against closed forms.

References: with the estimation data and omega fixed, f^{-1}(x3' gamma + omega) is the
structural c = p - eta the estimate reported (f(c) = x3' gamma + omega holds by construction of
omega); with omega = 0 it is f^{-1}(x3' gamma); a change dx3 in the cost characteristics moves
log costs by dx3' gamma (c' = c exp(dx3' gamma)) and linear costs by dx3' gamma. Tolerances:
1e-12 relative (a few roundings of log/exp on O(1) numbers).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import blpdemand as bd
from blpdemand.errors import SpecificationError


def estimate(costs: str, absorb: str | None = None) -> tuple[bd.BLPResults, Any]:
    sim = bd.simulate(markets=20, products=4, firms=2, alpha=-2.0,
                      beta={"1": 1.0, "x1": 1.0, "x2": -0.5}, gamma=[0.5, 0.5], rho=0.0,
                      pricing="bertrand", rng=3)
    agents = {"market_ids": np.arange(20), "weights": 1.0, "nodes0": 0.0, "one": 1.0}
    import pandas as pd

    problem = bd.Problem(sim.products, linear="1 + x1 + x2", nonlinear="0 + prices",
                         demographics="0 + one", agents=pd.DataFrame(agents),
                         supply="1 + w1 + w2", costs=costs, absorb_supply=absorb,
                         covariance_restrictions=True)
    results = bd.estimate(problem, pi=[[-1.5]], config=bd.EstimationConfig(starts=0))
    return results, sim.products


@pytest.mark.parametrize(("costs", "absorb"), [("linear", None), ("log", None),
                                               ("log", "C(firm_ids)")])
def test_closed_forms(costs: str, absorb: str | None) -> None:
    results, products = estimate(costs, absorb)
    assert results.marginal_costs is not None and results.omega is not None
    c = results.marginal_costs
    np.testing.assert_allclose(bd.counterfactual_costs(results), c, rtol=1e-12)
    f = np.log if costs == "log" else (lambda v: v)
    inverse = np.exp if costs == "log" else (lambda v: v)
    np.testing.assert_allclose(bd.counterfactual_costs(results, omega="zero"),
                               inverse(f(c) - results.omega), rtol=1e-12)
    if absorb is None:  # omega = 0: x3' gamma itself
        X3 = np.column_stack([np.ones(len(products)), products["w1"], products["w2"]])
        np.testing.assert_allclose(bd.counterfactual_costs(results, omega="zero"),
                                   inverse(X3 @ results.gamma), rtol=1e-12)
    # a synergy: w1 falls by 0.2 for firm 0's products
    merging = (products["firm_ids"] == 0).to_numpy()
    changed = products.assign(w1=products["w1"] - 0.2 * merging)
    gamma_w1 = results.gamma[results.problem.supply.X3.names.index("w1")]  # type: ignore
    shift = -0.2 * gamma_w1 * merging
    expected = c * np.exp(shift) if costs == "log" else c + shift
    np.testing.assert_allclose(bd.counterfactual_costs(results, changed), expected, rtol=1e-12)


def test_merger_with_omega_fixed_costs() -> None:
    # the costs a merger uses by default (implied by observed prices) are the structural costs
    # themselves: passing compute_supply_costs(results) changes nothing (1e-10: the pricing
    # fixed point's tolerance); lower costs from a synergy lower the merged firm's prices
    results, products = estimate("log")
    default = bd.simulate_merger(results, [0, 1])
    same = bd.simulate_merger(results, [0, 1], costs=bd.counterfactual_costs(results))
    np.testing.assert_allclose(same.prices, default.prices, rtol=1e-10)
    merging = (products["firm_ids"] == 0).to_numpy()
    cheaper = bd.counterfactual_costs(results, products.assign(w1=products["w1"] - merging))
    synergy = bd.simulate_merger(results, [0, 1], costs=cheaper)
    assert np.all(synergy.prices[merging] < default.prices[merging])


def test_needs_a_supply_side() -> None:
    sim = bd.simulate(markets=10, products=3, sigma={"x1": 0.5}, draws=20, rng=1)
    problem = bd.Problem(sim.products, linear=sim.linear, nonlinear=sim.nonlinear,
                         agents=sim.agents, instruments=list(sim.instruments))
    results = bd.estimate(problem, sigma=[0.5], config=bd.EstimationConfig(starts=0))
    with pytest.raises(SpecificationError, match="supply"):
        bd.counterfactual_costs(results)
    with pytest.raises(SpecificationError, match="supply"):
        bd.fitted_costs(results)
