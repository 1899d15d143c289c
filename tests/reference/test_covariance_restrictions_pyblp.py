"""Covariance restrictions (MacKay and Miller 2023) against PyBLP 1.3's covariance_instruments,
run live on the same simulated Bertrand markets with NO excluded instrument on either side.

Model on both sides: X1 = 1 + x1 + x2 (no prices), X2 = prices with its mean coefficient the Pi
element of a constant demographic ("one"; one agent per market: a logit whose price
coefficient is nonlinear), log costs X3 = 1 + w1 + w2, Z_D = X1, Z_S = X3 and Z_C = [1] or
[1, x1] (PyBLP's ``covariance_instruments0..``), its default step-1 W
blockdiag((Z_D'Z_D/N)^-1, (Z_S'Z_S/N)^-1, (Z_C'Z_C/N)^-1) and robust step-2 W. The data:
alpha = -2, gamma = (0.5, 0.5) so that no share falls below 3e-7 (with PyBLP's default data,
shares down to 1e-17 made PyBLP's in-objective markups differ from its own compute_costs by
1e-3 at one product; ours equal compute_costs to 2e-15 there).

Standard errors: both tools concentrate beta and gamma out by the demand and supply blocks
alone, so the estimator is not the joint minimizer of g'Wg; ours is its sandwich
(``solve.concentrated_covariance``). PyBLP puts the theta column of G with beta and gamma
concentrated (D = (I - G_l K) G_theta) beside the partial beta/gamma columns, which gives the
same theta block when the model is exactly identified but beta/gamma variances that hold theta
fixed (Var(l - L theta), L = d l / d theta): here 0.019 for the intercept against our 0.080.
The tests check what the two share (G and S themselves, theta's SE where the formulas agree,
and PyBLP's beta/gamma SEs as that transform of our covariance).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from supply_markets import supply_data

import blpdemand as bd
from blpdemand.solve.covariance import stack_covariance
from blpdemand.solve.moments import problem_stack

pyblp = pytest.importorskip("pyblp")

T = 100
PI0 = np.array([[-1.5]])


def markets() -> tuple[pd.DataFrame, pd.DataFrame, str]:
    sim = bd.simulate(markets=T, products=5, firms=2, alpha=-2.0,
                      beta={"1": 1.0, "x1": 1.0, "x2": -0.5}, gamma=[0.5, 0.5], rho=0.0,
                      pricing="bertrand", xi_sd=0.5, eta_sd=0.3, rng=1)
    agents = pd.DataFrame({"market_ids": np.arange(T), "weights": 1.0, "nodes0": 0.0,
                           "one": 1.0})
    assert sim.supply is not None
    return sim.products, agents, sim.supply


def ours(columns: list[str]) -> bd.Problem:
    products, agents, supply = markets()
    return bd.Problem(products, linear="1 + x1 + x2", nonlinear="0 + prices",
                      demographics="0 + one", agents=agents, supply=supply, costs="log",
                      covariance_restrictions=columns)


def theirs(columns: list[str]) -> Any:
    products, agents, supply = markets()
    data = products.copy()
    for k, c in enumerate(columns):
        data[f"covariance_instruments{k}"] = 1.0 if c == "1" else data[c]
    pyblp.options.verbose = False
    formulations = (pyblp.Formulation("1 + x1 + x2"), pyblp.Formulation("0 + prices"),
                    pyblp.Formulation(supply))
    return pyblp.Problem(formulations, data, pyblp.Formulation("0 + one"), agents,
                         costs_type="log")


def solve(problem: Any, **options: Any) -> Any:
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return problem.solve(np.zeros((1, 1)), PI0, **options)


def relative(mine: Any, ref: Any) -> float:
    mine, ref = np.ravel(mine), np.ravel(ref)
    return float(np.max(np.abs(mine - ref)) / np.max(np.abs(ref)))


def pyblp_transform(results: bd.BLPResults) -> np.ndarray:
    """Our covariance of (theta, l) mapped to (theta, l - L theta), L = d l / d theta =
    -K G_theta: PyBLP's parameterization of the beta/gamma block (module docstring)."""
    G, W, P = results.G, results.W, results.layout.P
    MU = G.shape[0] - len(results.problem.supply.covariance.columns)  # type: ignore[union-attr]
    G_Ul = G[:MU, P:]
    L = -np.linalg.solve(G_Ul.T @ W[:MU, :MU] @ G_Ul, G_Ul.T @ W[:MU, :MU] @ G[:MU, :P])
    inverse = np.eye(G.shape[1])
    inverse[P:, :P] = -L
    return np.asarray(inverse @ results.covariance @ inverse.T)


@pytest.mark.parametrize("method", ["1s", "2s"])
@pytest.mark.parametrize("columns", [["1"], ["1", "x1"]], ids=["exact", "over"])
def test_objective_gradient_and_moments_at_fixed_theta(columns: list[str], method: str) -> None:
    # Reference: PyBLP at the same theta, the optimizer not run (Optimization("return")).
    # Measured max relative differences: Q 1e-14, gradient 1e-14, beta/gamma 1e-15, G and S
    # 1e-13, theta SE 1e-13 (exact). Tolerance 1e-8: the contraction is solved to 1e-14 and
    # the gradient's and G's linear solves lose a few digits (shares down to 3e-7).
    problem = ours(columns)
    mine = bd.evaluate(problem, pi=PI0,
                       config=bd.EstimationConfig(method=method, hessian=False))  # type: ignore
    ref = solve(theirs(columns), method=method, optimization=pyblp.Optimization("return"))
    assert relative(mine.objective, ref.objective) < 1e-8
    assert relative(mine.gradient, ref.gradient) < 1e-8
    assert relative(mine.beta, ref.beta) < 1e-8
    assert relative(mine.gamma, ref.gamma) < 1e-8
    assert relative(mine.W, ref.W) < 1e-8
    # S over the three blocks at these residuals (PyBLP's moments_covariances)
    stack = problem_stack(problem)
    sort = problem.products.sort
    S = stack_covariance(stack, stack.residuals(sort(mine.xi), sort(mine.omega)))
    assert relative(S, ref.moments_covariances) < 1e-8
    # G: our partial theta column concentrated, D = (I - G_l K) G_theta, is PyBLP's theta
    # column; the beta/gamma columns (covariance rows -omega X1, -xi X3) are the same
    G, W, P, MU = mine.G, mine.W, 1, 6
    G_l = G[:, P:]
    K = np.linalg.solve(G_l[:MU].T @ W[:MU, :MU] @ G_l[:MU],
                        np.c_[G_l[:MU].T @ W[:MU, :MU], np.zeros((6, G.shape[0] - MU))])
    D = G[:, :P] - G_l @ (K @ G[:, :P])
    assert relative(np.c_[D, G_l], ref.moments_jacobian) < 1e-8
    ref_se = np.r_[np.ravel(ref.pi_se), np.ravel(ref.beta_se), np.ravel(ref.gamma_se)]
    assert np.all(np.isfinite(mine.standard_errors)) and np.all(mine.standard_errors > 0)
    if len(columns) == 1:  # exactly identified: the theta blocks agree, l by the transform
        assert relative(mine.theta_se, ref.pi_se) < 1e-8
        assert relative(np.sqrt(np.diag(pyblp_transform(mine))), ref_se) < 1e-8
        # and the difference is real: PyBLP's intercept SE holds alpha fixed
        assert mine.beta_se[0] > 2 * float(np.ravel(ref.beta_se)[0])


@pytest.mark.parametrize("columns", [
    ["1"], ["1", "x1"]], ids=["exact", "over"])
def test_two_step_estimate_matches_pyblp(columns: list[str]) -> None:
    # The full 2-step GMM from pi = -1.5, one start per step on both sides (ours: starts=0);
    # both converge here. Measured max relative differences: exactly identified, pi, beta,
    # gamma 4e-14, theta SE and PyBLP's beta/gamma SEs from ours by the transform 1e-14, Q = 0
    # on both sides (2e-26 and 3e-25); over-identified (J df = 1), estimates 1e-9, Q 6e-9,
    # theta SE 1.3e-5 (the two sandwiches differ at a W that is not S^-1 at the estimate; the
    # beta/gamma transform holds only when exactly identified, off by up to 2e-3 here).
    # Tolerances: estimates 1e-6, Q 1e-7, SEs 1e-4 (the issue's).
    mine = bd.estimate(ours(columns), pi=PI0, config=bd.EstimationConfig(method="2s", starts=0))
    ref = solve(theirs(columns), method="2s")
    assert mine.converged
    assert relative(mine.pi, ref.pi) < 1e-6
    assert relative(mine.beta, ref.beta) < 1e-6
    assert relative(mine.gamma, ref.gamma) < 1e-6
    assert relative(mine.theta_se, ref.pi_se) < 1e-4
    if len(columns) == 1:  # Q = 0 at the exactly identified solution (both tools)
        assert mine.objective < 1e-12 and float(np.squeeze(ref.objective)) < 1e-12
        assert mine.hansen_j.df == 0
        ref_se = np.r_[np.ravel(ref.pi_se), np.ravel(ref.beta_se), np.ravel(ref.gamma_se)]
        assert relative(np.sqrt(np.diag(pyblp_transform(mine))), ref_se) < 1e-4
    else:
        assert relative(mine.objective, ref.objective) < 1e-7
        assert mine.hansen_j.df == 1


SIGMA = np.array([[0.6, 0, 0], [0.2, 0.8, 0], [0, 0, 0.3]])
PI = np.array([[0.0], [0.0], [-1.2]])


def random_coefficients(costs: str) -> tuple[bd.Problem, Any]:
    """Random coefficients on 1, x1 and prices (with a covariance), Pi on income for prices,
    excluded demand (w1, w2, w1 x1, w2^2) and supply (x1, x2) instruments, Z_C = [1, x1]."""
    products, agents = supply_data()
    mine = bd.Problem(products, linear="1 + x1 + x2", nonlinear="1 + x1 + prices",
                      demographics="0 + income", agents=agents,
                      instruments=["w1", "w2", "z3", "z4"], supply="1 + w1 + w2",
                      supply_instruments=["x1", "x2"], costs=costs,
                      covariance_restrictions=["1", "x1"])
    data = products.copy()
    for k, c in enumerate(["w1", "w2", "z3", "z4"]):
        data[f"demand_instruments{k}"] = data[c]
    for k, c in enumerate(["x1", "x2"]):
        data[f"supply_instruments{k}"] = data[c]
    data["covariance_instruments0"], data["covariance_instruments1"] = 1.0, data["x1"]
    formulations = (pyblp.Formulation("1 + x1 + x2"), pyblp.Formulation("1 + x1 + prices"),
                    pyblp.Formulation("1 + w1 + w2"))
    pyblp.options.verbose = False
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pyblp.Problem(formulations, data, pyblp.Formulation("0 + income"), agents,
                            costs_type=costs)
    return mine, ref


@pytest.mark.parametrize("method", ["1s", "2s"])
@pytest.mark.parametrize("costs", ["linear", "log"])
def test_random_coefficients_at_fixed_theta(costs: str, method: str) -> None:
    # Four parameters (Sigma with a covariance, Pi on income for prices), excluded instruments
    # on both sides and Z_C = [1, x1]: PyBLP's Q, gradient, beta, gamma, S and G (theta column
    # concentrated, as above) at the same theta. PyBLP orders each block's instruments
    # excluded first. Measured: 1e-13 or less; tolerance 1e-8 as above.
    mine_problem, ref_problem = random_coefficients(costs)
    mine = bd.evaluate(mine_problem, sigma=SIGMA, pi=PI,
                       config=bd.EstimationConfig(method=method, hessian=False))  # type: ignore
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ref_problem.solve(SIGMA, PI, method=method,
                                optimization=pyblp.Optimization("return"))
    assert relative(mine.objective, ref.objective) < 1e-8
    assert relative(mine.gradient, ref.gradient) < 1e-8
    assert relative(mine.beta, ref.beta) < 1e-8
    assert relative(mine.gamma, ref.gamma) < 1e-8
    ours_of_theirs = np.r_[3:7, 0:3, 7 + np.r_[3:5, 0:3], 12, 13]  # their k is our [k]
    W = mine.W[np.ix_(ours_of_theirs, ours_of_theirs)]
    assert relative(W, ref.W) < 1e-8
    G, P, MU = mine.G, mine.layout.P, 12
    G_l = G[:, P:]
    K = np.linalg.solve(G_l[:MU].T @ mine.W[:MU, :MU] @ G_l[:MU],
                        np.c_[G_l[:MU].T @ mine.W[:MU, :MU], np.zeros((6, 2))])
    D = G[:, :P] - G_l @ (K @ G[:, :P])
    assert relative(np.c_[D, G_l][ours_of_theirs], ref.moments_jacobian) < 1e-8
    assert np.all(np.isfinite(mine.standard_errors)) and np.all(mine.standard_errors > 0)
