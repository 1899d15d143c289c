"""Nevo (2000) cereal BLP as in PyBLP's tutorial, against PyBLP 1.3 run live on the same data.

Specification (PyBLP tutorial, "Nevo" section): X1 = prices with product fixed effects absorbed,
X2 = 1 + prices + sugar + mushy, demographics income, income_squared, age, child, the tutorial's
initial Sigma (diagonal) and Pi (its zero pattern fixes elements), 1-step GMM, BFGS.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd

pyblp = pytest.importorskip("pyblp")

SIGMA0 = np.diag([0.3302, 2.4526, 0.0163, 0.2441])
PI0 = np.array([[5.4819, 0, 0.2037, 0], [15.8935, -1.2, 0, 2.6342],
                [-0.2506, 0, 0.0511, 0], [1.2650, 0, -0.8091, 0]])
INSTRUMENTS = [f"demand_instruments{k}" for k in range(20)]


@pytest.fixture(scope="module")
def problem(nevo_products: pd.DataFrame, nevo_agents: pd.DataFrame) -> bd.Problem:
    return bd.Problem(nevo_products, linear="0 + prices", nonlinear="1 + prices + sugar + mushy",
                      demographics="0 + income + income_squared + age + child",
                      agents=nevo_agents, absorb="C(product_ids)", instruments=INSTRUMENTS)


@pytest.fixture(scope="module")
def pyblp_problem(nevo_products: pd.DataFrame, nevo_agents: pd.DataFrame) -> object:
    pyblp.options.verbose = False
    formulations = (pyblp.Formulation("0 + prices", absorb="C(product_ids)"),
                    pyblp.Formulation("1 + prices + sugar + mushy"))
    with np.errstate(all="ignore"):
        return pyblp.Problem(formulations, nevo_products,
                             pyblp.Formulation("0 + income + income_squared + age + child"),
                             nevo_agents)


def pyblp_order(results: bd.BLPResults, vector: np.ndarray) -> np.ndarray:
    """Our theta-ordered vector in PyBLP's order (Sigma, then Pi, both row by row)."""
    sigma, pi = results.layout.unpack(vector)
    return np.concatenate([sigma[results.layout.sigma_free], pi[results.layout.pi_free]])


def test_objective_gradient_and_standard_errors_at_the_tutorial_start(problem, pyblp_problem):
    # Reference: PyBLP's objective, gradient, beta and robust SEs at the same fixed theta
    # (Optimization('return')). Same data, same W = (Z'Z/N)^-1: objective to rel 1e-9,
    # gradient and beta to rel 1e-7, SEs to rel 1e-6 (both inner loops solved to 1e-14).
    ours = bd.evaluate(problem, sigma=SIGMA0, pi=PI0, config=bd.EstimationConfig(hessian=False))
    with np.errstate(all="ignore"):
        theirs = pyblp_problem.solve(SIGMA0, PI0, optimization=pyblp.Optimization("return"),
                                     method="1s", check_optimality="gradient")
    np.testing.assert_allclose(ours.objective, theirs.objective, rtol=1e-9)
    np.testing.assert_allclose(pyblp_order(ours, ours.gradient), theirs.gradient.ravel(), rtol=1e-7)
    np.testing.assert_allclose(ours.beta, theirs.beta.ravel(), rtol=1e-7)
    free = ours.layout.pi_free
    np.testing.assert_allclose(ours.pi_se[free], theirs.pi_se[free], rtol=1e-6)
    np.testing.assert_allclose(np.diag(ours.sigma_se), np.diag(theirs.sigma_se), rtol=1e-6)
    np.testing.assert_allclose(ours.beta_se, theirs.beta_se.ravel(), rtol=1e-6)
    # unadjusted SEs: a new results object, the original untouched
    unadjusted = ours.with_covariance("unadjusted")
    assert unadjusted is not ours and ours.covariance_kind == "robust"
    with np.errstate(all="ignore"):
        theirs_u = pyblp_problem.solve(SIGMA0, PI0, optimization=pyblp.Optimization("return"),
                                       method="1s", se_type="unadjusted",
                                       check_optimality="gradient")
    np.testing.assert_allclose(unadjusted.beta_se, theirs_u.beta_se.ravel(), rtol=1e-6)
    np.testing.assert_allclose(unadjusted.pi_se[free], theirs_u.pi_se[free], rtol=1e-6)


@pytest.mark.slow
def test_full_estimate_matches_pyblp(problem, pyblp_problem):
    # Reference: PyBLP's tutorial estimation run live, BFGS on both sides with the same gradient
    # tolerance (inf-norm 1e-6, tighter than the tutorial's 1e-5 so both reach the same point).
    # Estimates, robust SEs and the objective to rel 1e-4. (Slow: ~1 min per tool with the reference inner loop.)
    config = bd.EstimationConfig(optimizer="bfgs", gtol=1e-6, method="1s")
    ours = bd.estimate(problem, sigma=SIGMA0, pi=PI0, config=config)
    with np.errstate(all="ignore"):
        theirs = pyblp_problem.solve(SIGMA0, PI0, method="1s",
                                     optimization=pyblp.Optimization("bfgs", {"gtol": 1e-6}),
                                     check_optimality="gradient")
    free = ours.layout.pi_free
    np.testing.assert_allclose(ours.objective, theirs.objective, rtol=1e-4)
    np.testing.assert_allclose(np.diag(ours.sigma), np.diag(theirs.sigma), rtol=1e-4)
    np.testing.assert_allclose(ours.pi[free], theirs.pi[free], rtol=1e-4)
    np.testing.assert_allclose(ours.beta, theirs.beta.ravel(), rtol=1e-4)
    np.testing.assert_allclose(np.diag(ours.sigma_se), np.diag(theirs.sigma_se), rtol=1e-4)
    np.testing.assert_allclose(ours.pi_se[free], theirs.pi_se[free], rtol=1e-4)
    np.testing.assert_allclose(ours.beta_se, theirs.beta_se.ravel(), rtol=1e-4)
    # the second-order check: a strict local minimum (all Hessian eigenvalues positive)
    assert ours.hessian_eigenvalues is not None and ours.hessian_eigenvalues.min() > 0
