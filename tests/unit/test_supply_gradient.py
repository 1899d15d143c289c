"""The joint demand-supply objective's analytic gradient against central finite differences.

Reference: dQ/dtheta_k ~ (Q(theta + h e_k) - Q(theta - h e_k)) / 2h with h = 1e-5 max(1,
|theta_k|) (truncation O(h^2) ~ 1e-10, rounding ~ eps |Q| / h ~ 1e-11 with the contraction at
1e-14); tolerance 1e-6 relative to the gradient's largest element. The supply residuals'
Jacobian d omega / d theta (at fixed gamma) is checked the same way, column by column, since
it enters the standard errors as well as the gradient. Data: simulated Bertrand markets whose
price coefficients come from X2 (prices x income, and a random coefficient on prices).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from supply_markets import central, supply_data

import blpdemand as bd
from blpdemand.solve.covariance import weighting_matrix
from blpdemand.solve.gmm import DemandObjective
from blpdemand.solve.moments import problem_stack


def supply_problem(costs: str = "linear", conduct: Any = "bertrand",
                   bounds: Any = None, absorb: str | None = None,
                   markets: Any = None) -> bd.Problem:
    products, agents = supply_data()
    return bd.Problem(products, linear="1 + x1 + x2", nonlinear="1 + x1 + prices",
                      demographics="0 + income", agents=agents,
                      instruments=["w1", "w2", "z3", "z4"], supply="1 + w1 + w2",
                      supply_instruments=["x1", "x2"], costs=costs, conduct=conduct,
                      costs_bounds=bounds, absorb_supply=absorb, supply_markets=markets)


SIGMA = np.array([[0.6, 0, 0], [0.2, 0.8, 0], [0, 0, 0.3]])
PI = np.array([[0.0], [0.0], [-1.2]])


def objective_at(problem: bd.Problem) -> tuple[DemandObjective, np.ndarray]:
    layout, theta = problem.layout(SIGMA, PI)
    Z = problem_stack(problem).Z
    return DemandObjective(problem, layout, weighting_matrix(Z.T @ Z / problem.N)), theta


@pytest.mark.parametrize(("costs", "conduct", "absorb", "markets"), [
    ("linear", "bertrand", None, None), ("log", "bertrand", None, None),
    ("log", "monopoly", None, None), ("linear", {(0, 1): 0.4, (1, 0): 0.25}, None, None),
    ("log", "bertrand", "C(product_ids)", None), ("log", "bertrand", None, [1, 4, 5, 8]),
], ids=["linear-bertrand", "log-bertrand", "log-monopoly", "linear-kappa", "log-absorbed",
        "log-some-markets"])
def test_joint_gradient_matches_finite_differences(costs: str, conduct: Any,
                                                   absorb: str | None, markets: Any) -> None:
    objective, theta = objective_at(supply_problem(costs, conduct, absorb=absorb,
                                                   markets=markets))
    gradient = objective.gradient(theta)
    numeric = central(objective.objective, theta)
    np.testing.assert_allclose(gradient, numeric, rtol=0, atol=1e-6 * np.max(np.abs(numeric)))


@pytest.mark.parametrize(("costs", "absorb"), [("linear", None), ("log", None),
                                               ("log", "C(product_ids)")])
def test_omega_jacobian_matches_finite_differences(costs: str, absorb: str | None) -> None:
    # d omega / d theta at fixed gamma = M d f(p - eta(theta, delta(theta))) / d theta
    problem = supply_problem(costs, absorb=absorb)
    objective, theta = objective_at(problem)
    analytic = objective.evaluate(theta).omega_jacobian

    def y_supply(at: np.ndarray) -> np.ndarray:
        costs_at = objective.evaluate(at).costs
        assert costs_at is not None and problem.supply is not None
        return problem.supply.residualize(costs_at.y)

    numeric = central(y_supply, theta)
    assert analytic is not None
    np.testing.assert_allclose(analytic, numeric, rtol=0,
                               atol=1e-6 * np.max(np.abs(numeric)))


def test_perfect_competition_prices_are_costs() -> None:
    # eta = 0: c = p exactly, and the supply residuals do not move with theta
    problem = supply_problem("linear", "perfect")
    objective, theta = objective_at(problem)
    evaluation = objective.evaluate(theta)
    assert evaluation.costs is not None and evaluation.omega_jacobian is not None
    np.testing.assert_array_equal(evaluation.costs.costs, problem.products.array("prices"))
    np.testing.assert_array_equal(evaluation.omega_jacobian, 0.0)


def test_log_costs_below_zero_are_a_recorded_failure_not_a_nan() -> None:
    # pi on prices -0.2 (and sigma on prices 0.01): consumers barely care about price, markups
    # exceed prices, c < 0 (down to about -4.7)
    problem = supply_problem("log")
    objective, theta = objective_at(problem)
    theta[3], theta[4] = 0.01, -0.2
    evaluation = objective.evaluate(theta)
    assert evaluation.failed and np.isfinite(evaluation.objective)
    assert evaluation.objective >= 1e10
    assert objective.supply_failure is not None and "costs_bounds" in objective.supply_failure
    # the same theta with clipping is an ordinary evaluation
    clipped = supply_problem("log", bounds=(0.001, None))
    objective, _ = objective_at(clipped)
    evaluation = objective.evaluate(theta)
    assert not evaluation.failed and np.isfinite(evaluation.objective)
    assert evaluation.costs is not None and evaluation.costs.clipped.any()


@pytest.mark.parametrize(("costs", "conduct", "bounds", "absorb"), [
    ("log", "bertrand", (2.5, None), None), ("linear", "monopoly", None, None),
    ("linear", {(0, 1): 0.4, (1, 0): 0.25}, None, None),
    ("log", "bertrand", None, "C(product_ids)")],
    ids=["log-clipped", "monopoly", "kappa", "absorbed"])
@pytest.mark.parametrize("cached", [True, False], ids=["exp-mu-cached", "not-cached"])
def test_adjoint_gradient_equals_the_full_jacobian_gradient(costs: str, conduct: Any,
                                                            bounds: Any, absorb: str | None,
                                                            cached: bool) -> None:
    # The optimizer's gradient (adjoint solves, d delta / d theta never formed) against
    # 2 (Z' d r / d theta)' W g from the full Jacobians (the standard errors' path): the same
    # quantity by two routes; tolerance 1e-10 relative to the largest element (the IFT and
    # first-order-condition solves, well conditioned here, and CG to 1e-13)
    # Not cached (a problem too large for the exp(mu) cache): d delta / d theta is formed but
    # the supply side still takes the adjoint route.
    problem = supply_problem(costs, conduct, bounds, absorb)
    adjoint, theta = objective_at(problem)
    if not cached:
        adjoint.loop.cache_bytes = 0
    fast = adjoint.evaluate(theta, adjoint=True)
    assert fast.adjoint and fast.omega_jacobian is None
    if bounds is not None:
        assert fast.costs is not None and 0 < fast.costs.clipped.sum() < problem.N
    full, _ = objective_at(problem)
    slow = full.evaluate(theta)
    assert not slow.adjoint
    np.testing.assert_allclose(fast.gradient, slow.gradient, rtol=0,
                               atol=1e-10 * np.max(np.abs(slow.gradient)))
    # completing the adjoint evaluation gives the full one's d omega / d theta
    completed = adjoint.evaluate(theta)
    assert completed.omega_jacobian is not None and slow.omega_jacobian is not None
    np.testing.assert_allclose(completed.omega_jacobian, slow.omega_jacobian, rtol=1e-12)


def test_supply_moments_in_some_markets_are_the_stacked_iv_on_their_rows() -> None:
    # Reference: the stacked IV-GMM computed by hand from the all-markets evaluation's f(c)
    # (the costs of a market do not depend on the others), with the supply rows of the other
    # markets removed (zero instruments and regressors there); Q = N g'Wg with the same W.
    # Tolerance 1e-10 relative (one least-squares solve of a well-conditioned system).
    markets = [1, 4, 5, 8]
    some = supply_problem("log", markets=markets)
    objective, theta = objective_at(some)
    evaluation = objective.evaluate(theta)
    full, _ = objective_at(supply_problem("log"))
    reference = full.evaluate(theta)
    assert evaluation.costs is not None and reference.costs is not None and some.supply
    keep = np.isin(some.products.array("market_ids"), markets)
    np.testing.assert_array_equal(evaluation.costs.y[keep], reference.costs.y[keep])
    assert np.all(np.isnan(evaluation.costs.costs[~keep]))  # not computed there
    ZS = some.supply.ZS.values * keep[:, None]
    X3 = some.supply.X3.values * keep[:, None]
    N, ZD, X1 = some.N, some.ZD_tilde, some.X1_tilde
    Z = np.block([[ZD, np.zeros((N, ZS.shape[1]))], [np.zeros((N, ZD.shape[1])), ZS]])
    X = np.block([[X1, np.zeros((N, X3.shape[1]))], [np.zeros((N, X1.shape[1])), X3]])
    y = np.r_[evaluation.delta, np.where(keep, reference.costs.y, 0.0)]
    W = objective.W
    ZX = Z.T @ X
    linear = np.linalg.solve(ZX.T @ W @ ZX, ZX.T @ W @ (Z.T @ y))
    np.testing.assert_allclose(np.r_[evaluation.beta, evaluation.gamma], linear, rtol=1e-10)
    g = Z.T @ (y - X @ linear) / N
    np.testing.assert_allclose(evaluation.objective, N * g @ W @ g, rtol=1e-10)
    with pytest.raises(bd.DataError, match="99"):
        supply_problem("log", markets=[1, 99])


def test_a_parameter_that_moves_only_omega_is_identified() -> None:
    # identified_parameters flags a theta whose d xi / d theta column is numerical noise; with a
    # supply side the same theta may still move omega, and then it is identified (the moment
    # Jacobian G has a nonzero column). Here the xi column of pi is zeroed by hand.
    import dataclasses
    import warnings

    from blpdemand.solve.covariance import identified_parameters

    problem = supply_problem("log")
    objective, theta = objective_at(problem)
    evaluation = objective.evaluate(theta)
    xi_jacobian = evaluation.xi_jacobian.copy()
    xi_jacobian[:, -1] = 0.0
    evaluation = dataclasses.replace(evaluation, xi_jacobian=xi_jacobian)
    stack = objective.stack
    G = np.column_stack([stack.Z.T @ evaluation.residual_jacobian,
                         -(stack.Z.T @ stack.X)]) / problem.N
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        identified = identified_parameters(problem, objective.layout, evaluation, objective.W, G)
    assert identified.all()


def test_singular_first_order_conditions_are_a_failure_naming_the_market() -> None:
    # alpha_i = 0 for everyone (no Sigma or Pi on prices): ds/dp = 0, the Bertrand conditions
    # are singular in every market; the evaluation fails with the market named, no exception
    objective, theta = objective_at(supply_problem("linear"))
    theta[3], theta[4] = 0.0, 0.0
    evaluation = objective.evaluate(theta)
    assert evaluation.failed and np.isfinite(evaluation.objective)
    assert objective.supply_failure is not None
    assert "market 0" in objective.supply_failure and "singular" in objective.supply_failure


def test_trial_theta_where_log_costs_fail_are_counted_and_the_estimate_is_unaffected() -> None:
    # From pi = -3 the line search probes theta where some c = p - eta <= 0 (log undefined):
    # each is a penalty, counted in results.supply_failures and the summary, and the run ends
    # where the start pi = -1.2 (no failures) ends (rel 1e-6: two quasi-Newton runs to gtol).
    # The demand moments alone (7) are fewer than K1 + P = 8: the supply moments identify too.
    import warnings

    problem = supply_problem("log")
    config = bd.EstimationConfig(starts=0, hessian=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bd.errors.OptimizationWarning)
        near = bd.estimate(problem, sigma=SIGMA, pi=PI, config=config)
        far = bd.estimate(problem, sigma=SIGMA, pi=np.array([[0.0], [0.0], [-3.0]]),
                          config=config)
    assert near.converged and far.converged
    assert near.supply_failures == 0 and far.supply_failures > 0
    assert f"failed at {far.supply_failures} trial theta" in " ".join(far.summary().notes)
    np.testing.assert_allclose(far.estimates, near.estimates, rtol=1e-6, atol=1e-6)
