"""bd.simulate draws nested models (issue 20): the nested logit's linear IV regression and the
random-coefficients nested logit recover the rho they were simulated with."""

from __future__ import annotations

import numpy as np
import pandas as pd

import blpdemand as bd


def _nest_sums(products: pd.DataFrame) -> pd.DataFrame:
    cell = products.groupby(["market_ids", "nesting_ids"])
    return products.assign(**{f"nest_other_{c}": cell[c].transform("sum") - products[c]
                              for c in ("x1", "x2", "w1", "w2")})


def test_nested_logit_recovers_rho() -> None:
    sim = bd.simulate(markets=300, products=8, nests=2, nesting_rho=0.6, rng=4, xi_sd=0.3)
    products = _nest_sums(sim.products)
    results = bd.estimate_logit(products, linear=sim.linear, nesting="nesting_ids",
                                instruments=["w1", "w2", "nest_other_x1", "nest_other_x2",
                                             "nest_other_w1", "nest_other_w2"])
    truth = {"rho": 0.6, "prices": sim.truth["alpha"], **sim.truth["beta"]}
    z = (results.params - pd.Series(truth)[results.params.index]) / results.bse
    assert np.all(np.abs(z) < 2.5), z.round(2).to_dict()


def test_random_coefficients_nested_logit_recovers_rho_and_sigma() -> None:
    sim = bd.simulate(markets=150, products=8, sigma={"x1": 1.0}, draws=100, nests=2,
                      nesting_rho=0.5, rng=6, xi_sd=0.3)
    products = _nest_sums(sim.products)
    problem = bd.Problem(products, linear=sim.linear, nonlinear=sim.nonlinear, agents=sim.agents,
                         nesting="nesting_ids",
                         instruments=["w1", "w2", "nest_other_x1", "nest_other_x2",
                                      "nest_other_w1", "nest_other_w2"])
    results = bd.estimate(problem, sigma=[0.5], rho=0.3,
                          config=bd.EstimationConfig(method="2s", starts=0))
    z = (results.theta - [1.0, 0.5]) / results.theta_se
    assert results.converged and np.all(np.abs(z) < 2.5), (results.theta, results.theta_se)
