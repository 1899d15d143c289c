"""d delta / d theta by the implicit function theorem equals finite differences.

Reference: central finite differences of the converged delta(theta) (tolerance 1e-14), step
1e-5 relative to theta; agreement to 1e-6 relative to the largest derivative of each column.
"""

from __future__ import annotations

import numpy as np
import pytest
from contraction_data import simulated

from blpdemand import Problem
from blpdemand.solve.contraction import InnerLoop, delta_jacobian
from blpdemand.solve.inversion import solve_delta


def finite_differences(problem, layout, theta, step=1e-5):
    columns = []
    start = solve_delta(problem, layout, theta).delta
    for p in range(theta.size):
        h = step * max(1.0, abs(theta[p]))
        up, down = theta.copy(), theta.copy()
        up[p] += h
        down[p] -= h
        plus = solve_delta(problem, layout, up, delta0=start)
        minus = solve_delta(problem, layout, down, delta0=start)
        assert plus.converged and minus.converged
        columns.append((plus.delta - minus.delta) / (2 * h))
    return np.column_stack(columns)


def assert_close(analytic, numeric, rtol):
    scale = np.max(np.abs(numeric), axis=0)
    assert np.all(np.max(np.abs(analytic - numeric), axis=0) <= rtol * scale)


def test_jacobian_matches_finite_differences_nevo(nevo_products, nevo_agents):
    # Reference: central differences on Nevo's data at a Pi with income, age and child terms.
    problem = Problem(nevo_products, linear="prices", nonlinear="1 + prices + sugar + mushy",
                      demographics="income + income_squared + age + child", agents=nevo_agents,
                      absorb="C(product_ids)",
                      instruments=[f"demand_instruments{k}" for k in range(20)])
    sigma = np.diag([0.56, 3.31, -0.006, 0.093])
    pi = np.array([[2.29, 0, 1.28, 0], [588.3, -30.2, 0, 11.1], [-0.38, 0, 0.052, 0],
                   [0.75, 0, -1.35, 0]])
    layout, theta = problem.layout(sigma, pi)
    result = solve_delta(problem, layout, theta, jacobian=True)
    assert result.jacobian is not None and result.jacobian.shape == (problem.N, layout.P)
    assert_close(result.jacobian, finite_differences(problem, layout, theta), 1e-6)


def test_jacobian_matches_finite_differences_padded_blocks():
    # Reference: central differences on simulated unequal markets (padded blocks), including
    # an off-diagonal Sigma element.
    problem, layout, theta, _ = simulated(seed=4)
    sigma = np.array([[0.8, 0.0], [0.3, 0.5]])
    layout, theta = problem.layout(sigma, np.array([[0.3], [-0.2]]))
    analytic = solve_delta(problem, layout, theta, jacobian=True).jacobian
    assert analytic is not None
    assert_close(analytic, finite_differences(problem, layout, theta), 1e-6)


@pytest.mark.parametrize("cache_bytes", [0, 1 << 30])
def test_jacobian_paths_agree(cache_bytes):
    # Reference: the same IFT Jacobian computed through the three entry points (1e-12).
    problem, layout, theta, _ = simulated(seed=5)
    joint = solve_delta(problem, layout, theta, jacobian=True)
    alone = delta_jacobian(problem, layout, theta, joint.delta)
    loop = InnerLoop(problem, layout, cache_bytes=cache_bytes)
    later = loop.solve(theta)
    added = loop.solve(theta, jacobian=True).jacobian
    assert np.max(np.abs(alone - joint.jacobian)) < 1e-12
    assert np.max(np.abs(later.delta - joint.delta)) < 1e-13
    assert np.max(np.abs(added - joint.jacobian)) < 1e-12
