"""simulate(): shares equal the model's closed form / an independent loop over draws."""

from __future__ import annotations

import numpy as np
import pytest

from blpdemand.errors import SpecificationError
from blpdemand.model.simulation import simulate


def test_pure_logit_shares_invert_to_the_truth() -> None:
    # Reference: Berry (1994) closed form log(s_j/s_0) = x'beta + alpha p + xi; tolerance 1e-12.
    sim = simulate(markets=20, products=5, rng=1)
    d = sim.products
    s0 = 1.0 - d.groupby("market_ids")["shares"].transform("sum")
    beta = sim.truth["beta"]
    delta = (beta["1"] + sim.truth["alpha"] * d["prices"] + beta["x1"] * d["x1"]
             + beta["x2"] * d["x2"] + d["xi"])
    np.testing.assert_allclose(np.log(d["shares"] / s0), delta, atol=1e-12)
    assert sim.agents is None and sim.nonlinear is None
    assert (d["prices"] > 0).all() and set(sim.instruments) == {"w1", "w2"}


def test_random_coefficient_shares_match_a_loop_over_draws() -> None:
    # Reference: a plain Python loop over agents of one market, tolerance 1e-13.
    sim = simulate(markets=3, products=4, sigma={"x1": 1.0, "prices": 0.3, "1": 0.5},
                   draws=50, rng=2)
    assert sim.nonlinear == "1 + x1 + prices"
    d, a = sim.products, sim.agents
    assert a is not None and list(a.columns) == ["market_ids", "weights", "nodes0", "nodes1",
                                                 "nodes2"]
    t = 1
    rows, agents = d[d.market_ids == t], a[a.market_ids == t]
    beta = sim.truth["beta"]
    delta = (beta["1"] + sim.truth["alpha"] * rows.prices + beta["x1"] * rows.x1
             + beta["x2"] * rows.x2 + rows.xi).to_numpy()
    sd = sim.truth["sigma"]
    shares = np.zeros(len(rows))
    for _, agent in agents.iterrows():
        u = (delta + sd["1"] * agent.nodes0 + sd["x1"] * agent.nodes1 * rows.x1.to_numpy()
             + sd["prices"] * agent.nodes2 * rows.prices.to_numpy())
        shares += agent.weights * np.exp(u) / (1.0 + np.exp(u).sum())
    np.testing.assert_allclose(rows.shares.to_numpy(), shares, rtol=1e-13)
    np.testing.assert_allclose(sim.sigma_matrix, np.diag([0.5, 1.0, 0.3]))


def test_reproducible_and_endogenous() -> None:
    # Reference: same seed -> identical data; prices rise with xi by construction (rho > 0).
    a, b = simulate(rng=5), simulate(rng=5)
    assert a.products.equals(b.products)
    assert not a.products.equals(simulate(rng=6).products)
    d = simulate(markets=200, rng=3).products
    assert np.corrcoef(np.log(d.prices), d.xi)[0, 1] > 0.3


def test_bad_options() -> None:
    with pytest.raises(SpecificationError, match="alpha"):
        simulate(alpha=1.0)
    with pytest.raises(SpecificationError, match="sigma names 'z'"):
        simulate(sigma={"z": 1.0})
    with pytest.raises(SpecificationError, match="gamma"):
        simulate(gamma=[1.0])
    with pytest.raises(SpecificationError, match="markets"):
        simulate(markets=0)


def test_true_draws_let_the_contraction_recover_delta() -> None:
    # Reference: the BLP contraction (Berry, Levinsohn, Pakes 1995) at the true Sigma with the
    # returned agents must give back the true delta, since shares were computed with the same
    # draws; tolerance 1e-10.
    from blpdemand.model.problem import Problem
    from blpdemand.solve.inversion import solve_delta

    sim = simulate(markets=4, products=5, sigma={"prices": 0.4, "x1": 1.0}, draws=200, rng=4)
    problem = Problem(sim.products, linear=sim.linear, nonlinear=sim.nonlinear,
                      agents=sim.agents, instruments=list(sim.instruments))
    layout, theta = problem.layout(sigma=sim.sigma_matrix)
    result = solve_delta(problem, layout, theta)
    d = problem.products.frame
    beta = sim.truth["beta"]
    truth = (beta["1"] + sim.truth["alpha"] * d.prices + beta["x1"] * d.x1 + beta["x2"] * d.x2
             + d.xi).to_numpy()
    np.testing.assert_allclose(result.delta, truth, atol=1e-10)
