"""The analytic gradient of the GMM objective against central finite differences of Q itself.

Reference: dQ/dtheta_k ~ (Q(theta + h e_k) - Q(theta - h e_k)) / 2h with h = 1e-5 max(1, |theta_k|)
(truncation error O(h^2) ~ 1e-10, rounding ~ eps |Q| / h ~ 1e-11 with the inner loop at 1e-14);
tolerance 1e-6 relative to the gradient's largest element, at several theta.
"""

from __future__ import annotations

import numpy as np
import pytest

import blpdemand as bd
from blpdemand.solve.covariance import weighting_matrix
from blpdemand.solve.gmm import DemandObjective


def _problem(absorb: bool) -> bd.Problem:
    sim = bd.simulate(markets=12, products=5, sigma={"1": 0.6, "x1": 0.8}, draws=40, rng=3)
    agents = sim.agents.copy()
    extra = np.random.default_rng(4).standard_normal((len(agents), 2))
    agents["nodes2"], agents["income"] = extra[:, 0], extra[:, 1]
    products = sim.products.copy()
    products["z3"] = products["w1"] * products["x1"]
    products["z4"] = products["w2"] ** 2
    linear = "0 + prices + x1 + x2" if absorb else sim.linear
    return bd.Problem(products, linear=linear, nonlinear="1 + x1 + prices", demographics="0 + income",
                      agents=agents, instruments=["w1", "w2", "z3", "z4"],
                      absorb="C(product_ids)" if absorb else None)


# theta: Sigma lower triangle (an off-diagonal element included) and Pi on prices x income
SIGMAS = [np.array([[0.6, 0, 0], [0.2, 0.8, 0], [0, 0, 0.3]]),
          np.array([[1.5, 0, 0], [-0.4, 0.3, 0], [0, 0, 0.1]])]
PIS = [np.array([[0.0], [0.0], [0.5]]), np.array([[0.0], [0.0], [-1.0]])]


@pytest.mark.parametrize("absorb", [False, True])
@pytest.mark.parametrize("k", [0, 1])
def test_gradient_matches_finite_differences(absorb: bool, k: int) -> None:
    problem = _problem(absorb)
    layout, theta = problem.layout(SIGMAS[k], PIS[k])
    Z = problem.ZD_tilde
    objective = DemandObjective(problem, layout, weighting_matrix(Z.T @ Z / problem.N))
    gradient = objective.gradient(theta)
    numeric = np.empty_like(gradient)
    for p in range(theta.size):
        h = 1e-5 * max(1.0, abs(theta[p]))
        up, down = theta.copy(), theta.copy()
        up[p] += h
        down[p] -= h
        numeric[p] = (objective.objective(up) - objective.objective(down)) / (2 * h)
    np.testing.assert_allclose(gradient, numeric, rtol=0, atol=1e-6 * np.max(np.abs(numeric)))


def test_concentrated_beta_is_the_closed_form_iv_gmm() -> None:
    # Reference: beta = (X'Z W Z'X)^{-1} X'Z W Z' delta computed by hand,
    # and the first-order condition X'Z W g = 0 (rel 1e-10).
    problem = _problem(False)
    layout, theta = problem.layout(SIGMAS[0], PIS[0])
    Z, X = problem.ZD_tilde, problem.X1_tilde
    W = weighting_matrix(Z.T @ Z / problem.N)
    e = DemandObjective(problem, layout, W).evaluate(theta)
    A = X.T @ Z @ W @ Z.T @ X
    beta = np.linalg.inv(A) @ (X.T @ Z @ W @ Z.T @ e.delta)
    np.testing.assert_allclose(e.beta, beta, rtol=1e-10)
    np.testing.assert_allclose(X.T @ Z @ W @ e.g, 0, atol=1e-10 * np.abs(X.T @ Z).max())
    np.testing.assert_allclose(e.objective, problem.N * e.g @ W @ e.g, rtol=1e-12)
