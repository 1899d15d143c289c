"""Covariance restrictions (MacKay and Miller 2023) as a moment block: the analytic gradient and
the moment Jacobian G against central finite differences, and the named errors.

Reference: dQ/dtheta_k ~ (Q(theta + h e_k) - Q(theta - h e_k)) / 2h with h = 1e-5 max(1,
|theta_k|) (truncation O(h^2) ~ 1e-10, rounding ~ eps |Q| / h ~ 1e-11 with the contraction at
1e-14); tolerance 1e-6 relative to the gradient's largest element, as the supply side's test.
Q concentrates beta and gamma out by the demand and supply blocks alone, so with a W that
couples the blocks (step 2) the gradient must carry d(beta, gamma)/d theta through the
covariance moments: the test uses both the block-diagonal step-1 W and a full W.
Data: simulated Bertrand markets whose price coefficients come from X2 (prices x income, and
a random coefficient on prices).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from supply_markets import central, supply_data

import blpdemand as bd
from blpdemand.errors import DataError, SpecificationError
from blpdemand.solve.covariance import stack_covariance, weighting_matrix
from blpdemand.solve.gmm import DemandObjective
from blpdemand.solve.moments import problem_stack

SIGMA = np.array([[0.6, 0, 0], [0.2, 0.8, 0], [0, 0, 0.3]])
PI = np.array([[0.0], [0.0], [-1.2]])


def products_and_agents() -> tuple[Any, Any]:
    products, agents = supply_data()
    return products, agents


def covariance_problem(costs: str = "linear", *, restrictions: Any = ("1", "x1"),
                       mean: float = 0.0, absorb: str | None = None, markets: Any = None,
                       instruments: Any = ("w1", "w2", "z3", "z4")) -> bd.Problem:
    products, agents = products_and_agents()
    return bd.Problem(products, linear="1 + x1 + x2", nonlinear="1 + x1 + prices",
                      demographics="0 + income", agents=agents,
                      instruments=list(instruments), supply="1 + w1 + w2",
                      supply_instruments=["x1", "x2"], costs=costs, absorb_supply=absorb,
                      supply_markets=markets,
                      covariance_restrictions=list(restrictions) if restrictions else None,
                      covariance_moments_mean=mean)


def objective_at(problem: bd.Problem, full: bool) -> tuple[DemandObjective, np.ndarray]:
    layout, theta = problem.layout(SIGMA, PI)
    stack = problem_stack(problem)
    W = weighting_matrix(stack.Z.T @ stack.Z / problem.N)
    if full:  # the step-2 W: robust S of every block at theta, coupling the blocks
        first = DemandObjective(problem, layout, W).evaluate(theta)
        W = weighting_matrix(stack_covariance(stack, first.residuals))
    return DemandObjective(problem, layout, W), theta


CASES = {"linear": ("linear", None, None, 0.0), "log": ("log", None, None, 0.0),
         "log-mean": ("log", None, None, 0.05),
         "log-absorbed": ("log", "C(product_ids)", None, 0.0),
         "linear-some-markets": ("linear", None, [1, 4, 5, 8], 0.02)}


@pytest.mark.parametrize("full", [False, True], ids=["step1-W", "full-W"])
@pytest.mark.parametrize("case", list(CASES))
def test_gradient_matches_finite_differences(case: str, full: bool) -> None:
    costs, absorb, markets, mean = CASES[case]
    problem = covariance_problem(costs, mean=mean, absorb=absorb, markets=markets)
    objective, theta = objective_at(problem, full)
    adjoint = objective.gradient(theta)  # the adjoint route (no d omega / d theta formed)
    numeric = central(objective.objective, theta)
    scale = np.max(np.abs(numeric))
    np.testing.assert_allclose(adjoint, numeric, rtol=0, atol=1e-6 * scale)
    # the route through the formed Jacobians gives the same gradient
    formed = DemandObjective(problem, objective.layout, objective.W_full).evaluate(theta)
    np.testing.assert_allclose(formed.gradient, adjoint, rtol=0, atol=1e-10 * scale)
    assert formed.covariance_residual is not None


def test_covariance_block_moves_the_gradient() -> None:
    # the check above can fail: without the covariance moments the gradient differs
    with_block, theta = objective_at(covariance_problem("log"), True)
    without, _ = objective_at(covariance_problem("log", restrictions=None), True)
    a, b = with_block.gradient(theta), without.gradient(theta)
    assert np.max(np.abs(a - b)) > 1e-3 * np.max(np.abs(b))


def test_moment_jacobian_rows_match_finite_differences() -> None:
    # G's covariance rows: d g_C / d(theta, beta, gamma) at fixed linear parameters, with
    # g_C = Z_C' ((y_D~ - X1~ beta)(y_S~ - X3~ gamma) - m) / N
    problem = covariance_problem("log", mean=0.05)
    objective, theta = objective_at(problem, True)
    base = objective.evaluate(theta)
    stack = problem_stack(problem)
    supply = problem.supply
    assert supply is not None and base.omega_jacobian is not None
    beta, gamma = base.beta, base.gamma
    X1, X3, ZC = problem.X1_tilde, supply.X3_tilde, stack.blocks[2].Z

    def g_covariance(theta_: np.ndarray, beta_: np.ndarray, gamma_: np.ndarray) -> np.ndarray:
        e = objective.evaluate(theta_)
        assert e.costs is not None
        xi = problem.residualize(e.delta) - X1 @ beta_
        omega = supply.residualize(e.costs.y) - X3 @ gamma_
        out: np.ndarray = ZC.T @ (xi * omega - 0.05) / problem.N
        return out

    G = stack.moment_jacobian((base.xi_jacobian, base.omega_jacobian), base.residuals)
    rows = G[-ZC.shape[1]:]
    P, K1 = theta.size, beta.size
    numeric = np.column_stack([
        central(lambda t: g_covariance(t, beta, gamma), theta),
        central(lambda b: g_covariance(theta, b, gamma), beta),
        central(lambda c: g_covariance(theta, beta, c), gamma)])
    np.testing.assert_allclose(rows, numeric, rtol=0, atol=1e-6 * np.max(np.abs(numeric)))
    assert rows.shape == (2, P + K1 + gamma.size)


def test_step_one_weighting_has_the_covariance_block_last() -> None:
    problem = covariance_problem("linear")
    stack = problem_stack(problem)
    assert [b.name for b in stack.blocks] == ["demand", "supply", "covariance"]
    W = weighting_matrix(stack.Z.T @ stack.Z / problem.N)
    ZC = stack.blocks[2].Z
    np.testing.assert_allclose(W[-2:, -2:], np.linalg.inv(ZC.T @ ZC / problem.N), rtol=1e-12)
    assert np.all(W[-2:, :-2] == 0)


def test_errors_name_the_culprit() -> None:
    products, agents = products_and_agents()
    with pytest.raises(DataError, match="no_such_column"):
        covariance_problem(restrictions=("1", "no_such_column"))
    with pytest.raises(SpecificationError, match="supply side"):
        bd.Problem(products, linear="1 + prices + x1", instruments=["w1"],
                   covariance_restrictions=True)
    with pytest.raises(SpecificationError, match="covariance_restrictions"):
        bd.Problem(products, linear="1 + x1", nonlinear="1 + prices", agents=agents,
                   demographics="0 + nodes2", instruments=["w1"], supply="1 + w1",
                   covariance_moments_mean=0.5)
    with pytest.raises(SpecificationError, match="covariance_restrictions"):
        covariance_problem(restrictions=(3,))  # type: ignore[arg-type]
    with pytest.raises(SpecificationError, match="micro"):
        bd.Problem(products, linear="1 + x1", nonlinear="1 + prices", agents=agents,
                   demographics="0 + income", instruments=["w1"], supply="1 + w1",
                   covariance_restrictions=True,
                   micro=[bd.micro.mean("income", value=1.0, observations=100)])


def test_concentrated_sandwich_reduces_to_the_closed_forms() -> None:
    # Reference: closed forms. With every moment in the concentrating blocks (M_U = M) it is
    # the usual sandwich (G'WG)^-1 G'WSWG (G'WG)^-1 / N; exactly identified (M = P + K) it is
    # G^-1 S G^-T / N for any W. Random well-conditioned G, W, S; tolerance 1e-10 relative
    # (condition numbers ~1e2, a few products of them).
    from blpdemand.solve.concentrated_covariance import concentrated_covariance
    from blpdemand.solve.covariance import parameter_covariance

    draws = np.random.default_rng(3)

    def spd(m: int) -> np.ndarray:
        A = draws.standard_normal((m, m))
        out: np.ndarray = A @ A.T + m * np.eye(m)
        return out

    G, W, S = draws.standard_normal((9, 5)), spd(9), spd(9)
    usual = parameter_covariance(G, W, S, 100)
    np.testing.assert_allclose(concentrated_covariance(G, W, S, 100, P=2, MU=9), usual,
                               rtol=1e-10, atol=1e-12 * np.max(np.abs(usual)))
    G, W, S = draws.standard_normal((5, 5)), spd(5), spd(5)
    G[3:, 2:] = draws.standard_normal((2, 3))
    exact = np.linalg.solve(G, np.linalg.solve(G, S).T) / 100
    np.testing.assert_allclose(concentrated_covariance(G, W, S, 100, P=2, MU=4), exact,
                               rtol=1e-10, atol=1e-12 * np.max(np.abs(exact)))
    # over-identified with a covariance block it differs from the usual sandwich
    G, W, S = draws.standard_normal((9, 5)), spd(9), spd(9)
    assert not np.allclose(concentrated_covariance(G, W, S, 100, P=2, MU=7),
                           parameter_covariance(G, W, S, 100), rtol=1e-3)
