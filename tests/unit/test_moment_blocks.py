"""Moment blocks stacked into one GMM problem (solve.moments).

References: closed forms written here with numpy. Two blocks over the same observations equal
one IV problem on the block-diagonal stack: the concentrated linear parameters solve
(X'ZWZ'X) l = X'ZWZ'y, g = Z'(y - X l)/N, and the per-observation moments are the blocks'
z r side by side; one block is exactly the one-block formula (the demand objective's path).
"""

from __future__ import annotations

import numpy as np
import pytest

import blpdemand as bd
from blpdemand.solve.gmm import DemandObjective
from blpdemand.solve.moments import LinearIV, MomentBlock, MomentStack, mean_moments


def test_two_blocks_are_one_iv_problem_on_the_block_diagonal_stack() -> None:
    rng = np.random.default_rng(0)
    N = 50
    Z1, X1, y1 = rng.normal(size=(N, 4)), rng.normal(size=(N, 2)), rng.normal(size=N)
    Z2, X2, y2 = rng.normal(size=(N, 3)), rng.normal(size=(N, 1)), rng.normal(size=N)
    stack = MomentStack((MomentBlock("demand", Z1, X1), MomentBlock("supply", Z2, X2)))
    assert stack.M == 7 and stack.Z.shape == (2 * N, 7) and stack.X.shape == (2 * N, 3)
    W = np.linalg.inv(stack.Z.T @ stack.Z / N)
    Z = np.zeros((2 * N, 7))
    Z[:N, :4], Z[N:, 4:] = Z1, Z2
    X = np.zeros((2 * N, 3))
    X[:N, :2], X[N:, 2:] = X1, X2
    y = np.r_[y1, y2]
    ZX, Zy = Z.T @ X, Z.T @ y
    linear = np.linalg.solve(ZX.T @ W @ ZX, ZX.T @ W @ Zy)
    iv = stack.linear_iv(W)
    np.testing.assert_allclose(iv.beta(stack.stack((y1, y2))), linear, rtol=1e-12)
    r = y - X @ linear
    residuals = (r[:N], r[N:])
    np.testing.assert_allclose(stack.mean_moments(residuals), Z.T @ r / N, rtol=1e-12,
                               atol=1e-15)
    assert np.abs(ZX.T @ W @ stack.mean_moments(residuals)).max() < 1e-12  # first-order cond.
    per = stack.observation_moments(residuals)
    np.testing.assert_array_equal(per, np.hstack([Z1 * r[:N, None], Z2 * r[N:, None]]))


def test_one_block_is_the_one_block_formula() -> None:
    rng = np.random.default_rng(1)
    Z, X, y = rng.normal(size=(30, 4)), rng.normal(size=(30, 2)), rng.normal(size=30)
    stack = MomentStack((MomentBlock("demand", Z, X),))
    assert stack.Z is Z and stack.X is X
    W = np.linalg.inv(Z.T @ Z / 30)
    np.testing.assert_array_equal(stack.linear_iv(W).projector,
                                  LinearIV.build(X, Z, W).projector)
    np.testing.assert_array_equal(stack.mean_moments((y,)), mean_moments(y, Z))


@pytest.mark.parametrize("sigma", [0.5, 1.5])
def test_the_demand_objective_runs_on_the_stack(sigma: float) -> None:
    sim = bd.simulate(markets=20, products=5, sigma={"x1": 1.0}, draws=30, rng=4)
    problem = bd.Problem(sim.products, linear=sim.linear, nonlinear=sim.nonlinear,
                         agents=sim.agents, instruments=list(sim.instruments))
    layout, _ = problem.layout([1.0])
    Z = problem.ZD_tilde
    W = np.linalg.inv(Z.T @ Z / problem.N)
    objective = DemandObjective(problem, layout, W)
    assert [b.name for b in objective.stack.blocks] == ["demand"]
    e = objective.evaluate(np.array([sigma]), report=False)
    by_hand = problem.residualize(e.delta)
    beta = LinearIV.build(problem.X1_tilde, Z, W).beta(by_hand)
    xi = by_hand - problem.X1_tilde @ beta
    g = Z.T @ xi / problem.N
    np.testing.assert_array_equal(e.g, g)
    assert e.objective == float(problem.N * g @ W @ g)
