"""Quasi-Newton runs that stop short of gtol are restarted once from where they stopped.

Reference: a strictly convex quadratic Q(theta) = (theta - m)' A (theta - m) / 2 with its
closed-form minimum m. scipy's first run is replaced by one that stops halfway with BFGS's
"precision loss" message (what a stale curvature estimate does on BLP objectives, seen on a
simulated replication); the restart must finish at m, and must not happen when the first run
used its whole iteration budget or when the restart ends higher.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize

from blpdemand.solve import optimizer
from blpdemand.solve.optimizer import minimize

A = np.array([[4.0, 1.0], [1.0, 3.0]])
M = np.array([0.7, -1.2])


def quadratic(theta: np.ndarray) -> tuple[float, np.ndarray]:
    d = theta - M
    return float(d @ A @ d / 2), A @ d


def _first_run_stops_halfway(monkeypatch: pytest.MonkeyPatch, nit: int, *,
                             restart_to: np.ndarray | None = None) -> list[np.ndarray]:
    real = scipy.optimize.minimize
    starts: list[np.ndarray] = []

    def fake(fun, x0, **kwargs):  # type: ignore[no-untyped-def]
        starts.append(np.array(x0))
        if len(starts) == 1:
            return scipy.optimize.OptimizeResult(
                x=x0 + 0.5 * (M - x0), success=False, nit=nit,
                message="Desired error not necessarily achieved due to precision loss.")
        if restart_to is not None:
            return scipy.optimize.OptimizeResult(x=restart_to, success=True, nit=1,
                                                 message="moved away")
        return real(fun, x0, **kwargs)

    monkeypatch.setattr(optimizer.scipy.optimize, "minimize", fake)
    return starts


@pytest.mark.parametrize("method", ["bfgs", "l-bfgs-b"])
def test_restart_finishes_a_run_stopped_by_the_line_search(monkeypatch, method):
    starts = _first_run_stops_halfway(monkeypatch, nit=3)
    theta0 = np.array([3.0, 2.0])
    result = minimize(quadratic, theta0, method=method, bounds=None, gtol=1e-8,
                      max_iterations=100)
    assert len(starts) == 2
    np.testing.assert_allclose(starts[1], theta0 + 0.5 * (M - theta0))  # from where it stopped
    assert result.converged and np.max(np.abs(result.theta - M)) < 1e-7
    assert "restarted once" in result.message and result.iterations > 3


def test_no_restart_after_the_iteration_budget(monkeypatch):
    starts = _first_run_stops_halfway(monkeypatch, nit=10)
    result = minimize(quadratic, np.array([3.0, 2.0]), method="bfgs", bounds=None, gtol=1e-8,
                      max_iterations=10)
    assert len(starts) == 1 and not result.converged


def test_a_restart_that_ends_higher_is_dropped(monkeypatch):
    starts = _first_run_stops_halfway(monkeypatch, nit=3, restart_to=np.array([10.0, 10.0]))
    theta0 = np.array([3.0, 2.0])
    result = minimize(quadratic, theta0, method="bfgs", bounds=None, gtol=1e-8,
                      max_iterations=100)
    assert len(starts) == 2 and not result.converged
    np.testing.assert_allclose(result.theta, theta0 + 0.5 * (M - theta0))
    assert "restarted" not in result.message


def test_other_optimizers_are_not_restarted(monkeypatch):
    starts = _first_run_stops_halfway(monkeypatch, nit=3)
    minimize(quadratic, np.array([3.0, 2.0]), method="slsqp", bounds=None, gtol=1e-8,
             max_iterations=100)
    assert len(starts) == 1


# ---------------------------------------------------------------- Newton polish
def _stalled(theta: np.ndarray) -> optimizer.OptimizationResult:
    value, grad = quadratic(theta)
    return optimizer.OptimizationResult(
        start=theta, theta=theta, objective=value, gradient=grad,
        projected_gradient_norm=float(np.max(np.abs(grad))),
        status=optimizer.Status.NOT_CONVERGED, message="precision loss",
        iterations=5, evaluations=9)


def test_newton_polish_finishes_at_the_closed_form_minimum():
    # Reference: the quadratic's minimum M; one Newton step on its exact Hessian A lands there.
    step = _stalled(np.array([3.0, 2.0]))
    polished, hessian = optimizer.newton_polish(quadratic, lambda t: A, step, A, None, 1e-10)
    assert polished.converged and np.allclose(polished.theta, M, atol=1e-12)
    assert "1 Newton step" in polished.message and polished.evaluations == 10
    assert np.array_equal(hessian, A)


def test_newton_polish_respects_bounds_and_second_order_conditions():
    # Reference: the bounded minimum of the quadratic with theta_0 <= 0.5 (M_0 = 0.7 is outside):
    # the clipped Newton steps lower Q and stay in the box; an indefinite Hessian, or a step
    # that raises Q, leaves the run unchanged.
    step = _stalled(np.array([0.0, 2.0]))
    bounds = [(-np.inf, 0.5), (-np.inf, np.inf)]
    polished, _ = optimizer.newton_polish(quadratic, lambda t: A, step, A, bounds, 1e-10)
    assert polished.theta[0] <= 0.5 and polished.objective < step.objective
    indefinite = np.array([[1.0, 0.0], [0.0, -1.0]])
    same, H = optimizer.newton_polish(quadratic, lambda t: A, step, indefinite, None, 1e-10)
    assert same is step and H is indefinite
    wrong = 1e-3 * np.eye(2)  # a Newton step far past the minimum: Q rises, nothing taken
    same, _ = optimizer.newton_polish(quadratic, lambda t: A, step, wrong, None, 1e-10)
    assert np.array_equal(same.theta, step.theta) and same.objective == step.objective
    assert same.evaluations == step.evaluations + 1  # the rejected proposal was evaluated
