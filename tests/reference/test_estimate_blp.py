"""BLP (1995) automobile demand as in PyBLP's tutorial, against PyBLP 1.3 run live (demand side).

Tutorial specification: X1 = 1 + hpwt + air + mpd + space, X2 = 1 + prices + hpwt + air + mpd +
space, demographic I(1 / income) interacted with prices only, Sigma diagonal with prices fixed at
zero, starting values diag(3.612, 0, 4.628, 1.818, 1.050, 2.056) and pi_prices = -43.501, the
8 BLP sums-of-characteristics demand instruments. The importance-sampling weights sum to 0.154,
not 1 (both tools warn). The tutorial estimates demand and supply jointly with clustered W;
until joint estimation exists we compare the demand side: objective and gradient at fixed theta,
and a demand-only estimate (see the slow test for why its specification is smaller).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import IntegrationWarning

pyblp = pytest.importorskip("pyblp")

LINEAR = "1 + hpwt + air + mpd + space"
NONLINEAR = "1 + prices + hpwt + air + mpd + space"
SIGMA0 = np.diag([3.612, 0, 4.628, 1.818, 1.050, 2.056])
PI0 = np.c_[[0, -43.501, 0, 0, 0, 0]]
INSTRUMENTS = [f"demand_instruments{k}" for k in range(8)]


def ours(products: pd.DataFrame, agents: pd.DataFrame, nonlinear: str) -> bd.Problem:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IntegrationWarning)  # weights sum to 0.154 (see above)
        return bd.Problem(products, linear=LINEAR, nonlinear=nonlinear,
                          demographics="0 + I(1 / income)", agents=agents, instruments=INSTRUMENTS)


def theirs(products: pd.DataFrame, agents: pd.DataFrame, nonlinear: str) -> object:
    pyblp.options.verbose = False
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pyblp.Problem((pyblp.Formulation(LINEAR), pyblp.Formulation(nonlinear)), products,
                             pyblp.Formulation("0 + I(1 / income)"), agents)


def solve(problem: object, sigma: np.ndarray, pi: np.ndarray, **options: object) -> object:
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return problem.solve(sigma, pi, method="1s", check_optimality="gradient", **options)


@pytest.mark.parametrize("scale", [1.0, 0.5], ids=["tutorial-start", "half-start"])
def test_objective_gradient_and_clustered_errors_at_fixed_theta(blp_products, blp_agents, scale):
    # Reference: PyBLP's objective, gradient (its theta order equals ours for diagonal Sigma and
    # one Pi column), beta and clustered SEs (clustering_ids) at the same theta, W = (Z'Z/N)^-1.
    # Tolerances: objective rel 1e-9, gradient/beta rel 1e-7, SEs rel 1e-6.
    sigma, pi = scale * SIGMA0, scale * PI0
    config = bd.EstimationConfig(hessian=False, covariance="clustered", clusters="clustering_ids")
    mine = bd.evaluate(ours(blp_products, blp_agents, NONLINEAR), sigma=sigma, pi=pi, config=config)
    ref = solve(theirs(blp_products, blp_agents, NONLINEAR), sigma, pi,
                optimization=pyblp.Optimization("return"), se_type="clustered")
    np.testing.assert_allclose(mine.objective, ref.objective, rtol=1e-9)
    np.testing.assert_allclose(mine.gradient, ref.gradient.ravel(), rtol=1e-7)
    np.testing.assert_allclose(mine.beta, ref.beta.ravel(), rtol=1e-7)
    np.testing.assert_allclose(mine.beta_se, ref.beta_se.ravel(), rtol=1e-6)
    free = mine.layout.sigma_free
    np.testing.assert_allclose(mine.sigma_se[free], ref.sigma_se[free], rtol=1e-6)
    np.testing.assert_allclose(mine.pi_se[1, 0], ref.pi_se[1, 0], rtol=1e-6)


@pytest.mark.slow
def test_demand_only_estimate_matches_pyblp(blp_products, blp_agents):
    # Why this specification: with the tutorial's six random coefficients the demand-only GMM
    # surface is nearly flat in sigma_1, sigma_mpd and sigma_space (SEs 5-30x the estimates), and
    # PyBLP's demand-only run with the tutorial settings stops unconverged; two quasi-Newton runs
    # then stop at different points of the flat valley. Keeping the price-income interaction and
    # the random coefficient on hpwt (X2 = prices + hpwt) gives a well-defined minimum that both
    # tools reach. Reference: PyBLP run live, BFGS with gtol 1e-6 on both sides; estimates,
    # robust SEs and the objective to rel 1e-4.
    nonlinear = "0 + prices + hpwt"
    sigma, pi = np.diag([0, 4.628]), np.c_[[-43.501, 0]]
    mine = bd.estimate(ours(blp_products, blp_agents, nonlinear), sigma=sigma, pi=pi,
                       config=bd.EstimationConfig(optimizer="bfgs", gtol=1e-6))
    ref = solve(theirs(blp_products, blp_agents, nonlinear), sigma, pi,
                optimization=pyblp.Optimization("bfgs", {"gtol": 1e-6}))
    np.testing.assert_allclose(mine.objective, ref.objective, rtol=1e-4)
    np.testing.assert_allclose(mine.sigma[1, 1], ref.sigma[1, 1], rtol=1e-4)
    np.testing.assert_allclose(mine.pi[0, 0], ref.pi[0, 0], rtol=1e-4)
    np.testing.assert_allclose(mine.beta, ref.beta.ravel(), rtol=1e-4)
    np.testing.assert_allclose(mine.beta_se, ref.beta_se.ravel(), rtol=1e-4)
    np.testing.assert_allclose(mine.sigma_se[1, 1], ref.sigma_se[1, 1], rtol=1e-4)
    np.testing.assert_allclose(mine.pi_se[0, 0], ref.pi_se[0, 0], rtol=1e-4)


def test_tutorial_two_step_clustered_estimate_is_finite_and_stationary_in_pyblp(blp_products,
                                                                                blp_agents):
    # Regression: the tutorial's six random coefficients, 2-step GMM with clustered W and SEs
    # (demand only; PyBLP's own run of it stops "unconverged" with gradient ~2e-6) was reported
    # to end in a step 2 built from NaN residuals. It must complete with finite estimates.
    # Reference: PyBLP run live at OUR step-2 estimate with OUR W (its moment order is the
    # excluded instruments first, then the exogenous X1 columns): objective to rel 1e-8, and
    # PyBLP's gradient there below our convergence threshold gtol max(1, Q) (1e-6 Q).
    # one start per step (the regression's path; random starts find other local minima here)
    config = bd.EstimationConfig(method="2s", optimizer="bfgs", weighting="clustered",
                                 covariance="clustered", clusters="clustering_ids", starts=0)
    problem = ours(blp_products, blp_agents, NONLINEAR)
    mine = bd.estimate(problem, sigma=SIGMA0, pi=PI0, config=config)
    assert mine.converged and len(mine.steps) == 2
    assert np.all(np.isfinite(mine.xi)) and np.all(np.isfinite(mine.standard_errors))
    theirs_of_ours = np.r_[8:13, 0:8]  # our moment k (5 exogenous X1, 8 excluded) is theirs[k]
    back = np.argsort(theirs_of_ours)
    W = mine.W[np.ix_(back, back)]  # our W in PyBLP's moment order
    ref = solve(theirs(blp_products, blp_agents, NONLINEAR), mine.sigma, mine.pi, W=W,
                optimization=pyblp.Optimization("return"))
    np.testing.assert_allclose(mine.objective, ref.objective, rtol=1e-8)
    assert np.max(np.abs(ref.gradient)) <= 1e-6 * mine.objective
