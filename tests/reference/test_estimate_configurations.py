"""BLP estimator configurations the other reference tests leave out, against PyBLP 1.3 run live.

Nevo (2000) cereal data throughout. Each configuration is compared at a fixed theta (objective,
gradient, beta, standard errors: both inner loops are solved to 1e-14, so objective to rel 1e-9,
gradient and beta to rel 1e-7, SEs to rel 1e-6), and our estimate is checked against PyBLP's
first-order conditions: PyBLP evaluated at OUR estimate must give the same objective and SEs and
a (projected) gradient below our convergence threshold gtol max(1, Q) = 1e-6 Q. The full PyBLP
optimizations (5-20 s each) are the slow tests.

Conventions (PyBLP's documented ones, checked here):
- theta order: ours takes Sigma's free elements column by column (lower triangle), then Pi's
  column by column; PyBLP takes Sigma's lower triangle row by row, then Pi row by row. Both
  use beta_i = beta + Sigma nu_i + Pi y_i with Sigma lower triangular (Cholesky root).
- demand moments: ours are [exogenous X1 columns, excluded instruments], PyBLP's the reverse.
- 'unadjusted' standard errors after 2-step GMM: ours are the homoskedastic (G'S_u^-1 G)^-1 / N
  with S_u = var(xi) Z'Z/N at the estimate; PyBLP's (at step 2) are (G'W G)^-1 / N with its
  step-2 W, "computed under the assumption that the weighting matrix is optimal".
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import OptimizationWarning

pyblp = pytest.importorskip("pyblp")

INSTRUMENTS = [f"demand_instruments{k}" for k in range(20)]
DEMOGRAPHICS = "0 + income + income_squared + age + child"
# the Nevo tutorial's Pi and Sigma, with three correlated (off-diagonal) elements added
PI_TUTORIAL = np.array([[5.4819, 0, 0.2037, 0], [15.8935, -1.2, 0, 2.6342],
                        [-0.2506, 0, 0.0511, 0], [1.2650, 0, -0.8091, 0]])
SIGMA_CORRELATED = np.array([[0.3302, 0, 0, 0], [0.5, 2.4526, 0, 0], [0.05, 0, 0.0163, 0],
                             [0, -0.3, 0, 0.2441]])
# a small specification whose estimate takes ~0.1 s: random intercept and price coefficient,
# correlated, with income shifting both
SIGMA_SMALL = np.array([[0.3, 0.0], [0.5, 2.0]])
PI_SMALL = np.array([[0.5], [3.0]])


def ours(products: pd.DataFrame, agents: object, nonlinear: str, demographics: str | None, *,
         linear: str = "0 + prices", absorb: str | None = "C(product_ids)") -> bd.Problem:
    return bd.Problem(products, linear=linear, nonlinear=nonlinear, demographics=demographics,
                      agents=agents, absorb=absorb, instruments=INSTRUMENTS)


def theirs(products: pd.DataFrame, agents: pd.DataFrame, nonlinear: str,
           demographics: str | None, *, linear: str = "0 + prices",
           absorb: str | None = "C(product_ids)", integration: object = None) -> object:
    pyblp.options.verbose = False
    with np.errstate(all="ignore"):
        return pyblp.Problem(
            (pyblp.Formulation(linear, absorb=absorb), pyblp.Formulation(nonlinear)), products,
            None if demographics is None else pyblp.Formulation(demographics), agents,
            integration=integration)


def solve(problem: object, sigma: np.ndarray, pi: np.ndarray | None, **options: object) -> object:
    """PyBLP at a fixed theta (Optimization('return')) unless an optimization is given."""
    options.setdefault("method", "1s")
    options.setdefault("check_optimality", "gradient")
    options.setdefault("optimization", pyblp.Optimization("return"))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return problem.solve(sigma, pi, **options)


def pyblp_order(results: bd.BLPResults, vector: np.ndarray) -> np.ndarray:
    """Our theta-ordered vector in PyBLP's order (Sigma lower triangle row by row, Pi row by row)."""
    sigma, pi = results.layout.unpack(vector)
    return np.concatenate([sigma[results.layout.sigma_free], pi[results.layout.pi_free]])


def assert_same_at_theta(mine: bd.BLPResults, ref: object, *, gradient: bool = True) -> None:
    """Objective rel 1e-9, gradient and beta rel 1e-7 (gradient components within 1e-10 Q of
    zero: inner-loop noise), every SE rel 1e-6 (see the module docstring)."""
    np.testing.assert_allclose(mine.objective, ref.objective, rtol=1e-9)
    np.testing.assert_allclose(pyblp_order(mine, mine.theta), np.asarray(ref.theta).ravel(),
                               rtol=1e-12)
    if gradient:
        np.testing.assert_allclose(pyblp_order(mine, mine.gradient), ref.gradient.ravel(),
                                   rtol=1e-7, atol=1e-10 * max(1.0, mine.objective))
    np.testing.assert_allclose(mine.beta, ref.beta.ravel(), rtol=1e-7)
    np.testing.assert_allclose(pyblp_order(mine, mine.theta_se), np.r_[
        ref.sigma_se[mine.layout.sigma_free], ref.pi_se[mine.layout.pi_free]], rtol=1e-6)
    np.testing.assert_allclose(mine.beta_se, ref.beta_se.ravel(), rtol=1e-6)


def assert_pyblp_optimum(mine: bd.BLPResults, ref: object) -> None:
    """PyBLP at our estimate: the same objective, gradient and SEs (as above), and both
    projected gradients below our convergence threshold 1e-6 max(1, Q). (PyBLP projects onto
    its default bounds, under which a negative diagonal Sigma element sits at its lower bound.)"""
    assert mine.converged
    assert_same_at_theta(mine, ref)
    threshold = 1e-6 * max(1.0, mine.objective)
    assert mine.projected_gradient_norm <= threshold
    assert float(ref.projected_gradient_norm) <= threshold


@pytest.fixture(scope="module")
def small(nevo_products, nevo_agents):
    return (ours(nevo_products, nevo_agents, "1 + prices", "0 + income"),
            theirs(nevo_products, nevo_agents, "1 + prices", "0 + income"))


# ---------------------------------------------------------------- 1. correlated Sigma
def test_correlated_sigma_at_fixed_theta(nevo_products, nevo_agents):
    # Tutorial specification with Sigma[prices, 1], Sigma[sugar, 1] and Sigma[mushy, prices]
    # free: objective, gradient (reordered), beta and every SE at the same theta.
    nonlinear = "1 + prices + sugar + mushy"
    mine = bd.evaluate(ours(nevo_products, nevo_agents, nonlinear, DEMOGRAPHICS),
                       sigma=SIGMA_CORRELATED, pi=PI_TUTORIAL,
                       config=bd.EstimationConfig(hessian=False))
    ref = solve(theirs(nevo_products, nevo_agents, nonlinear, DEMOGRAPHICS), SIGMA_CORRELATED,
                PI_TUTORIAL)
    assert mine.layout.names[:3] == ("sigma[1, 1]", "sigma[prices, 1]", "sigma[sugar, 1]")
    assert_same_at_theta(mine, ref)
    # the elasticities under correlated coefficients, first market (rel 1e-10)
    elasticities = bd.compute_elasticities(mine).matrices[0]
    J = elasticities.shape[0]
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(elasticities, ref.compute_elasticities()[:J, :J], rtol=1e-10)


def test_optimal_instruments_under_correlated_sigma(nevo_products, nevo_agents):
    # PyBLP's compute_optimal_instruments(method='approximate') at the same first step: the
    # P instruments E[d xi / d theta | z] (PyBLP's column order = its theta order, rows in user
    # order) to 1e-8 relative to each column's scale (measured ~1e-13).
    from blpdemand.results.optimal_instruments import optimal_instruments

    nonlinear = "1 + prices + sugar + mushy"
    problem = ours(nevo_products, nevo_agents, nonlinear, DEMOGRAPHICS)
    mine = bd.evaluate(problem, sigma=SIGMA_CORRELATED, pi=PI_TUTORIAL,
                       config=bd.EstimationConfig(hessian=False))
    ref = solve(theirs(nevo_products, nevo_agents, nonlinear, DEMOGRAPHICS), SIGMA_CORRELATED,
                PI_TUTORIAL)
    with np.errstate(all="ignore"):
        theirs_z = ref.compute_optimal_instruments(method="approximate").demand_instruments
    P = mine.layout.P
    built = optimal_instruments(mine.fitted, method="approximate", reestimate=False)
    order = pyblp_order(mine, np.arange(P)).astype(int)
    ours_z = problem.products.unsort(built.instruments[:, :P])[:, order]
    scale = np.abs(theirs_z).max(axis=0)
    assert np.all(np.abs(ours_z - theirs_z).max(axis=0) <= 1e-8 * scale)


def test_correlated_sigma_estimate_is_pyblps_optimum(small):
    problem, reference = small
    mine = bd.estimate(problem, sigma=SIGMA_SMALL, pi=PI_SMALL,
                       config=bd.EstimationConfig(optimizer="bfgs"))
    assert abs(mine.sigma[1, 0]) > 0.5  # the correlation is estimated, not negligible
    assert_pyblp_optimum(mine, solve(reference, mine.sigma, mine.pi))


def test_hessian_at_the_estimate_matches_pyblp(small):
    # Both Hessians are finite differences of the analytic gradient (different steps): elements
    # to rel 1e-3 (atol 1e-6 max|H|), eigenvalues (all positive) to rel 1e-3 with the same atol
    # (Weyl: |d lambda| <= ||dH||_2). PyBLP's smallest eigenvalues carry about 5e-5 of
    # finite-difference noise (measured: 0.045753 vs 0.045721 at two estimates equal to 1e-9,
    # while ours moved by 1e-6 relative), 1.1e-3 relative of 0.046.
    problem, reference = small
    mine = bd.estimate(problem, sigma=SIGMA_SMALL, pi=PI_SMALL,
                       config=bd.EstimationConfig(optimizer="bfgs"))
    ref = solve(reference, mine.sigma, mine.pi, check_optimality="both")
    order = pyblp_order(mine, np.arange(mine.layout.P)).astype(int)
    H = mine.hessian[np.ix_(order, order)]
    np.testing.assert_allclose(H, ref.hessian, rtol=1e-3, atol=1e-6 * np.abs(H).max())
    assert mine.hessian_eigenvalues is not None and mine.hessian_eigenvalues.min() > 0
    np.testing.assert_allclose(mine.hessian_eigenvalues, np.linalg.eigvalsh(ref.hessian),
                               rtol=1e-3, atol=1e-6 * np.abs(H).max())


def test_fewer_node_columns_than_random_coefficients(nevo_products, nevo_agents):
    # Two node columns for K2 = 4: they go, in order, to the X2 columns whose Sigma column has a
    # free element (prices, mushy; Sigma[mushy, prices] correlated), PyBLP's documented rule.
    agents = nevo_agents.drop(columns=["nodes2", "nodes3"])
    sigma = np.diag([0, 2.4526, 0, 0.2441])
    sigma[3, 1] = -0.3
    nonlinear = "1 + prices + sugar + mushy"
    mine = bd.evaluate(ours(nevo_products, agents, nonlinear, DEMOGRAPHICS), sigma=sigma,
                       pi=PI_TUTORIAL, config=bd.EstimationConfig(hessian=False))
    ref = solve(theirs(nevo_products, agents, nonlinear, DEMOGRAPHICS), sigma, PI_TUTORIAL)
    assert_same_at_theta(mine, ref)


@pytest.mark.slow
def test_correlated_sigma_full_estimate_matches_pyblp(small):
    # PyBLP's own BFGS run (same gtol): estimates, objective and SEs to rel 1e-6 (~6 s).
    problem, reference = small
    mine = bd.estimate(problem, sigma=SIGMA_SMALL, pi=PI_SMALL,
                       config=bd.EstimationConfig(optimizer="bfgs", starts=0))  # PyBLP's one
    ref = solve(reference, SIGMA_SMALL, PI_SMALL,
                optimization=pyblp.Optimization("bfgs", {"gtol": 1e-6}))
    np.testing.assert_allclose(pyblp_order(mine, mine.theta), ref.theta.ravel(), rtol=1e-6)
    np.testing.assert_allclose(mine.objective, ref.objective, rtol=1e-9)
    np.testing.assert_allclose(pyblp_order(mine, mine.theta_se), np.r_[
        ref.sigma_se[mine.layout.sigma_free], ref.pi_se[mine.layout.pi_free]], rtol=1e-6)
    np.testing.assert_allclose(mine.beta_se, ref.beta_se.ravel(), rtol=1e-6)


# ---------------------------------------------------------------- 2. Pi only, Sigma only
def test_pi_only_and_sigma_only(nevo_products, nevo_agents):
    # Pi only (Sigma zero: the nodes are unused) with zeros fixing Pi elements, and Sigma only
    # (no demographics): fixed theta, then our estimate at PyBLP's first-order conditions.
    nonlinear = "1 + prices + sugar"
    pi = np.array([[0.5, 0.2], [3.0, 0], [0, 0.05]])
    problem = ours(nevo_products, nevo_agents, nonlinear, "0 + income + age")
    reference = theirs(nevo_products, nevo_agents, nonlinear, "0 + income + age")
    zero = np.zeros((3, 3))
    assert_same_at_theta(bd.evaluate(problem, pi=pi, config=bd.EstimationConfig(hessian=False)),
                         solve(reference, zero, pi))
    mine = bd.estimate(problem, pi=pi, config=bd.EstimationConfig(optimizer="bfgs"))
    assert mine.layout.P == 4 and mine.pi[1, 1] == 0 and mine.pi[2, 0] == 0
    assert_pyblp_optimum(mine, solve(reference, zero, mine.pi))

    sigma = np.diag([0.5, 2.0, 0.1])
    problem = ours(nevo_products, nevo_agents, nonlinear, None)
    reference = theirs(nevo_products, nevo_agents, nonlinear, None)
    assert_same_at_theta(bd.evaluate(problem, sigma=sigma,
                                     config=bd.EstimationConfig(hessian=False)),
                         solve(reference, sigma, None))
    mine = bd.estimate(problem, sigma=sigma, config=bd.EstimationConfig(optimizer="bfgs"))
    assert_pyblp_optimum(mine, solve(reference, mine.sigma, None))


# ---------------------------------------------------------------- 3. two-step GMM
@pytest.mark.parametrize(("kind", "center"), [("robust", True), ("clustered", True),
                                             ("robust", False), ("clustered", False)])
def test_two_step_weighting_estimate_and_errors(nevo_products, nevo_agents, kind, center):
    # Step-2 W: PyBLP's updated_W at OUR step-1 estimate (S centered or not, robust or clustered
    # by city) to rel 1e-8; the step-2 estimate is PyBLP's optimum under that W, same SEs.
    products = nevo_products.assign(clustering_ids=nevo_products["city_ids"])
    problem = ours(products, nevo_agents, "1 + prices", "0 + income")
    reference = theirs(products, nevo_agents, "1 + prices", "0 + income")
    config = bd.EstimationConfig(method="2s", optimizer="bfgs", weighting=kind, covariance=kind,
                                 clusters="clustering_ids", center_moments=center)
    mine = bd.estimate(problem, sigma=SIGMA_SMALL, pi=PI_SMALL, config=config)
    assert len(mine.steps) == 2
    sigma1, pi1 = mine.layout.unpack(mine.steps[0].theta)
    first = solve(reference, sigma1, pi1, W_type=kind, center_moments=center)
    np.testing.assert_allclose(mine.W, first.updated_W, rtol=1e-8, atol=1e-8 * np.abs(mine.W).max())
    assert_pyblp_optimum(mine, solve(reference, mine.sigma, mine.pi, W=first.updated_W,
                                     se_type=kind, center_moments=center))


@pytest.mark.parametrize(("kind", "se"), [("robust", "robust"), ("clustered", "clustered"),
                                         ("clustered", "unadjusted")])
def test_evaluate_two_step_at_fixed_theta(nevo_products, nevo_agents, kind, se):
    # evaluate(config=EstimationConfig(method="2s")) is PyBLP's method='2s' with
    # Optimization('return'): W2 from the residuals at theta, then everything with W2. Same W2
    # (rel 1e-8), objective, gradient, beta and SEs; 'unadjusted' SEs follow the documented
    # relation (module docstring): PyBLP's are (G'W2 G)^-1 / N from our G and W2 (rel 1e-6),
    # and ours differ from them (by 12-43% here, clustered W2).
    products = nevo_products.assign(clustering_ids=nevo_products["city_ids"])
    problem = ours(products, nevo_agents, "1 + prices", "0 + income")
    config = bd.EstimationConfig(method="2s", weighting=kind, covariance=se, hessian=False,
                                 clusters="clustering_ids")
    mine = bd.evaluate(problem, sigma=SIGMA_SMALL, pi=PI_SMALL, config=config)
    ref = solve(theirs(products, nevo_agents, "1 + prices", "0 + income"), SIGMA_SMALL,
                PI_SMALL, method="2s", W_type=kind, se_type=se)
    assert len(mine.steps) == 2 and ref.step == 2
    np.testing.assert_allclose(mine.W, ref.W, rtol=1e-8, atol=1e-8 * np.abs(mine.W).max())
    if se != "unadjusted":
        assert_same_at_theta(mine, ref)
        return
    efficient = np.sqrt(np.diag(np.linalg.inv(mine.G.T @ mine.W @ mine.G)) / problem.N)
    np.testing.assert_allclose(efficient[mine.layout.P:], ref.beta_se.ravel(), rtol=1e-6)
    np.testing.assert_allclose(pyblp_order(mine, efficient[:mine.layout.P]), np.r_[
        ref.sigma_se[mine.layout.sigma_free], ref.pi_se[mine.layout.pi_free]], rtol=1e-6)
    assert np.min(np.abs(mine.beta_se / ref.beta_se.ravel() - 1)) > 0.05


def test_two_step_with_exogenous_x1_moment_order(nevo_products, nevo_agents):
    # No absorbed effects, X1 = 1 + prices + sugar + mushy: our moments are [1, sugar, mushy,
    # 20 excluded], PyBLP's [20 excluded, 1, sugar, mushy]. W2 agrees after the permutation
    # (rel 1e-7: Z'Z is worse conditioned with the intercept), and the estimate is PyBLP's optimum.
    linear = "1 + prices + sugar + mushy"
    problem = ours(nevo_products, nevo_agents, "1 + prices", "0 + income", linear=linear,
                   absorb=None)
    reference = theirs(nevo_products, nevo_agents, "1 + prices", "0 + income", linear=linear,
                       absorb=None)
    mine = bd.estimate(problem, sigma=SIGMA_SMALL, pi=PI_SMALL,
                       config=bd.EstimationConfig(method="2s", optimizer="bfgs"))
    back = np.argsort(np.r_[20:23, 0:20])  # PyBLP's moment m is our moment back[m]
    W = mine.W[np.ix_(back, back)]
    sigma1, pi1 = mine.layout.unpack(mine.steps[0].theta)
    first = solve(reference, sigma1, pi1)
    np.testing.assert_allclose(W, first.updated_W, rtol=1e-7, atol=1e-7 * np.abs(W).max())
    assert_pyblp_optimum(mine, solve(reference, mine.sigma, mine.pi, W=W))


def test_two_step_unadjusted_errors_convention(small):
    # Documented convention difference (module docstring): after a 2-step estimate our
    # 'unadjusted' SEs are the homoskedastic (G'S_u^-1 G)^-1 / N, which is PyBLP's step-1
    # 'unadjusted' formula at our estimate (rel 1e-6); PyBLP's step-2 formula is tested in
    # test_evaluate_two_step_at_fixed_theta.
    problem, reference = small
    config = bd.EstimationConfig(method="2s", optimizer="bfgs", covariance="unadjusted")
    mine = bd.estimate(problem, sigma=SIGMA_SMALL, pi=PI_SMALL, config=config)
    sigma1, pi1 = mine.layout.unpack(mine.steps[0].theta)
    W2 = solve(reference, sigma1, pi1).updated_W
    assert_same_at_theta(mine, solve(reference, mine.sigma, mine.pi, W=W2, se_type="unadjusted"),
                         gradient=False)


# ---------------------------------------------------------------- 4. binding bounds
def test_binding_bound(small):
    # sigma[prices, prices] bounded by (-1, 1) below its free optimum 1.24: L-BFGS-B ends on
    # the bound; PyBLP with the same bounds at our estimate: same objective, gradient (whose
    # bound component stays nonzero, rel 1e-7) and SEs (the bound parameter keeps one, as in
    # PyBLP), projected gradient below 1e-6 Q on both sides.
    problem, reference = small
    config = bd.EstimationConfig(optimizer="l-bfgs-b", bounds={"sigma[prices, prices]": (-1, 1)})
    with pytest.warns(OptimizationWarning, match=r"on a bound: sigma\[prices, prices\] = 1"):
        mine = bd.estimate(problem, sigma=np.array([[0.3, 0], [0.5, 0.9]]), pi=PI_SMALL,
                           config=config)
    assert mine.sigma[1, 1] == 1.0 and mine.gradient_norm > 0.1
    assert mine.status.value == "converged at a bound" and mine.converged
    assert mine.active_bounds == {"sigma[prices, prices]": 1.0}
    lower, upper = np.full((2, 2), -np.inf), np.full((2, 2), np.inf)
    lower[1, 1], upper[1, 1] = -1, 1
    ref = solve(reference, mine.sigma, mine.pi, sigma_bounds=(lower, upper))
    assert_pyblp_optimum(mine, ref)
    assert_same_at_theta(mine, ref)
    assert "projected onto the bounds" in mine.summary().to_text()
    # evaluate at the estimate with the same bounds: the same projected gradient as PyBLP's
    # 'return' with sigma_bounds. Its free components are at the optimizer's floor (about
    # 1e-9, against 0.1 for the bound one that the projection drops), where the inner loop's
    # 1e-14 noise on delta moves them by about 1e-11: rel 1e-3 or abs 5e-11
    at = bd.evaluate(problem, sigma=mine.sigma, pi=mine.pi,
                     config=bd.EstimationConfig(hessian=False, bounds=config.bounds))
    assert at.bounds[2] == (-1.0, 1.0)
    np.testing.assert_allclose(at.projected_gradient_norm, ref.projected_gradient_norm,
                               rtol=1e-3, atol=5e-11)


def test_interior_point_optimizer_ends_on_the_binding_bound(small):
    # trust-constr stops about 1e-5 inside a bound it pushes against; the estimator snaps such
    # a component onto the bound (Q does not rise), so the run is judged converged by the
    # projected gradient and equals L-BFGS-B's estimate on the bound: theta to rel 1e-4 (both
    # runs stop at projected gradients up to 1e-6 max(1, Q) on a flat direction; measured
    # 9e-6), Q to rel 1e-9 (second order in the theta gap).
    problem, _ = small
    bounds = {"sigma[prices, prices]": (-1, 1)}
    start = np.array([[0.3, 0], [0.5, 0.9]])
    with pytest.warns(OptimizationWarning, match="on a bound"):
        interior = bd.estimate(problem, sigma=start, pi=PI_SMALL,
                               config=bd.EstimationConfig(optimizer="trust-constr", bounds=bounds,
                                                          hessian=False))
    with pytest.warns(OptimizationWarning, match="on a bound"):
        reference = bd.estimate(problem, sigma=start, pi=PI_SMALL,
                                config=bd.EstimationConfig(optimizer="l-bfgs-b", bounds=bounds,
                                                           hessian=False))
    assert interior.converged and interior.sigma[1, 1] == 1.0
    np.testing.assert_allclose(interior.theta, reference.theta, rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(interior.objective, reference.objective, rtol=1e-9)


def test_infinite_bounds_with_random_starts(small):
    # Regression: PyBLP-style one-sided bounds (0, inf) with random starts raised numpy's
    # OverflowError (uniform draws on an infinite range). Starts are now drawn where the
    # bounds are finite and the default box elsewhere; every start respects the bounds, and
    # the estimate is PyBLP's optimum under the same bounds.
    problem, reference = small
    config = bd.EstimationConfig(bounds={"sigma[prices, prices]": (0.0, np.inf)}, starts=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bd.errors.OptimizationWarning)  # distinct local minima
        mine = bd.estimate(problem, sigma=SIGMA_SMALL, pi=PI_SMALL, config=config)
    draws = np.array([s.start for s in mine.starts])
    assert draws.shape == (3, 5) and np.all(np.isfinite(draws)) and np.all(draws[:, 2] >= 0)
    lower, upper = np.full((2, 2), -np.inf), np.full((2, 2), np.inf)
    lower[1, 1] = 0
    assert_pyblp_optimum(mine, solve(reference, mine.sigma, mine.pi,
                                     sigma_bounds=(lower, upper)))


# ---------------------------------------------------------------- 5. integration rule agents
def test_product_rule_agents_with_demographics(nevo_products, nevo_agents):
    # A 2-point Gauss-Hermite product rule (16 nodes per market) paired with the first 16
    # demographic rows, as PyBLP pairs agent data with Integration('product', 2); correlated
    # Sigma: objective, gradient, beta and SEs at the same theta.
    nonlinear = "1 + prices + sugar + mushy"
    draws = nevo_agents[["market_ids", "income", "income_squared", "age", "child"]]
    rule = bd.Integration("product", 2, demographics_data=draws, pairing="pair")
    mine = bd.evaluate(ours(nevo_products, rule, nonlinear, DEMOGRAPHICS),
                       sigma=SIGMA_CORRELATED, pi=PI_TUTORIAL,
                       config=bd.EstimationConfig(hessian=False))
    ref = solve(theirs(nevo_products, nevo_agents, nonlinear, DEMOGRAPHICS,
                       integration=pyblp.Integration("product", 2)),
                SIGMA_CORRELATED, PI_TUTORIAL)
    assert_same_at_theta(mine, ref)


# ---------------------------------------------------------------- 6. two-way fixed effects
@pytest.mark.parametrize("absorb", ["C(product_ids) + C(city_ids)", "C(product_ids) + C(quarter)"])
def test_two_way_fixed_effects(nevo_products, nevo_agents, absorb):
    # Two absorbed effects (alternating projections on both sides) with random coefficients:
    # the tutorial specification at a fixed theta, then the small one's estimate.
    nonlinear = "1 + prices + sugar + mushy"
    mine = bd.evaluate(ours(nevo_products, nevo_agents, nonlinear, DEMOGRAPHICS, absorb=absorb),
                       sigma=SIGMA_CORRELATED, pi=PI_TUTORIAL,
                       config=bd.EstimationConfig(hessian=False))
    ref = solve(theirs(nevo_products, nevo_agents, nonlinear, DEMOGRAPHICS, absorb=absorb),
                SIGMA_CORRELATED, PI_TUTORIAL)
    assert_same_at_theta(mine, ref)
    problem = ours(nevo_products, nevo_agents, "1 + prices", "0 + income", absorb=absorb)
    mine = bd.estimate(problem, sigma=SIGMA_SMALL, pi=PI_SMALL,
                       config=bd.EstimationConfig(optimizer="bfgs"))
    reference = theirs(nevo_products, nevo_agents, "1 + prices", "0 + income", absorb=absorb)
    assert_pyblp_optimum(mine, solve(reference, mine.sigma, mine.pi))


def test_shuffled_rows_two_way_effects_and_clusters(nevo_products, nevo_agents):
    # The shared data come sorted by market; here products and agents are shuffled, with
    # two-way effects and clustered SEs by a column: PyBLP on the same shuffled data at the
    # same theta.
    products = nevo_products.sample(frac=1, random_state=1).reset_index(drop=True)
    products["clustering_ids"] = products["city_ids"]
    agents = nevo_agents.sample(frac=1, random_state=2).reset_index(drop=True)
    absorb = "C(product_ids) + C(city_ids)"
    config = bd.EstimationConfig(hessian=False, covariance="clustered", clusters="clustering_ids")
    mine = bd.evaluate(ours(products, agents, "1 + prices", "0 + income", absorb=absorb),
                       sigma=SIGMA_SMALL, pi=PI_SMALL, config=config)
    ref = solve(theirs(products, agents, "1 + prices", "0 + income", absorb=absorb),
                SIGMA_SMALL, PI_SMALL, se_type="clustered")
    assert_same_at_theta(mine, ref)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["2s-robust", "2s-clustered", "bounded"])
def test_full_estimates_match_pyblps_own_runs(nevo_products, nevo_agents, case):
    # PyBLP's own optimizations (6-7 s each) from the same start. Two-step: BFGS with gtol 1e-6
    # on both sides, estimates rel 1e-6 (measured ~1e-10), W2 and SEs rel 1e-6. Bounded:
    # L-BFGS-B, where PyBLP stops with a projected gradient ~6e-5 (its pgtol is absolute), so
    # estimates and SEs to rel 1e-4 (measured 4e-5) and the objective to rel 1e-9.
    products = nevo_products.assign(clustering_ids=nevo_products["city_ids"])
    problem = ours(products, nevo_agents, "1 + prices", "0 + income")
    reference = theirs(products, nevo_agents, "1 + prices", "0 + income")
    sigma = SIGMA_SMALL
    if case == "bounded":
        sigma = np.array([[0.3, 0], [0.5, 0.9]])
        lower, upper = np.full((2, 2), -np.inf), np.full((2, 2), np.inf)
        lower[1, 1], upper[1, 1] = -1, 1
        # one start, as PyBLP's run: the same work compared
        config = bd.EstimationConfig(bounds={"sigma[prices, prices]": (-1, 1)}, starts=0)
        options = {"optimization": pyblp.Optimization("l-bfgs-b", {"gtol": 1e-6}),
                   "sigma_bounds": (lower, upper)}
        rtol = 1e-4
    else:
        kind = case.split("-")[1]
        config = bd.EstimationConfig(method="2s", optimizer="bfgs", weighting=kind,
                                     covariance=kind, clusters="clustering_ids", starts=0)
        options = {"method": "2s", "W_type": kind, "se_type": kind,
                   "optimization": pyblp.Optimization("bfgs", {"gtol": 1e-6})}
        rtol = 1e-6
    with warnings.catch_warnings():
        if case == "bounded":  # on the bound, as PyBLP's run (warned about, tested above)
            warnings.filterwarnings("ignore", "the estimate is on a bound", OptimizationWarning)
        mine = bd.estimate(problem, sigma=sigma, pi=PI_SMALL, config=config)
    ref = solve(reference, sigma, PI_SMALL, **options)
    assert mine.converged
    np.testing.assert_allclose(pyblp_order(mine, mine.theta), ref.theta.ravel(), rtol=rtol)
    np.testing.assert_allclose(mine.beta, ref.beta.ravel(), rtol=rtol)
    np.testing.assert_allclose(mine.objective, ref.objective, rtol=1e-9)
    np.testing.assert_allclose(mine.W, ref.W, rtol=1e-6, atol=1e-6 * np.abs(mine.W).max())
    np.testing.assert_allclose(pyblp_order(mine, mine.theta_se), np.r_[
        ref.sigma_se[mine.layout.sigma_free], ref.pi_se[mine.layout.pi_free]], rtol=rtol)
    np.testing.assert_allclose(mine.beta_se, ref.beta_se.ravel(), rtol=rtol)
