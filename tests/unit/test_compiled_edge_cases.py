"""The compiled Anderson kernel (solve.anderson_compiled, solve.block_inversion) on edge cases.

References: shares built from a known delta by a per-market log-sum-exp loop written here
(simulated truth), the logit inverse in closed form at Sigma = 0, and the numpy block
solvers (``FixedPointConfig(compiled=False)``) only as a cross-check of statuses.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.optimize
from contraction_data import simulated

from blpdemand import Integration, Problem
from blpdemand._types import Status
from blpdemand.solve import contraction, optimizer
from blpdemand.solve.anderson_compiled import solve_markets
from blpdemand.solve.block_inversion import ContractionMap
from blpdemand.solve.contraction import InnerLoop
from blpdemand.solve.fixed_point import ULPS, FixedPointConfig, solve_fixed_point
from blpdemand.solve.inversion import solve_delta


def _markets(deltas: list[np.ndarray], *, agents: int = 20, sigma: tuple[float, float] = (0.8, 0.5),
             seed: int = 0, prices: list[np.ndarray] | None = None,
             price_nodes: float = 0.0) -> tuple[Problem, np.ndarray, np.ndarray]:
    """One market per delta; shares from that delta by an independent log-sum-exp loop.

    ``price_nodes`` shifts the price nodes' mean (with a negative sigma on prices, every agent's
    mu is then about -price_nodes * price)."""
    rng = np.random.default_rng(seed)
    rows, agent_rows = [], []
    for t, delta in enumerate(deltas):
        J = delta.size
        prices_t = 1.0 + rng.uniform(size=J) if prices is None else prices[t]
        nodes = rng.normal(size=(agents, 2)) + [0.0, price_nodes]
        weights = np.full(agents, 1.0 / agents)
        u = delta[:, None] + np.column_stack([np.ones(J), prices_t]) @ (nodes * sigma).T  # (J, I)
        top = np.maximum(u.max(axis=0), 0.0)
        p = np.exp(u - top) / (np.exp(-top) + np.exp(u - top).sum(axis=0))
        shares = p @ weights
        for j in range(J):
            rows.append({"market_ids": t, "shares": shares[j], "prices": prices_t[j],
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

def _check_truth_and_jacobian(problem, layout, theta, truth, tol):
    """delta(theta) equals the truth (user row order) to ``tol``; d delta / d theta equals
    central finite differences of delta (h = 1e-6) to 1e-7 relative to its scale."""
    result = solve_delta(problem, layout, theta, jacobian=True)
    assert result.converged
    assert np.max(np.abs(result.delta - problem.products.sort(truth))) < tol
    h, fd = 1e-6, np.empty_like(result.jacobian)
    for p in range(theta.size):
        up, down = theta.copy(), theta.copy()
        up[p] += h
        down[p] -= h
        fd[:, p] = (solve_delta(problem, layout, up).delta
                    - solve_delta(problem, layout, down).delta) / (2 * h)
    assert np.max(np.abs(result.jacobian - fd)) < 1e-7 * np.max(np.abs(fd))



@pytest.mark.parametrize("compiled", [True, False])
def test_tiny_shares_converge_at_default_tolerance(compiled):
    # Reference: simulated truth. A share of about 1e-100 puts delta near -230; the step
    # x + (log s_obs - log s) must be formed with the difference first, or it rounds at the ulp
    # of 460 (5.7e-14) and never meets tol = 1e-14 (the kernel used to stall there: status
    # MAX_EVALUATIONS with "anderson", a SQUAREM fallback with "auto"). Tolerance 1e-12.
    problem, theta, truth = _markets([np.array([-1.0, -2.0, -230.0, -1.5]),
                                      np.array([-1.0, -460.0, -0.5])])
    layout, _ = problem.layout(np.diag([0.8, 0.5]))
    result = solve_delta(problem, layout, theta,
                         config=FixedPointConfig(method="anderson", compiled=compiled))
    # tol, or two ulps of |delta| where 1e-14 is below delta's float spacing (460: 5.7e-14)
    assert result.converged and result.max_change < max(1e-14, ULPS * 460.0)
    assert np.max(np.abs(result.delta - truth)) < 1e-12


@pytest.mark.parametrize("compiled", [True, False])
def test_large_deltas_converge_at_default_tolerance(compiled):
    # Reference: simulated truth. Every agent's mu is about -100 x price (a price coefficient
    # of mean -100 left to the random part), so delta is 100 to 200 with ordinary shares: the
    # step rounding described above made Anderson stall here (MAX_EVALUATIONS; "auto" needed
    # its SQUAREM fallback, twice the evaluations; in about 2% of such markets, one of these
    # three with seed 5). Tolerance 1e-12.
    rng = np.random.default_rng(5)
    prices = [1.0 + rng.uniform(size=J) for J in (4, 3, 5)]
    deltas = [100.0 * p + rng.normal(-2.0, 0.5, size=p.size) for p in prices]
    problem, theta, truth = _markets(deltas, sigma=(0.8, -1.0), prices=prices, price_nodes=100.0,
                                     seed=5)
    layout, _ = problem.layout(np.diag([0.8, -1.0]))
    result = solve_delta(problem, layout, theta,
                         config=FixedPointConfig(method="anderson", compiled=compiled))
    assert result.iterations < 100  # no stall at a tolerance below delta's float spacing
    assert result.converged and np.max(np.abs(result.delta - truth)) < 1e-12


def test_nonfinite_start_in_one_product_fails_its_market_at_once():
    # Reference: hand reasoning and the numpy Anderson. A start of -inf for one product gives
    # s_j = 0 and G_j = -inf + inf = NaN at the first evaluation: that market must fail there
    # (NONFINITE, change NaN), as the numpy solver reports it. The kernel used to let a later
    # product's finite change overwrite the NaN in the step norm, iterate on NaN, and return a
    # delta with NaN and a finite "last change". Other markets: truth to 1e-11.
    problem, layout, theta, truth = simulated(seed=3)
    data, utility = _kernel_inputs(problem, layout, theta)
    args = (utility.exp_mu, utility.outside, utility.weights, data.shares,
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
    assert result.status is Status.NONFINITE
    assert result.failed_markets.tolist() == ["m0"]
    rest = np.ones(problem.N, dtype=bool)
    rest[first] = False
    assert np.max(np.abs(result.delta[rest] - truth[rest])) < 1e-12


def _one_step(problem, layout, theta, x0):
    """G(x0) = x0 + log s_obs - log s(x0) by an independent per-market loop (no blocks)."""
    sigma, _ = layout.unpack(theta)
    agents = problem.agents
    out = np.empty(problem.N)
    for t in range(problem.T):
        rows = problem.products.markets.slice(t)
        people = agents.markets.slice(t)
        u = x0[rows][:, None] + problem.X2.values[rows] @ sigma @ agents.nodes[people].T
        top = np.maximum(u.max(axis=0), 0.0)
        p = np.exp(u - top) / (np.exp(-top) + np.exp(u - top).sum(axis=0))
        out[rows] = x0[rows] + np.log(problem.products.shares[rows]) - np.log(p @ agents.weights[people])
    return out


@pytest.mark.parametrize("budget", [1, 2])
def test_tiny_budgets_report_and_keep_the_last_step(budget):
    # Reference: the contraction step G written here market by market. With one evaluation
    # every market stops at G(x0) (MAX_EVALUATIONS); with two, Anderson's first step is the
    # plain step, so x = G(G(x0)). Tolerance 1e-12.
    problem, theta, _ = _markets([np.array([-1.0, -2.0, -0.5]), np.array([-1.5]),
                                  np.array([-0.3, -2.0, -1.0, -1.2, -0.7])])
    layout, _ = problem.layout(np.diag([0.8, 0.5]))
    start = problem.products.logit_delta
    expected = _one_step(problem, layout, theta, start)
    if budget == 2:
        expected = _one_step(problem, layout, theta, expected)
    for method in ("auto", "anderson"):
        result = solve_delta(problem, layout, theta,
                             config=FixedPointConfig(method=method, max_evaluations=budget))
        assert result.status is Status.MAX_EVALUATIONS and result.iterations == budget
        assert len(result.failed_markets) == 3 and result.jacobian is None
        assert np.max(np.abs(result.delta - expected)) < 1e-12


@pytest.mark.parametrize("memory", [1, 4, 7, 40])
def test_memory_at_and_beyond_the_product_count(memory):
    # Reference: simulated truth; markets of 1 to 7 products, so memory >= J_t in some or all
    # (a singular least squares, kept finite by the ridge). Tolerance 1e-12.
    problem, layout, theta, truth = simulated(seed=5)
    result = solve_delta(problem, layout, theta,
                         config=FixedPointConfig(method="anderson", memory=memory))
    assert result.converged and np.max(np.abs(result.delta - truth)) < 1e-12


def test_one_product_and_one_agent_markets():
    # Reference: simulated truth; markets with one product, with one agent, and both, in one
    # padded block. Tolerance 1e-12.
    rows, agent_rows, truth = [], [], []
    rng = np.random.default_rng(8)
    for t, (J, I) in enumerate([(1, 1), (1, 9), (4, 1), (3, 7)]):
        delta, prices = rng.normal(-1.0, 0.5, size=J), 1.0 + rng.uniform(size=J)
        nodes = rng.normal(size=I)
        u = delta[:, None] + 0.9 * prices[:, None] * nodes[None, :]
        p = np.exp(u) / (1.0 + np.exp(u).sum(axis=0))
        truth.append(delta)
        rows += [{"market_ids": t, "shares": p[j].mean(), "prices": prices[j], "z": rng.normal()}
                 for j in range(J)]
        agent_rows += [{"market_ids": t, "weights": 1.0 / I, "nodes0": nodes[i]} for i in range(I)]
    problem = Problem(pd.DataFrame(rows), linear="prices", nonlinear="0 + prices",
                      agents=pd.DataFrame(agent_rows), instruments=["z"])
    layout, theta = problem.layout(np.array([[0.9]]))
    for memory in (1, 5):
        result = solve_delta(problem, layout, theta, config=FixedPointConfig(memory=memory))
        assert result.converged
        assert np.max(np.abs(result.delta - problem.products.sort(np.concatenate(truth)))) < 1e-12


@pytest.mark.parametrize("tol", [1e-2, 1e-16, 1e-300])
def test_loose_and_unreachable_tolerances(tol):
    # Reference: simulated truth. tol 1e-2 stops early (within 0.1 of the truth, the
    # contraction's modulus being well below 0.9 here); tolerances below rounding must end
    # cleanly, either exactly at the fixed point (step 0) or reported, never NaN or a hang.
    problem, layout, theta, truth = simulated(seed=3)
    result = solve_delta(problem, layout, theta, config=FixedPointConfig(tol=tol))
    assert np.all(np.isfinite(result.delta))
    if tol == 1e-2:
        assert result.converged and np.max(np.abs(result.delta - truth)) < 0.1
    else:
        assert result.converged or result.status is Status.MAX_EVALUATIONS
        assert result.max_change < 1e-14 and np.max(np.abs(result.delta - truth)) < 1e-13


@pytest.mark.parametrize("level", [-50.0, 50.0])
def test_far_starts(level):
    # Reference: simulated truth. From +50 every outside share is ~e^-50: Anderson stalls on the
    # unidentified common level and "auto" must finish with SQUAREM. Tolerance 1e-12.
    problem, layout, theta, truth = simulated(seed=3)
    result = solve_delta(problem, layout, theta, delta0=np.full(problem.N, level))
    assert result.converged and np.max(np.abs(result.delta - truth)) < 1e-12


def test_negative_sparse_grid_weights():
    # Reference: simulated truth with the same Smolyak nodes and weights (some negative; the
    # shares stay positive) by a loop here, and d delta / d theta against central finite
    # differences of delta(theta) (h = 1e-6, tolerance 1e-7 relative to its scale).
    rule = Integration("sparse_grid", 4)
    nodes, weights = rule.nodes_weights(2)
    assert np.any(weights < 0)
    sigma = np.array([0.8, 1.5])
    rng = np.random.default_rng(0)
    rows, truth = [], []
    for t, J in enumerate((3, 5, 1, 6)):
        prices, delta = 1.0 + rng.uniform(size=J), rng.normal(-1.0, 0.7, size=J)
        u = delta[:, None] + np.column_stack([np.ones(J), prices]) @ (nodes * sigma).T
        shares = (np.exp(u) / (1.0 + np.exp(u).sum(axis=0))) @ weights
        assert np.all(shares > 0)
        truth.append(delta)
        rows += [{"market_ids": t, "shares": shares[j], "prices": prices[j], "z": rng.normal()}
                 for j in range(J)]
    problem = Problem(pd.DataFrame(rows), linear="prices", nonlinear="1 + prices", agents=rule,
                      instruments=["z"])
    layout, theta = problem.layout(np.diag(sigma))
    _check_truth_and_jacobian(problem, layout, theta, np.concatenate(truth), 1e-12)


def test_shift_in_some_markets_of_a_padded_block():
    # Reference: simulated truth (log-sum-exp loop) and central finite differences of
    # delta(theta). Markets with prices near 1 (no shift) and near 20-50 (mu passes SHIFT_ABOVE
    # in one: exp(mu - m_i) with outside term exp(-m_i) down to 1e-39) in one padded block, so
    # ExpUtility.shifted is False while some outside terms are not 1. delta to 1e-11; the
    # Jacobian to 1e-7 relative to its scale (h = 1e-6).
    rng = np.random.default_rng(5)
    deltas, rows, agent_rows = [], [], []
    sigma = np.array([0.5, 1.5])
    for t, (J, scale) in enumerate([(3, 1.0), (5, 20.0), (4, 1.0), (2, 25.0)]):
        I = 15 + t
        prices, nodes = scale * (1.0 + rng.uniform(size=J)), rng.normal(size=(I, 2))
        delta = rng.normal(-1.0, 0.5, size=J)
        u = delta[:, None] + np.column_stack([np.ones(J), prices]) @ (nodes * sigma).T
        top = np.maximum(u.max(axis=0), 0.0)
        shares = (np.exp(u - top) / (np.exp(-top) + np.exp(u - top).sum(axis=0))).mean(axis=1)
        deltas.append(delta)
        rows += [{"market_ids": t, "shares": shares[j], "prices": prices[j], "z": rng.normal()}
                 for j in range(J)]
        agent_rows += [{"market_ids": t, "weights": 1.0 / I, "nodes0": nodes[i, 0],
                        "nodes1": nodes[i, 1]} for i in range(I)]
    problem = Problem(pd.DataFrame(rows), linear="prices", nonlinear="1 + prices",
                      agents=pd.DataFrame(agent_rows), instruments=["z"])
    layout, theta = problem.layout(np.diag(sigma))
    data, utility = _kernel_inputs(problem, layout, theta)
    assert data.pad is not None and not utility.shifted
    assert utility.outside.min() < 1e-10 and np.any(np.all(utility.outside == 1.0, axis=1))
    _check_truth_and_jacobian(problem, layout, theta, np.concatenate(deltas), 1e-11)


def test_inner_loop_after_a_failed_theta():
    # Reference: simulated truth and the numpy solvers (cross-check). An InnerLoop with cached
    # exp(mu) and warm starts, asked for nearby thetas, then an absurd one (every market
    # fails), then the true theta: the failure must not leak into the warm start or the cache.
    problem, layout, theta, truth = simulated(seed=3)
    loop = InnerLoop(problem, layout)
    for scale in (1.3, 0.7):
        other = solve_delta(problem, layout, scale * theta,
                            config=FixedPointConfig(compiled=False))
        assert np.max(np.abs(loop.solve(scale * theta).delta - other.delta)) < 1e-12
    broken = loop.solve(np.full(theta.size, 1e4), jacobian=True)
    assert not broken.converged and broken.jacobian is None
    result = loop.solve(theta, jacobian=True)
    assert result.converged and np.max(np.abs(result.delta - truth)) < 1e-12
    fresh = solve_delta(problem, layout, theta, jacobian=True, config=FixedPointConfig(compiled=False))
    assert np.max(np.abs(result.jacobian - fresh.jacobian)) < 1e-10


def test_lbfgsb_restart_stays_in_bounds(monkeypatch):
    # Reference: the closed-form minimum of a convex quadratic on a box (the bound on theta_2
    # binds: theta = (0.65, -1)). The first L-BFGS-B run is made to stop inside the snapping band
    # of the bound; the restart must start from the snapped point, evaluate only inside the box,
    # and end at the constrained minimum with a zero projected gradient.
    A, m = np.array([[4.0, 1.0], [1.0, 3.0]]), np.array([0.7, -1.2])
    seen = []

    def quadratic(theta):
        seen.append(theta.copy())
        d = theta - m
        return float(d @ A @ d / 2), A @ d

    real, starts = scipy.optimize.minimize, []

    def first_stops_short(fun, x0, **kwargs):
        starts.append(np.array(x0))
        if len(starts) == 1:
            return scipy.optimize.OptimizeResult(x=np.array([0.3, -1.0 + 1e-6]), success=False,
                                                 nit=3, message="ABNORMAL_TERMINATION")
        return real(fun, x0, **kwargs)

    monkeypatch.setattr(optimizer.scipy.optimize, "minimize", first_stops_short)
    bounds = [(-5.0, 5.0), (-1.0, 5.0)]
    result = optimizer.minimize(quadratic, np.array([3.0, 2.0]), method="l-bfgs-b",
                                bounds=bounds, gtol=1e-8, max_iterations=100)
    assert len(starts) == 2 and np.array_equal(starts[1], [0.3, -1.0])  # snapped, then restarted
    assert all(-1.0 <= t[1] <= 5.0 and -5.0 <= t[0] <= 5.0 for t in seen)
    assert result.converged and "restarted once" in result.message
    np.testing.assert_allclose(result.theta, [0.65, -1.0], atol=1e-8)
