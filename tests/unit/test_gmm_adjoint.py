"""The adjoint gradient of the GMM objective against the full-Jacobian gradient.

Reference: dQ/dtheta = 2 (Z~' (d delta/d theta)~)' W g with d delta / d theta from the implicit
function theorem (P right-hand sides per market, dense Cholesky/LU), the estimator's previous
path and itself checked against finite differences (test_gmm_gradient.py) and PyBLP
(tests/reference). The adjoint solves one system per market by preconditioned CG to 1e-13;
tolerance 1e-8 relative to the gradient's largest element, at several theta, with and without
absorbed fixed effects, Pi terms, unequal market sizes (padded blocks), Nevo and BLP data.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import IntegrationWarning
from blpdemand.solve.covariance import weighting_matrix
from blpdemand.solve.fixed_point import FixedPointConfig
from blpdemand.solve.gmm import DemandObjective


def _simulated(absorb: bool, unequal: bool) -> bd.Problem:
    sim = bd.simulate(markets=12, products=6, sigma={"1": 0.6, "x1": 0.8}, draws=40, rng=5)
    agents = sim.agents.copy()
    extra = np.random.default_rng(6).standard_normal((len(agents), 2))
    agents["nodes2"], agents["income"] = extra[:, 0], extra[:, 1]
    products = sim.products.copy()
    products["z3"] = products["w1"] * products["x1"]
    products["z4"] = products["w2"] ** 2
    if unequal:  # drop a market-dependent number of products: blocks get padded slots
        rank = products.groupby("market_ids").cumcount()
        codes = pd.factorize(products["market_ids"])[0]
        products = products[rank < 6 - codes % 3].reset_index(drop=True)
    linear = "0 + prices + x1 + x2" if absorb else sim.linear
    return bd.Problem(products, linear=linear, nonlinear="1 + x1 + prices", demographics="0 + income",
                      agents=agents, instruments=["w1", "w2", "z3", "z4"],
                      absorb="C(product_ids)" if absorb else None)


SIGMAS = [np.array([[0.6, 0, 0], [0.2, 0.8, 0], [0, 0, 0.3]]),
          np.array([[1.5, 0, 0], [-0.4, 0.3, 0], [0, 0, 0.1]]),
          np.array([[3.0, 0, 0], [0.5, 2.0, 0], [0, 0, 1.0]])]
PIS = [np.array([[0.0], [0.0], [0.5]]), np.array([[0.0], [0.0], [-1.0]]),
       np.array([[0.0], [0.0], [2.0]])]


def _both(problem: bd.Problem, sigma: np.ndarray, pi: np.ndarray | None,
          compiled: bool = True) -> tuple[np.ndarray, ...]:
    # compiled: the adjoint by the per-market kernel (model.adjoint_compiled), else the numpy
    # block CG (model.derivatives.adjoint_theta_gradient); the full Jacobian is the reference
    layout, theta = problem.layout(sigma, pi)
    Z = problem.ZD_tilde
    W = weighting_matrix(Z.T @ Z / problem.N)
    adjoint = DemandObjective(problem, layout, W,
                              contraction=FixedPointConfig(compiled=compiled))
    value, gradient = adjoint(theta)
    assert adjoint.last is not None and adjoint.last.adjoint  # the adjoint path was taken
    full = DemandObjective(problem, layout, W,
                           contraction=FixedPointConfig(compiled=compiled)).evaluate(theta)
    assert not full.adjoint and full.xi_jacobian.shape == (problem.N, theta.size)
    assert value == full.objective
    # completing the cached adjoint evaluation gives the full evaluation's Jacobian
    completed = adjoint.evaluate(theta)
    np.testing.assert_allclose(completed.xi_jacobian, full.xi_jacobian, rtol=0,
                               atol=1e-12 * np.abs(full.xi_jacobian).max())
    return gradient, full.gradient


@pytest.mark.parametrize("absorb", [False, True])
@pytest.mark.parametrize("unequal", [False, True])
@pytest.mark.parametrize("k", [0, 1, 2])
@pytest.mark.parametrize("compiled", [True, False])
def test_adjoint_gradient_matches_full_jacobian(absorb: bool, unequal: bool, k: int,
                                                compiled: bool) -> None:
    gradient, reference = _both(_simulated(absorb, unequal), SIGMAS[k], PIS[k], compiled)
    np.testing.assert_allclose(gradient, reference, rtol=0,
                               atol=1e-8 * np.abs(reference).max())


def test_adjoint_gradient_nevo(nevo_products: pd.DataFrame, nevo_agents: pd.DataFrame) -> None:
    # Nevo (2000) cereal as in tests/reference/test_estimate_nevo.py: product FE, Pi on 4 demographics
    problem = bd.Problem(nevo_products, linear="0 + prices", nonlinear="1 + prices + sugar + mushy",
                         demographics="0 + income + income_squared + age + child",
                         agents=nevo_agents, absorb="C(product_ids)",
                         instruments=[f"demand_instruments{k}" for k in range(20)])
    sigma = np.diag([0.3302, 2.4526, 0.0163, 0.2441])
    pi = np.array([[5.4819, 0, 0.2037, 0], [15.8935, -1.2000, 0, 2.6342],
                   [-0.2506, 0, 0.0511, 0], [1.2650, 0, -0.8091, 0]])
    for scale, compiled in ((1.0, True), (0.5, True), (1.0, False)):
        gradient, reference = _both(problem, scale * sigma, scale * pi, compiled)
        np.testing.assert_allclose(gradient, reference, rtol=0,
                                   atol=1e-8 * np.abs(reference).max())


def test_adjoint_gradient_blp(blp_products: pd.DataFrame, blp_agents: pd.DataFrame) -> None:
    # BLP (1995) autos as in tests/reference/test_estimate_blp.py: unequal market sizes, 1 Pi term
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IntegrationWarning)  # weights sum to 0.154
        problem = bd.Problem(blp_products, linear="1 + hpwt + air + mpd + space",
                             nonlinear="1 + prices + hpwt + air + mpd + space",
                             demographics="0 + I(1 / income)", agents=blp_agents,
                             instruments=[f"demand_instruments{k}" for k in range(8)])
    sigma = np.diag([3.612, 0, 4.628, 1.818, 1.050, 2.056])
    pi = np.c_[[0, -43.501, 0, 0, 0, 0]]
    for scale, compiled in ((1.0, True), (0.5, True), (1.0, False)):
        gradient, reference = _both(problem, scale * sigma, scale * pi, compiled)
        np.testing.assert_allclose(gradient, reference, rtol=0,
                                   atol=1e-8 * np.abs(reference).max())
