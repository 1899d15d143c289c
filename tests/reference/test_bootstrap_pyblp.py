"""Parametric bootstrap against PyBLP 1.3.0 run live on the Nevo (2000) cereal tutorial problem.

Both tools are evaluated at PyBLP's tutorial estimates (Optimization('return'), 1-step GMM), so
beta and delta agree at the estimate (~1e-14). PyBLP's ``ProblemResults.bootstrap(draws,
seed)`` draws (Sigma_b, Pi_b, beta_b); we feed the SAME draws into
``BootstrapDraws.from_parameters``. PyBLP holds xi (and the fixed effects) at the estimate:
delta_b = delta_hat + X1 (beta_b - beta_hat), shares move; our default re-solves delta_b with
the observed shares. So:

- hold="xi" is compared with PyBLP's bootstrapped delta, shares and elasticities;
- hold="shares" is compared with PyBLP's own inner loop at each draw: ``Problem.solve`` at
  (Sigma_b, Pi_b) with beta fixed at beta_b, whose delta and elasticities must equal ours.

Tolerance: relative 1e-8 (observed ~1e-12: both contractions are solved to 1e-14).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.solve.contraction import compute_shares

pyblp = pytest.importorskip("pyblp")
RTOL = 1e-8
DRAWS = 3
SIGMA = np.diag([0.5588, 3.3124, -0.0058, 0.0934])  # PyBLP tutorial estimates (rounded)
PI = np.array([[2.2919, 0, 1.2842, 0], [588.3252, -30.1920, 0, 11.0546],
               [-0.3842, 0, 0.0524, 0], [0.7480, 0, -1.3536, 0]])
DEMOGRAPHICS = "0 + income + income_squared + age + child"


def _close(ours: np.ndarray, theirs: np.ndarray) -> None:
    ours, theirs = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float).reshape(np.shape(ours))
    assert np.array_equal(np.isfinite(ours), np.isfinite(theirs))
    finite = np.isfinite(theirs)
    np.testing.assert_allclose(ours[finite], theirs[finite], rtol=RTOL, atol=1e-10)


@pytest.fixture(scope="module")
def nevo(nevo_products: pd.DataFrame, nevo_agents: pd.DataFrame):
    pyblp.options.verbose = False
    formulations = (pyblp.Formulation("0 + prices", absorb="C(product_ids)"),
                    pyblp.Formulation("1 + prices + sugar + mushy"))
    with np.errstate(all="ignore"):
        pyblp_problem = pyblp.Problem(formulations, nevo_products, pyblp.Formulation(DEMOGRAPHICS),
                                      nevo_agents)
        theirs = pyblp_problem.solve(SIGMA, PI, optimization=pyblp.Optimization("return"),
                                     method="1s", check_optimality="gradient")
        boot = theirs.bootstrap(draws=DRAWS, seed=0)
    problem = bd.Problem(nevo_products, linear="0 + prices", nonlinear="1 + prices + sugar + mushy",
                         demographics=DEMOGRAPHICS, agents=nevo_agents, absorb="C(product_ids)",
                         instruments=[f"demand_instruments{k}" for k in range(20)])
    ours = bd.evaluate(problem, sigma=SIGMA, pi=PI, config=bd.EstimationConfig(hessian=False))
    theta = np.array([ours.layout.pack(s, p)
                      for s, p in zip(boot.bootstrapped_sigma, boot.bootstrapped_pi)])
    beta = boot.bootstrapped_beta[:, :, 0]
    return ours, theirs, boot, theta, beta, pyblp_problem


def test_same_point_estimate(nevo) -> None:
    # Reference: PyBLP at the same theta; the draws are centred on the same beta and delta.
    ours, theirs, *_ = nevo
    _close(ours.beta, theirs.beta.ravel())
    _close(ours.delta, theirs.delta.ravel())


def test_hold_xi_matches_pyblp_bootstrap(nevo) -> None:
    # Reference: PyBLP's bootstrapped delta, shares and elasticities for the same draws
    # (its convention: xi fixed). Relative 1e-8.
    ours, _, boot, theta, beta, _ = nevo
    draws = bd.BootstrapDraws.from_parameters(ours, theta, beta, hold="xi")
    assert draws.draws == DRAWS and draws.dropped.size == 0
    _close(draws.delta, boot.bootstrapped_delta[:, :, 0])
    with np.errstate(all="ignore"):
        elasticities = boot.compute_elasticities()
    products = ours.problem.products
    for b, fitted in enumerate(draws.fitted):
        _close(bd.compute_elasticities(fitted).stacked(), elasticities[b])
        shares = compute_shares(ours.problem, ours.layout, fitted.theta, fitted.delta)
        _close(products.unsort(shares), boot.bootstrapped_shares[b, :, 0])


def test_hold_shares_matches_pyblp_inner_loop_at_each_draw(nevo) -> None:
    # Reference: PyBLP's contraction at (Sigma_b, Pi_b) with the observed shares and beta fixed
    # at beta_b; its delta and elasticities equal ours to relative 1e-8. The summary's draws
    # are PyBLP's own-elasticity values per draw.
    ours, _, boot, theta, beta, pyblp_problem = nevo
    draws = bd.BootstrapDraws.from_parameters(ours, theta, beta)
    assert draws.hold == "shares" and draws.draws == DRAWS
    expected = []
    for b in range(DRAWS):
        with np.errstate(all="ignore"):
            at_draw = pyblp_problem.solve(boot.bootstrapped_sigma[b], boot.bootstrapped_pi[b],
                                          beta=boot.bootstrapped_beta[b], method="1s",
                                          optimization=pyblp.Optimization("return"),
                                          check_optimality="gradient")
            elasticities = at_draw.compute_elasticities()
        _close(draws.delta[b], at_draw.delta.ravel())
        _close(bd.compute_elasticities(draws.fitted[b]).stacked(), elasticities)
        expected.append(at_draw.extract_diagonals(elasticities).ravel())
    summary = draws.apply(lambda f: bd.compute_elasticities(f).diagonal())
    _close(summary.draws, np.array(expected))
    _close(summary.std, np.std(expected, axis=0, ddof=1))


def test_shares_at_redrawn_delta_are_the_observed_shares(nevo) -> None:
    # Reference (closed form of the inversion): s(delta_b; theta_b) = s_obs at every draw.
    ours, _, _, theta, beta, _ = nevo
    draws = bd.BootstrapDraws.from_parameters(ours, theta, beta, workers=2)
    observed = ours.problem.products.shares
    for fitted in draws.fitted:
        shares = compute_shares(ours.problem, ours.layout, fitted.theta, fitted.delta)
        np.testing.assert_allclose(shares, observed, rtol=1e-10)
