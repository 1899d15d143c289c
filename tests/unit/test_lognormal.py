"""Lognormal random coefficients (issue 20): the gradient by the chain rule against finite
differences, the location rule, and errors that name the column."""

from __future__ import annotations

import numpy as np
import pytest

import blpdemand as bd
from blpdemand.errors import SpecificationError
from blpdemand.model.utility import lognormal_coefficients, lognormal_slopes
from blpdemand.solve.gmm import DemandObjective
from blpdemand.solve.moments import problem_stack


def _problem(**options: object) -> bd.Problem:
    sim = bd.simulate(markets=12, products=6, sigma={"x1": 0.5}, draws=60, rng=3)
    agents = sim.agents.copy()
    draws = np.random.default_rng(4).standard_normal((len(agents), 2))
    agents["nodes1"], agents["income"] = draws[:, 0], draws[:, 1]
    return bd.Problem(sim.products, linear="1 + x1 + x2", nonlinear="0 + x1 + prices",
                      demographics="1 + income", agents=agents,
                      instruments=list(sim.instruments), **options)  # type: ignore[arg-type]


def test_lognormal_coefficient_and_slope() -> None:
    index = np.array([[0.3, -0.2, 1.5]])
    signs = np.array([0.0, -1.0, 1.0])
    np.testing.assert_array_equal(lognormal_coefficients(index, signs)[0],
                                  [0.3, -np.exp(-0.2), np.exp(1.5)])
    np.testing.assert_array_equal(lognormal_slopes(index, signs)[0],
                                  [1.0, -np.exp(-0.2), np.exp(1.5)])


@pytest.mark.parametrize("adjoint", [False, True])
def test_gradient_matches_finite_differences(adjoint: bool) -> None:
    problem = _problem(lognormal=["prices"])
    sigma = np.diag([0.5, 0.4])
    pi = np.array([[0.3, 0.0], [-0.5, 0.2]])  # pi[prices, 1] is the log coefficient's location
    layout, theta = problem.layout(sigma, pi)
    Z = problem_stack(problem).Z
    objective = DemandObjective(problem, layout, np.linalg.inv(Z.T @ Z / problem.N),
                                contraction=bd.FixedPointConfig(tol=1e-14))
    gradient = objective.evaluate(theta, adjoint=adjoint).gradient
    step = 1e-5
    numeric = np.array([
        (objective.evaluate(theta + step * e, report=False).objective
         - objective.evaluate(theta - step * e, report=False).objective) / (2 * step)
        for e in np.eye(theta.size)])
    # central differences: error O(step^2 Q''') ~ 1e-10 against gradients of order 1e-2..1
    np.testing.assert_allclose(gradient, numeric, rtol=1e-6, atol=1e-8)


def test_location_is_required() -> None:
    problem = _problem(lognormal=["prices"])
    with pytest.raises(SpecificationError, match=r"pi\[prices, 1\]"):
        problem.layout(np.diag([0.5, 0.4]), np.array([[0.0, 0.0], [0.0, 0.2]]))


def test_unknown_lognormal_column_is_named() -> None:
    with pytest.raises(SpecificationError, match="'hp'"):
        _problem(lognormal=["hp"])
    with pytest.raises(SpecificationError, match="sign"):
        _problem(lognormal={"prices": 2})


def test_constant_demographic_only_when_written() -> None:
    sim = bd.simulate(markets=4, products=3, sigma={"x1": 0.5}, draws=10, rng=0)
    agents = sim.agents.assign(income=1.0 + np.arange(len(sim.agents)) % 3)
    kept = bd.Problem(sim.products, linear="1 + x1", nonlinear="0 + x1", agents=agents,
                      demographics="1 + income", instruments=list(sim.instruments))
    dropped = bd.Problem(sim.products, linear="1 + x1", nonlinear="0 + x1", agents=agents,
                         demographics="income", instruments=list(sim.instruments))
    assert kept.demographic_names == ("1", "income")
    assert dropped.demographic_names == ("income",)


def test_approximation_refuses_lognormal() -> None:
    problem = _problem(lognormal=["prices"])
    with pytest.raises(SpecificationError, match="lognormal"):
        bd.estimate_approximation(problem)


def test_lognormal_is_recorded_in_the_inputs() -> None:
    assert _problem(lognormal=["prices"]).inputs["lognormal"] == {"prices": -1}
    assert _problem(lognormal={"x1": 1}).inputs["lognormal"] == {"x1": 1}
    assert _problem().inputs["lognormal"] is None


def test_constant_demographic_needs_no_demographic_draws() -> None:
    sim = bd.simulate(markets=4, products=3, sigma={"x1": 0.5}, draws=10, rng=0)
    problem = bd.Problem(sim.products, linear="1 + x1", nonlinear="0 + prices",
                         demographics="1", agents=bd.Integration("sobol", 16, rng=0),
                         instruments=list(sim.instruments), lognormal=["prices"])
    assert problem.demographic_names == ("1",)
    assert problem.agents is not None
    np.testing.assert_array_equal(problem.agents.demographics, 1.0)
