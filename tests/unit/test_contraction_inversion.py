"""The inner loop recovers known mean utilities: the logit closed form and simulated truth.

References: with Sigma = Pi = 0 the model is the plain logit, whose inverse is the closed form
delta_jt = log s_jt - log s_0t (Berry 1994, eq. 6); on simulated data the shares are built from
a known delta by an independent per-market loop (contraction_data.py), and the contraction returns
that delta.
"""

from __future__ import annotations

import numpy as np
import pytest
from contraction_data import simulated

from blpdemand import Problem
from blpdemand._types import Status
from blpdemand.solve.contraction import InnerLoop
from blpdemand.solve.fixed_point import FixedPointConfig
from blpdemand.solve.inversion import solve_delta

# (method, compiled): Anderson and "auto" run the compiled kernel by default; compiled=False
# keeps the numpy block solvers (the reference implementation) under test as well.
METHODS = (("auto", True), ("auto", False), ("squarem", True), ("simple", True),
           ("anderson", True), ("anderson", False), ("newton", True))


@pytest.mark.parametrize("method, compiled", METHODS)
def test_zero_sigma_is_logit_closed_form(method, compiled, nevo_products, nevo_agents):
    # Reference: Berry (1994) closed form log s - log s0; tolerance 1e-12 absolute.
    problem = Problem(nevo_products, linear="prices", nonlinear="1 + prices + sugar + mushy",
                      agents=nevo_agents, absorb="C(product_ids)",
                      instruments=[f"demand_instruments{k}" for k in range(20)])
    layout, theta = problem.layout(np.diag([1.0, 1.0, 1.0, 1.0]))
    start = problem.products.logit_delta + 0.3  # start away from the answer
    result = solve_delta(problem, layout, np.zeros_like(theta), delta0=start,
                         config=FixedPointConfig(method=method, compiled=compiled))
    assert result.converged and result.status is Status.CONVERGED
    assert np.max(np.abs(result.delta - problem.products.logit_delta)) < 1e-12


@pytest.mark.parametrize("method, compiled", METHODS)
def test_recovers_simulated_delta_in_padded_blocks(method, compiled):
    # Reference: the delta that generated the shares (simulation with known truth); 1e-11.
    problem, layout, theta, truth = simulated()
    result = solve_delta(problem, layout, theta,
                         config=FixedPointConfig(method=method, compiled=compiled))
    assert result.converged and result.failed_markets.size == 0
    assert np.max(np.abs(result.delta - truth)) < 1e-11
    assert result.max_change < 1e-14


def test_zero_sigma_logit_on_simulated():
    # Reference: closed form log s - log s0 on unequal markets (padding); 1e-12.
    problem, layout, theta, _ = simulated(seed=3)
    result = solve_delta(problem, layout, np.zeros_like(theta))
    assert np.max(np.abs(result.delta - problem.products.logit_delta)) < 1e-12


def test_warm_start_and_cache_reuse():
    # Reference: truth from the simulation; a warm start at the answer needs one evaluation
    # per market, and a repeated call at the same theta returns the stored result.
    problem, layout, theta, truth = simulated(seed=1)
    result = solve_delta(problem, layout, theta, delta0=truth)
    assert result.iterations <= 2 and np.max(np.abs(result.delta - truth)) < 1e-13
    loop = InnerLoop(problem, layout)
    first = loop.solve(theta)
    assert loop.solve(theta) is first
    with_jacobian = loop.solve(theta, jacobian=True)
    assert with_jacobian.jacobian is not None
    assert np.array_equal(with_jacobian.delta, first.delta)
    moved = loop.solve(theta * 1.01)  # warm-started from the last delta
    assert moved.converged and moved.evaluations < first.evaluations


def test_legacy_keywords_override_config():
    # Reference: the config's own fields; tol/max_iterations keywords of the reference API.
    problem, layout, theta, _ = simulated(seed=2)
    result = solve_delta(problem, layout, theta, max_iterations=2, tol=1e-14)
    assert not result.converged
    assert result.status is Status.MAX_EVALUATIONS
    assert result.iterations <= 2
