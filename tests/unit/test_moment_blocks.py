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


def test_the_moment_covariance_spans_the_blocks() -> None:
    # Reference: closed forms. Robust S of the stacked per-observation moments g_j =
    # [z_1j r_1j, z_2j r_2j] (centered); unadjusted S_bc = cov(r_b, r_c) Z_b' Z_c / N.
    from blpdemand.solve.covariance import moment_covariance, stack_covariance

    rng = np.random.default_rng(2)
    N = 80
    Z1, Z2 = rng.normal(size=(N, 3)), rng.normal(size=(N, 2))
    r1 = rng.normal(size=N)
    r2 = 0.5 * r1 + rng.normal(size=N)  # correlated residuals: S has off-diagonal blocks
    stack = MomentStack((MomentBlock("demand", Z1, np.zeros((N, 0))),
                         MomentBlock("supply", Z2, np.zeros((N, 0)))))
    g = np.hstack([Z1 * r1[:, None], Z2 * r2[:, None]])
    centered = g - g.mean(axis=0)
    robust = stack_covariance(stack, (r1, r2), kind="robust")
    np.testing.assert_allclose(robust, centered.T @ centered / N, rtol=1e-12, atol=1e-14)
    assert np.abs(robust[:3, 3:]).max() > 0.1  # the blocks are not independent
    cov = np.cov(np.vstack([r1, r2]), bias=True)
    expected = np.block([[cov[0, 0] * Z1.T @ Z1, cov[0, 1] * Z1.T @ Z2],
                         [cov[1, 0] * Z2.T @ Z1, cov[1, 1] * Z2.T @ Z2]]) / N
    unadjusted = stack_covariance(stack, (r1, r2), kind="unadjusted")
    np.testing.assert_allclose(unadjusted, expected, rtol=1e-12, atol=1e-14)
    # the demand block alone: the one-block formulas
    np.testing.assert_allclose(moment_covariance(Z1 * r1[:, None], kind="unadjusted",
                                                 residuals=r1, instruments=Z1, center=True),
                               float(np.var(r1)) * Z1.T @ Z1 / N, rtol=1e-14)
