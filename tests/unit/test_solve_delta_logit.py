"""solve_delta without random coefficients: the plain logit inversion delta = log s_j - log s_0.

Reference: Berry (1994), eq. (14): with mu = 0 the share equations invert in closed form,
delta_jt = log s_jt - log s_0t, s_0t = 1 - sum_k s_kt. Data: Nevo's cereal products (PyBLP's
example data). Tolerance: relative 1e-12 (a few ulps of log on values of order 1 to 10). With
agents at Sigma = Pi = 0 every agent is alike, so the inversion is also closed form; it is
checked by the defining property s(delta; theta = 0) = s_obs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.solve.contraction import compute_shares, delta_jacobian

INSTRUMENTS = [f"demand_instruments{k}" for k in range(20)]


def _logit_delta(products: pd.DataFrame, problem: bd.Problem) -> np.ndarray:
    """log s_j - log s_0 by pandas, in the problem's (market-sorted) row order."""
    s = products["shares"].to_numpy()
    s0 = 1.0 - products.groupby("market_ids")["shares"].transform("sum").to_numpy()
    return problem.products.sort(np.log(s) - np.log(s0))


@pytest.fixture(scope="module")
def plain(nevo_products: pd.DataFrame) -> bd.Problem:
    return bd.Problem(nevo_products, linear="prices", absorb="C(product_ids)",
                      instruments=INSTRUMENTS)


def test_problem_without_nonlinear_part_gives_the_logit_delta(
        plain: bd.Problem, nevo_products: pd.DataFrame) -> None:
    layout, theta = plain.layout()
    result = bd.solve_delta(plain, layout, theta)
    assert result.converged and result.failed_markets.size == 0
    np.testing.assert_allclose(result.delta, _logit_delta(nevo_products, plain), rtol=1e-12)


def test_layout_and_theta_default_to_no_random_coefficients(
        plain: bd.Problem, nevo_products: pd.DataFrame) -> None:
    result = bd.solve_delta(plain, jacobian=True)
    np.testing.assert_allclose(result.delta, _logit_delta(nevo_products, plain), rtol=1e-12)
    assert result.jacobian is not None and result.jacobian.shape == (plain.N, 0)


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_zero_sigma_with_agents_reproduces_the_shares(
        nevo_products: pd.DataFrame, nevo_agents: pd.DataFrame, scale: float) -> None:
    # weights summing to 2 per market (kept by the data layer, as BLP 1995's are) change the
    # answer: s_j = W_t exp(delta_j) / (1 + sum_k exp(delta_k)); the shares must still match
    agents = nevo_agents.assign(weights=nevo_agents["weights"] * scale)
    problem = bd.Problem(nevo_products, linear="prices", nonlinear="1 + prices", agents=agents,
                         absorb="C(product_ids)", instruments=INSTRUMENTS)
    layout, theta = problem.layout(sigma=[1.0, 1.0])
    zero = np.zeros_like(theta)
    result = bd.solve_delta(problem, layout, zero, jacobian=True)
    assert result.converged
    shares = compute_shares(problem, layout, zero, result.delta)
    np.testing.assert_allclose(shares, problem.products.shares, rtol=1e-12)
    if scale == 1.0:
        np.testing.assert_allclose(result.delta, _logit_delta(nevo_products, problem),
                                   rtol=1e-12)
    assert result.jacobian is not None
    np.testing.assert_allclose(result.jacobian,
                               delta_jacobian(problem, layout, zero, result.delta),
                               rtol=1e-12, atol=1e-12)
