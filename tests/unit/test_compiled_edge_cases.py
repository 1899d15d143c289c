"""The compiled Anderson kernel (solve.anderson_compiled, solve.block_inversion) on edge cases.

References: shares built from a known delta by a per-market log-sum-exp loop written here
(simulated truth), the logit inverse in closed form at Sigma = 0, and the numpy block
solvers (``FixedPointConfig(compiled=False)``) only as a cross-check of statuses.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from contraction_data import simulated

from blpdemand import Problem
from blpdemand.solve import contraction
from blpdemand.solve.anderson_compiled import solve_markets
from blpdemand.solve.block_inversion import ContractionMap
from blpdemand.solve.contraction import solve_delta
from blpdemand.solve.fixed_point import FixedPointConfig, FixedPointStatus, solve_fixed_point


def _markets(deltas: list[np.ndarray], *, agents: int = 20, sigma: tuple[float, float] = (0.8, 0.5),
             seed: int = 0) -> tuple[Problem, np.ndarray, np.ndarray]:
    """One market per delta; shares from that delta by an independent log-sum-exp loop."""
    rng = np.random.default_rng(seed)
    rows, agent_rows = [], []
    for t, delta in enumerate(deltas):
        J = delta.size
        prices = 1.0 + rng.uniform(size=J)
        nodes = rng.normal(size=(agents, 2))
        weights = np.full(agents, 1.0 / agents)
        u = delta[:, None] + np.column_stack([np.ones(J), prices]) @ (nodes * sigma).T  # (J, I)
        top = np.maximum(u.max(axis=0), 0.0)
        p = np.exp(u - top) / (np.exp(-top) + np.exp(u - top).sum(axis=0))
        shares = p @ weights
        for j in range(J):
            rows.append({"market_ids": t, "shares": shares[j], "prices": prices[j],
                         "z": rng.normal()})
        for i in range(agents):
            agent_rows.append({"market_ids": t, "weights": weights[i], "nodes0": nodes[i, 0],
                               "nodes1": nodes[i, 1]})
    problem = Problem(pd.DataFrame(rows), linear="prices", nonlinear="1 + prices",
                      agents=pd.DataFrame(agent_rows), instruments=["z"])
    _, theta = problem.layout(np.diag(sigma))
    return problem, theta, problem.products.sort(np.concatenate(deltas))


def _kernel_inputs(problem, layout, theta):
    (data,) = contraction._prepare(problem, layout, FixedPointConfig().block_bytes)
    utility = contraction._block_utility(data, contraction._coefficient_map(layout, theta))
    return data, utility


def test_tiny_shares_converge_at_default_tolerance():
    # Reference: simulated truth. A share of about 1e-100 puts delta near -230; the step
    # x + (log s_obs - log s) must be formed with the difference first, or it rounds at the ulp
    # of 460 (5.7e-14) and never meets tol = 1e-14 (the kernel used to stall there: status
    # MAX_EVALUATIONS with "anderson", a SQUAREM fallback with "auto"). Tolerance 1e-12.
    problem, theta, truth = _markets([np.array([-1.0, -2.0, -230.0, -1.5]),
                                      np.array([-1.0, -460.0, -0.5])])
    layout, _ = problem.layout(np.diag([0.8, 0.5]))
    result = solve_delta(problem, layout, theta, config=FixedPointConfig(method="anderson"))
    assert result.converged and result.max_change < 1e-14
    assert np.max(np.abs(result.delta - truth)) < 1e-12


def test_nonfinite_start_in_one_product_fails_its_market_at_once():
    # Reference: hand reasoning and the numpy Anderson. A start of -inf for one product gives
    # s_j = 0 and G_j = -inf + inf = NaN at the first evaluation: that market must fail there
    # (NONFINITE, change NaN), as the numpy solver reports it. The kernel used to let a later
    # product's finite change overwrite the NaN in the step norm, iterate on NaN, and return a
    # delta with NaN and a finite "last change". Other markets: truth to 1e-11.
    problem, layout, theta, truth = simulated(seed=3)
    data, utility = _kernel_inputs(problem, layout, theta)
    args = (utility.exp_mu, utility.outside, utility.weights, data.log_shares,
            data.product_sizes, data.agent_sizes)
    for bad in (-np.inf, np.inf, np.nan):
        x0 = data.block.gather_products(problem.products.logit_delta)
        x0[1, 0] = bad  # market 1 has 7 products: the bad one is first
        result = solve_markets(*args, x0, FixedPointConfig(method="anderson"))
        reference = solve_fixed_point(ContractionMap(utility, data.shares, data.pad), x0,
                                      FixedPointConfig(method="anderson", compiled=False))
        assert result.codes[1] == reference.codes[1] == 2
        assert result.evaluations[1] == reference.evaluations[1] == 1
        assert np.isnan(result.change[1])
        assert np.array_equal(result.x[1], x0[1], equal_nan=True)  # no finite iterate: the start
        others = np.delete(np.arange(x0.shape[0]), 1)
        assert np.all(result.codes[others] == 0)
        exact = data.block.gather_products(truth)
        real = ~data.pad.astype(bool)
        assert np.max(np.abs(result.x[others][real[others]] - exact[others][real[others]])) < 1e-11


def test_fallback_skips_markets_broken_at_the_start():
    # Reference: simulated truth. From delta0 = +50 Anderson stalls (code 1) and "auto" solves
    # again with SQUAREM; from +800 market m0 overflows at its first evaluation (NaN). m0 must
    # fail alone: retried with the others, its NaN row kept the batched SQUAREM from closing
    # any row, and all six markets used to fail. Tolerance 1e-12 on the others.
    problem, layout, theta, truth = simulated(seed=3)
    start = np.full(problem.N, 50.0)
    first = problem.products.markets.slice(0)
    start[first] = 800.0
    result = solve_delta(problem, layout, theta, delta0=start)
    assert result.status is FixedPointStatus.NONFINITE
    assert result.failed_markets.tolist() == ["m0"]
    rest = np.ones(problem.N, dtype=bool)
    rest[first] = False
    assert np.max(np.abs(result.delta[rest] - truth[rest])) < 1e-12
