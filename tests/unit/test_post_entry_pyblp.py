"""Entry with random coefficients and demographics against PyBLP, run live.

Reference: a PyBLP Simulation of the enlarged markets (incumbents plus entrants) with the same
beta, Sigma, Pi, xi, agents and marginal costs; ``replace_endogenous`` solves its Bertrand-Nash
prices with its own zeta iteration (atol 1e-14). Our entry prices and shares must match to 1e-9
absolute (measured: 1e-13 prices, 1e-14 shares).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.model.fitted import FittedDemand

pyblp = pytest.importorskip("pyblp")


def test_entry_prices_equal_pyblp_simulation() -> None:
    pyblp.options.verbose = False
    sim = bd.simulate(markets=3, products=4, firms=2, pricing="bertrand", rng=2,
                      sigma={"prices": 0.3, "x1": 1.0}, draws=200)
    products = sim.products
    agents = sim.agents.assign(
        income=np.random.default_rng(0).lognormal(size=len(sim.agents)))
    problem = bd.Problem(products, linear=sim.linear, nonlinear=sim.nonlinear, agents=agents,
                         demographics="0 + income", instruments=list(sim.instruments))
    sigma, pi = np.diag([0.3, 1.0]), np.array([[-0.1], [-0.3]])
    layout, theta = problem.layout(sigma=sigma, pi=pi)
    beta = np.array([-0.5, -1.0, 1.0, -0.5])          # X1: 1, prices, x1, x2
    assert problem.X1.names == ("1", "prices", "x1", "x2")
    xi = problem.products.sort(products["xi"].to_numpy())
    fitted = FittedDemand(problem=problem, layout=layout, theta=theta, beta=beta,
                          delta=problem.X1.values @ beta + xi)
    new = pd.concat([products.iloc[[0]].assign(firm_ids=99, x1=1.5, xi=0.2, costs=1.0),
                     products.iloc[[9]].assign(xi=0.1, costs=0.8)])
    cf = bd.simulate_entry(fitted, new)
    assert cf.converged

    everything = pd.concat([products, new], ignore_index=True).sort_values("market_ids",
                                                                         kind="stable")
    order = everything.index.to_numpy()
    data = everything.assign(shares=0.1).reset_index(drop=True)
    with np.errstate(all="ignore"):
        simulation = pyblp.Simulation(
            product_formulations=(pyblp.Formulation("1 + prices + x1 + x2"),
                                  pyblp.Formulation("0 + prices + x1")),
            product_data=data, beta=beta, sigma=sigma, pi=pi,
            agent_formulation=pyblp.Formulation("0 + income"), agent_data=agents,
            xi=data["xi"].to_numpy())
        reference = simulation.replace_endogenous(
            costs=cf.costs[order], prices=cf.prices[order] + 0.1,
            iteration=pyblp.Iteration("simple", {"atol": 1e-14}))
    np.testing.assert_allclose(cf.prices[order], reference.product_data.prices.ravel(),
                               rtol=0, atol=1e-9)
    np.testing.assert_allclose(cf.shares[order], reference.product_data.shares.ravel(),
                               rtol=0, atol=1e-9)
