"""The random-coefficients nested logit (issue 20) against PyBLP 1.3 run live, and the truth.

Data: PyBLP's Simulation of 50 markets x 16 products (4 firms) in two nests drawn at random,
X1 = [1, prices, x] with beta = (1, -2, 1), a random coefficient on x with sigma = 0.8, a
common rho = 0.5, 7-node Gauss-Hermite agents, Bertrand prices from costs 1 + 0.5 x + 0.5 w +
omega with (xi, omega) correlated. Instruments: BLP sums of x and w, w, and within-nest sums
and counts. Both tools get the same products, agents and instruments, start at the truth and
solve the inner loop to 1e-14.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import EconomicWarning
from blpdemand.solve.gmm import DemandObjective
from blpdemand.solve.moments import problem_stack

pyblp = pytest.importorskip("pyblp")

SIGMA, RHO = 0.8, 0.5
TIGHT = bd.FixedPointConfig(tol=1e-14)


@pytest.fixture(scope="module")
def simulated() -> dict[str, Any]:
    pyblp.options.verbose = False
    T, J = 50, 16
    ids = pyblp.build_id_data(T=T, J=J, F=4)
    nests = np.random.default_rng(0).integers(0, 2, T * J)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        simulation = pyblp.Simulation(
            product_formulations=(pyblp.Formulation("1 + prices + x"), pyblp.Formulation("0 + x"),
                                  pyblp.Formulation("1 + x + w")),
            product_data={"market_ids": ids.market_ids, "firm_ids": ids.firm_ids,
                          "nesting_ids": nests},
            beta=[1.0, -2.0, 1.0], sigma=[[SIGMA]], gamma=[1.0, 0.5, 0.5], rho=RHO,
            integration=pyblp.Integration("product", 7), xi_variance=0.2, omega_variance=0.2,
            correlation=0.7, seed=1)
        data = simulation.replace_endogenous().product_data
    products = pd.DataFrame({name: np.ravel(getattr(data, name)) for name in
                             ("market_ids", "firm_ids", "nesting_ids", "shares", "prices", "x",
                              "w")})
    Z = pyblp.build_blp_instruments(pyblp.Formulation("0 + x + w"), products)
    cell = products.groupby(["market_ids", "nesting_ids"])
    extra = [products["w"], cell["x"].transform("sum") - products["x"],
             cell["x"].transform("size"), cell["w"].transform("sum") - products["w"]]
    for k, column in enumerate([*Z.T, *extra]):
        products[f"demand_instruments{k}"] = np.asarray(column, dtype=np.float64)
    agents = pd.DataFrame({"market_ids": np.ravel(simulation.agent_data.market_ids),
                           "weights": np.ravel(simulation.agent_data.weights),
                           "nodes0": simulation.agent_data.nodes[:, 0]})
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = pyblp.Problem((pyblp.Formulation("1 + prices + x"), pyblp.Formulation("0 + x")),
                               products, agent_data=agents)
    ours = bd.Problem(products, linear="1 + prices + x", nonlinear="0 + x", agents=agents,
                      nesting="nesting_ids",
                      instruments=[c for c in products if c.startswith("demand_instruments")])
    return {"ours": ours, "theirs": theirs}


def _pyblp(problem: Any, **options: Any) -> Any:
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return problem.solve(sigma=[[SIGMA]], rho=RHO,
                             iteration=pyblp.Iteration("squarem", {"atol": 1e-14}), **options)


def test_objective_and_gradient_at_fixed_theta_equal_pyblp(simulated: dict[str, Any]) -> None:
    ours = simulated["ours"]
    theirs = _pyblp(simulated["theirs"], method="1s",
                    optimization=pyblp.Optimization("return"))
    layout, theta = ours.layout([[SIGMA]], None, RHO)
    assert layout.names == ("sigma[x, x]", "rho")
    Z = problem_stack(ours).Z
    evaluation = DemandObjective(ours, layout, np.linalg.inv(Z.T @ Z / ours.N),
                                 contraction=TIGHT).evaluate(theta)
    # Q ~ 1 and dQ/drho ~ 10 are sums over 800 products of delta's to 1e-14
    assert evaluation.objective == pytest.approx(float(theirs.objective), rel=1e-9)
    np.testing.assert_allclose(evaluation.gradient, np.ravel(theirs.gradient), rtol=1e-7)
    np.testing.assert_allclose(evaluation.beta, np.ravel(theirs.beta), rtol=1e-9)
    np.testing.assert_allclose(evaluation.delta, ours.products.sort(np.ravel(theirs.delta)),
                               rtol=0, atol=1e-11)


@pytest.fixture(scope="module")
def estimated(simulated: dict[str, Any]) -> bd.BLPResults:
    config = bd.EstimationConfig(method="2s", starts=0, gtol=1e-8, contraction=TIGHT)
    return bd.estimate(simulated["ours"], sigma=[[SIGMA]], rho=RHO, config=config)


def test_estimate_recovers_the_truth(estimated: bd.BLPResults) -> None:
    assert estimated.converged
    z = (estimated.theta - [SIGMA, RHO]) / estimated.theta_se
    assert np.all(np.abs(z) < 2), z
    z_beta = (estimated.beta - [1.0, -2.0, 1.0]) / estimated.standard_errors[2:]
    assert np.all(np.abs(z_beta) < 2.5), z_beta


def test_pyblp_finds_our_one_step_estimate_a_minimum(simulated: dict[str, Any]) -> None:
    # PyBLP's 1-step objective at our 1-step estimate (the same W = (Z'Z/N)^-1): equal, and its
    # gradient vanishes there (a 1e-8 gradient tolerance was asked of us; 1e-6 leaves room for
    # 1e-14 inner-loop noise amplified by dQ/ddelta)
    config = bd.EstimationConfig(method="1s", starts=0, gtol=1e-8, contraction=TIGHT)
    ours = bd.estimate(simulated["ours"], sigma=[[SIGMA]], rho=RHO, config=config)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = simulated["theirs"].solve(
            sigma=ours.sigma, rho=ours.rho, method="1s",
            iteration=pyblp.Iteration("squarem", {"atol": 1e-14}),
            optimization=pyblp.Optimization("return"))
    assert float(theirs.objective) == pytest.approx(ours.objective, rel=1e-9)
    assert np.abs(np.ravel(theirs.gradient)).max() < 1e-6


def test_two_step_estimates_equal_pyblp(simulated: dict[str, Any],
                                        estimated: bd.BLPResults) -> None:
    theirs = _pyblp(simulated["theirs"], method="2s",
                    optimization=pyblp.Optimization("l-bfgs-b", {"gtol": 1e-8}))
    np.testing.assert_allclose(estimated.theta, [float(theirs.sigma[0, 0]),
                                                 float(theirs.rho[0, 0])], rtol=1e-6)
    np.testing.assert_allclose(estimated.beta, np.ravel(theirs.beta), rtol=1e-6)
    np.testing.assert_allclose(estimated.theta_se, [float(theirs.sigma_se[0, 0]),
                                                    float(theirs.rho_se[0, 0])], rtol=1e-4)


def test_post_estimation_equals_pyblp(simulated: dict[str, Any]) -> None:
    # both at the same theta with the 1-step W: the same beta, so the same demand
    ours = bd.evaluate(simulated["ours"], sigma=[[SIGMA]], rho=RHO,
                       config=bd.EstimationConfig(method="1s", contraction=TIGHT))
    theirs = _pyblp(simulated["theirs"], method="1s", optimization=pyblp.Optimization("return"))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = {"elasticities": np.asarray(theirs.compute_elasticities()),
                    "diversion": np.asarray(theirs.compute_diversion_ratios()),
                    "costs": np.ravel(theirs.compute_costs()),
                    "passthrough": np.asarray(theirs.compute_passthrough())}
    # ds/dp from 1e-14 deltas: relative 1e-9 of each matrix's scale
    with pytest.warns(EconomicWarning, match="negative marginal costs|Lerner index"):  # both
        costs = bd.compute_costs(ours)
    assert np.sum(expected["costs"] < 0) == np.sum(costs < 0) == 1
    for name, got in (("elasticities", ours.elasticities().stacked()),
                      ("diversion", bd.compute_diversion_ratios(ours).stacked()),
                      ("costs", costs), ("passthrough", bd.compute_passthrough(ours).stacked())):
        # (pass-through: ours differences the nested markup equation, PyBLP forms the nested
        # demand Hessians; 3.8e-12 of the largest entry measured)
        scale = np.nanmax(np.abs(expected[name]))
        assert np.nanmax(np.abs(got - expected[name])) <= 1e-9 * scale, name


def test_merger_prices_equal_pyblp(simulated: dict[str, Any]) -> None:
    # at the same theta and W (so the same demand): firm 1 buys firm 2; both solve the nested
    # Bertrand FOCs at the costs each implies (ours by the zeta fixed point with the nested
    # Lambda and Gamma), to the FOC tolerance: 1e-8 of the price scale
    ours = bd.evaluate(simulated["ours"], sigma=[[SIGMA]], rho=RHO,
                       config=bd.EstimationConfig(method="1s", contraction=TIGHT))
    theirs = _pyblp(simulated["theirs"], method="1s", optimization=pyblp.Optimization("return"))
    firms = ours.problem.products.unsort(ours.problem.products.array("firm_ids"))
    merged = np.where(firms == 2, 1, firms)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = np.ravel(theirs.compute_prices(firm_ids=merged[:, None],
                                                  costs=theirs.compute_costs()))
        counterfactual = bd.compute_prices(ours, firm_ids=merged, costs=bd.compute_costs(ours))
    assert all(s.converged for s in counterfactual.status)
    assert np.abs(counterfactual.prices - expected).max() <= 1e-8 * np.abs(expected).max()
