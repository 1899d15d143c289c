"""Lognormal random coefficients (issue 20) against PyBLP's ``rc_types=['linear', 'log']``, live.

Data: PyBLP's Simulation of 30 markets x 10 products (4 firms), 100 agents per market with a
constant and ``income`` as demographics, X1 = [1, x], X2 = [x, -prices] with the coefficient on
-prices lognormal: exp(pi_0 + sigma nu + pi_income income), Bertrand prices from costs
1 + 0.5 x + 0.5 w + omega, (xi, omega) correlated. blpdemand states the same model as X2 =
[x, prices] with ``lognormal=["prices"]``: the price coefficient -exp(...), the same mu.

Both are given the same products, agents (nodes and weights) and instruments (BLP sums of x and
w, and w), and start from the truth.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.solve.gmm import DemandObjective
from blpdemand.solve.moments import problem_stack

pyblp = pytest.importorskip("pyblp")

SIGMA = np.diag([0.5, 0.3])
PI = np.array([[0.0, 0.0], [0.2, 0.2]])  # rows x, prices; columns 1, income


@pytest.fixture(scope="module")
def simulated() -> dict[str, Any]:
    pyblp.options.verbose = False
    ids = pyblp.build_id_data(T=30, J=10, F=4)
    rng = np.random.default_rng(0)
    I = 100
    agents = pd.DataFrame({"market_ids": np.repeat(np.unique(ids.market_ids), I),
                           "weights": 1.0 / I})
    agents["nodes0"] = rng.standard_normal(len(agents))
    agents["nodes1"] = rng.standard_normal(len(agents))
    agents["income"] = rng.standard_normal(len(agents))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        simulation = pyblp.Simulation(
            product_formulations=(pyblp.Formulation("1 + x"),
                                  pyblp.Formulation("0 + x + I(-prices)"),
                                  pyblp.Formulation("1 + x + w")),
            product_data={"market_ids": ids.market_ids, "firm_ids": ids.firm_ids},
            beta=[1.0, 1.0], sigma=SIGMA, pi=PI, gamma=[1.0, 0.5, 0.5],
            agent_formulation=pyblp.Formulation("1 + income"), agent_data=agents,
            rc_types=["linear", "log"], xi_variance=0.2, omega_variance=0.2, correlation=0.7,
            seed=1)
        data = simulation.replace_endogenous().product_data
    products = pd.DataFrame({"market_ids": data.market_ids.ravel(),
                             "firm_ids": data.firm_ids.ravel(), "shares": data.shares.ravel(),
                             "prices": data.prices.ravel(), "x": data.x.ravel(),
                             "w": data.w.ravel()})
    Z = pyblp.build_blp_instruments(pyblp.Formulation("0 + x + w"), products)
    for k in range(Z.shape[1]):
        products[f"demand_instruments{k}"] = Z[:, k]
    products[f"demand_instruments{Z.shape[1]}"] = products["w"]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = pyblp.Problem((pyblp.Formulation("1 + x"), pyblp.Formulation("0 + x + I(-prices)")),
                               products, agent_formulation=pyblp.Formulation("1 + income"),
                               agent_data=agents, rc_types=["linear", "log"])
    ours = bd.Problem(products, linear="1 + x", nonlinear="0 + x + prices",
                      demographics="1 + income", agents=agents, lognormal=["prices"],
                      instruments=[c for c in products if c.startswith("demand_instruments")])
    return {"ours": ours, "theirs": theirs}


def _pyblp_solve(problem: Any, **options: Any) -> Any:
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return problem.solve(sigma=SIGMA, pi=PI, method="1s",
                             iteration=pyblp.Iteration("squarem", {"atol": 1e-14}), **options)


def test_objective_and_gradient_at_fixed_theta_equal_pyblp(simulated: dict[str, Any]) -> None:
    ours = simulated["ours"]
    assert ours.X2.names == ("x", "prices") and ours.demographic_names == ("1", "income")
    theirs = _pyblp_solve(simulated["theirs"], optimization=pyblp.Optimization("return"))
    layout, theta = ours.layout(SIGMA, PI)
    Z = problem_stack(ours).Z
    evaluation = DemandObjective(ours, layout, np.linalg.inv(Z.T @ Z / ours.N),
                                 contraction=bd.FixedPointConfig(tol=1e-14)).evaluate(theta)
    # Q ~ 1 and its gradient ~ 1 are sums over 300 products of delta's to 1e-14
    assert evaluation.objective == pytest.approx(float(theirs.objective), rel=1e-9)
    np.testing.assert_allclose(evaluation.gradient, np.ravel(theirs.gradient), rtol=1e-7,
                               atol=1e-9)
    np.testing.assert_allclose(evaluation.beta, np.ravel(theirs.beta), rtol=1e-9)


@pytest.fixture(scope="module")
def estimates(simulated: dict[str, Any]) -> dict[str, Any]:
    config = bd.EstimationConfig(method="1s", starts=0, gtol=1e-8, optimizer="l-bfgs-b",
                                 contraction=bd.FixedPointConfig(tol=1e-14))
    ours = bd.estimate(simulated["ours"], sigma=SIGMA, pi=PI, config=config)
    theirs = _pyblp_solve(simulated["theirs"],
                          optimization=pyblp.Optimization("l-bfgs-b", {"gtol": 1e-8}))
    return {"ours": ours, "theirs": theirs}


def test_estimates_equal_pyblp(estimates: dict[str, Any]) -> None:
    ours, theirs = estimates["ours"], estimates["theirs"]
    assert ours.converged
    # both stop where |grad| < 1e-8 on a well-conditioned 4-parameter problem
    np.testing.assert_allclose(ours.sigma, theirs.sigma, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ours.pi, theirs.pi, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ours.beta, np.ravel(theirs.beta), rtol=1e-6)
    assert ours.objective == pytest.approx(float(theirs.objective), rel=1e-7)
    np.testing.assert_allclose(ours.theta_se, np.ravel(theirs.sigma_se)[[0, 3]].tolist()
                               + np.ravel(theirs.pi_se)[[2, 3]].tolist(), rtol=1e-4)


def test_price_elasticities_equal_pyblp(estimates: dict[str, Any]) -> None:
    ours, theirs = estimates["ours"], estimates["theirs"]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = theirs.compute_elasticities(name="prices")
    got = ours.elasticities().stacked()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)
    # a lognormal price coefficient is negative for every consumer: every own effect is too
    assert np.all(ours.elasticities().diagonal() < 0)


def test_truth_within_two_standard_errors(estimates: dict[str, Any]) -> None:
    ours = estimates["ours"]
    truth = np.array([SIGMA[0, 0], SIGMA[1, 1], PI[1, 0], PI[1, 1]])
    assert np.all(np.abs(ours.theta - truth) < 2 * ours.theta_se), (ours.theta, ours.theta_se)
