"""Post-estimation on simulated markets with known truth.

fitted_from_truth reproduces the simulated shares (the simulation's own computation, 1e-12),
in the simulation's own model (a lognormal price coefficient, nests with random
coefficients), and the problem's inversion ``solve_delta`` gives its delta back from them;
in plain logit a merger's equilibrium in alpha-p units does not depend on alpha, so true and
mis-estimated demand give the same post-merger shares while price changes scale with 1/alpha.
"""

from __future__ import annotations

import numpy as np
import pytest

import blpdemand as bd
from blpdemand.errors import SpecificationError
from blpdemand.model.demand import market_demands
from blpdemand.model.fitted import FittedDemand
from blpdemand.results.counterfactual import fitted_from_truth, merger_comparison, simulate_merger


def test_truth_reproduces_simulated_shares() -> None:
    sim = bd.simulate(markets=4, products=5, sigma={"prices": 0.2, "x1": 1.0}, draws=100, rng=1)
    fitted = fitted_from_truth(sim)
    shares = np.concatenate([d.shares() for d in market_demands(fitted)])
    np.testing.assert_allclose(shares, fitted.problem.products.shares, rtol=1e-12)


SIMULATIONS = {
    "logit": {},
    "random coefficients": {"sigma": {"x1": 1.0}},
    "lognormal, median alpha -1": {"sigma": {"x1": 1.0, "prices": 0.4}, "lognormal": True},
    "lognormal, median alpha -2.5": {"sigma": {"prices": 0.4}, "alpha": -2.5,
                                     "lognormal": True},
    "random coefficients nested logit": {"sigma": {"x1": 1.0}, "nests": 2,
                                         "nesting_rho": 0.5},
}


@pytest.mark.parametrize("kind", SIMULATIONS)
def test_truth_is_the_simulated_model(kind: str) -> None:
    # shares inverted at the true theta give back delta = X1 beta + xi: the truth is the model
    # that made the shares (a lognormal or nested simulation was once read as a plain one, its
    # shares then off by 0.38 and 0.02), and solve_delta inverts with the problem's own loop
    sim = bd.simulate(markets=4, products=5, draws=40, rng=3, **SIMULATIONS[kind])
    truth = fitted_from_truth(sim)
    assert (truth.problem.nests is not None) == bool(sim.truth["nests"])
    assert bool(np.any(truth.problem.lognormal)) == sim.truth["lognormal"]
    inverted = bd.solve_delta(truth.problem, truth.layout, truth.theta)
    assert inverted.converged
    scale = max(1.0, float(np.abs(truth.delta).max()))
    np.testing.assert_allclose(inverted.delta, truth.delta, rtol=0, atol=1e-12 * scale)


def test_truth_of_a_plain_nested_logit_is_refused() -> None:
    sim = bd.simulate(markets=4, products=5, nests=2, nesting_rho=0.5, rng=3)
    with pytest.raises(SpecificationError, match="estimate_logit"):
        fitted_from_truth(sim)


def test_merger_comparison_logit_invariance() -> None:
    sim = bd.simulate(markets=6, products=4, firms=3, rng=2)
    truth = fitted_from_truth(sim)
    half = FittedDemand(problem=truth.problem, layout=truth.layout, theta=truth.theta,
                        beta=np.where(np.array(truth.problem.X1.names) == "prices", 0.5, 1.0)
                        * truth.beta, delta=truth.delta)
    table = merger_comparison({"truth": truth, "half alpha": half}, [0, 1]).to_frame()
    a, b = simulate_merger(truth, [0, 1]), simulate_merger(half, [0, 1])
    np.testing.assert_allclose(b.shares, a.shares, rtol=1e-9)
    np.testing.assert_allclose(b.prices - b.prices_before, 2 * (a.prices - a.prices_before), rtol=1e-8)
    np.testing.assert_allclose(table.loc["truth", "change in CS"], np.mean(a.consumer_surplus_change),
                               rtol=1e-12)
    assert table.loc["truth", "price change, merging (%)"] > 0


def test_bertrand_simulation_costs_are_recovered() -> None:
    # Known truth: markups implied by the true demand at the simulated Bertrand prices give back
    # the simulated marginal costs (rtol 1e-8; the solver's tolerance is 1e-12), with a random
    # coefficient on prices.
    sim = bd.simulate(markets=5, products=6, firms=3, sigma={"prices": 0.2, "x1": 1.0}, draws=200,
                      rng=3, pricing="bertrand")
    truth = fitted_from_truth(sim)
    np.testing.assert_allclose(bd.compute_costs(truth), sim.products["costs"], rtol=1e-8)
    shares = np.concatenate([d.shares() for d in market_demands(truth)])
    np.testing.assert_allclose(shares, truth.problem.products.shares, rtol=1e-12)
    # Re-solving the unchanged market returns the simulated prices.
    again = bd.compute_prices(truth)
    np.testing.assert_allclose(again.prices, sim.products["prices"], rtol=1e-9)


def test_bertrand_simulation_logit_closed_form() -> None:
    # Plain logit: p - c = -1 / (alpha (1 - s_f)) for each product of firm f.
    sim = bd.simulate(markets=4, products=5, firms=2, alpha=-1.5, rng=4, pricing="bertrand")
    data = sim.products
    firm_share = data.groupby(["market_ids", "firm_ids"])["shares"].transform("sum")
    np.testing.assert_allclose(data["prices"] - data["costs"], 1 / (1.5 * (1 - firm_share)), rtol=1e-9)
