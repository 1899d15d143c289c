"""Estimator options on small simulated markets: config validation, bounds, multi-start, 2-step,
reporter records, warnings, and new-object covariance.

References are the definitions themselves (each test says which): e.g. the 2-step W is the
inverse of the robust moment covariance at the step-1 xi, the clustered S with one product per
cluster equals the robust S.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import OptimizationWarning, SpecificationError
from blpdemand.instruments.differentiation import build_differentiation_instruments
from blpdemand.solve.covariance import moment_covariance, weighting_matrix
from blpdemand.solve.jobs import run_jobs
from blpdemand.solve.optimizer import minimize
from blpdemand.solve.progress import RecordingReporter


@pytest.fixture(scope="module")
def problem() -> bd.Problem:
    sim = bd.simulate(markets=40, products=6, sigma={"x1": 1.0}, draws=50, rng=7)
    gh = build_differentiation_instruments(sim.products, "0 + x1 + x2", version="quadratic",
                                           split=False)
    frame = pd.concat([sim.products, gh], axis=1)
    return bd.Problem(frame, linear=sim.linear, nonlinear=sim.nonlinear, agents=sim.agents,
                      instruments=list(sim.instruments) + list(gh.columns))


def _demand_covariance(xi: np.ndarray, Z: np.ndarray, kind: str = "robust") -> np.ndarray:
    """S of the demand moments z_j xi_j, centered (as the estimator forms it)."""
    return moment_covariance(Z * xi[:, None], kind=kind,  # type: ignore[arg-type]
                             residuals=xi, instruments=Z, center=True)


def test_unknown_options_and_bad_bounds_are_named(problem: bd.Problem) -> None:
    with pytest.raises(SpecificationError, match="optimizer"):
        bd.EstimationConfig(optimizer="newton")
    with pytest.raises(SpecificationError, match="method"):
        bd.EstimationConfig(method="3s")
    with pytest.raises(SpecificationError, match="clusters"):
        bd.EstimationConfig(covariance="clustered")
    for seed in (-1, 1.5, "0"):
        with pytest.raises(SpecificationError, match="rng="):
            bd.EstimationConfig(rng=seed)  # type: ignore[arg-type]
    config = bd.EstimationConfig(bounds={"sigma[x1, x1]": (0.0, 0.4)})
    with pytest.raises(SpecificationError, match=r"sigma\[x1, x1\]"):
        bd.estimate(problem, sigma=[0.5], config=config)


def test_reporter_gets_one_record_per_evaluation(problem: bd.Problem) -> None:
    # Reference: the optimizer's own count of objective evaluations.
    reporter = RecordingReporter()
    results = bd.estimate(problem, sigma=[0.5], config=bd.EstimationConfig(hessian=False),
                          reporter=reporter)
    # each start of the multi-start reports its own evaluations (the last one is cached)
    assert len(results.starts) == 5
    for k, start in enumerate(results.starts):
        mine = [r for r in reporter.records if r.start == k]
        assert len(mine) == start.optimization.evaluations - 1
    best = [r for r in reporter.records if r.start == results.starts.index(
        next(s for s in results.starts if s.optimization is results.optimization))]
    assert best[-1].objective == pytest.approx(results.objective, rel=1e-12)
    reporter.records = best
    assert all(r.contraction_iterations > 0 for r in reporter.records)
    iterations = [r.iteration for r in reporter.records]
    assert iterations == sorted(iterations) and iterations[-1] <= results.optimization.iterations
    assert results.converged and results.gradient_norm <= 1e-6 * max(1.0, results.objective)
    eig = results.hessian_eigenvalues
    assert eig is None


def test_two_step_uses_the_inverse_robust_covariance_of_step_one(problem: bd.Problem) -> None:
    one = bd.estimate(problem, sigma=[0.5], config=bd.EstimationConfig(hessian=False))
    two = bd.estimate(problem, sigma=[0.5], config=bd.EstimationConfig(method="2s", hessian=False))
    S = _demand_covariance(one.xi, problem.ZD_tilde, kind="robust")
    np.testing.assert_allclose(two.W, weighting_matrix(S), rtol=1e-8)
    assert len(two.steps) == 2
    # with W = S^-1 the sandwich collapses to (G'WG)^-1/N only when S is evaluated at the same
    # xi; here S comes from the final xi, so just check the SEs are positive and finite
    assert np.all(np.isfinite(two.standard_errors)) and np.all(two.standard_errors > 0)


def test_with_covariance_returns_a_new_object(problem: bd.Problem) -> None:
    # Reference: clustered S with one product per cluster equals the robust S (definition).
    results = bd.evaluate(problem, sigma=[0.8], config=bd.EstimationConfig(hessian=False))
    ids = np.arange(problem.N)
    clustered = results.with_covariance("clustered", clusters=ids)
    assert clustered is not results and results.covariance_kind == "robust"
    np.testing.assert_allclose(clustered.covariance, results.covariance, rtol=1e-10)
    with pytest.raises(SpecificationError, match="unknown"):
        results.with_covariance("hac")
    # a column name and the same ids in the user's row order give the same clustered covariance
    by_name = results.with_covariance("clustered", clusters="market_ids")
    by_ids = results.with_covariance(
        "clustered", clusters=problem.products.unsort(problem.products.array("market_ids")))
    np.testing.assert_allclose(by_name.covariance, by_ids.covariance, rtol=1e-12)
    assert not np.allclose(by_name.covariance, results.covariance, rtol=1e-3)


def test_multi_start_table_and_best_chosen(problem: bd.Problem) -> None:
    config = bd.EstimationConfig(starts=2, rng=1, hessian=False,
                                 bounds={"sigma[x1, x1]": (0.05, 3.0)})
    results = bd.estimate(problem, sigma=[0.5], config=config)
    table = results.starts_table().to_frame()
    assert len(table) == 3
    assert results.objective == pytest.approx(table["objective"].min(), rel=1e-12)
    # every start reaches the same minimum on these well-identified data
    np.testing.assert_allclose(table["sigma[x1, x1]"], results.theta[0], rtol=1e-4)
    assert results.seeds["starts"] == 1


def test_distinct_local_minima_warn() -> None:
    # A double-well Q(t) = (t^2 - 1)^2 + 0.1 (t + 1): minima near -1 and +1 with different values.
    def fun(t: np.ndarray) -> tuple[float, np.ndarray]:
        x = float(t[0])
        return (x * x - 1) ** 2 + 0.1 * (x + 1), np.array([4 * x * (x * x - 1) + 0.1])

    from blpdemand.solve.multistart import StartOutcome, check_agreement
    outcomes = [StartOutcome(start=np.array([s]), optimization=minimize(
        fun, np.array([s]), method="l-bfgs-b", bounds=[(-3.0, 3.0)], gtol=1e-8, max_iterations=100))
        for s in (-1.1, 1.1)]
    assert outcomes[0].optimization.theta[0] < 0 < outcomes[1].optimization.theta[0]
    with pytest.warns(OptimizationWarning, match="distinct local minima"):
        marked = check_agreement(outcomes, 0, 1)
    assert [o.same for o in marked] == [True, False]
    assert run_jobs([lambda: 1, lambda: 2]) == [1, 2]


def test_derivative_free_optimizer_warns_and_start_at_optimum_warns(problem: bd.Problem) -> None:
    with pytest.warns(OptimizationWarning, match="does not use the analytic gradient"):
        results = bd.estimate(problem, sigma=[0.9], config=bd.EstimationConfig(
            optimizer="nelder-mead", hessian=False, max_iterations=60))
    assert np.isfinite(results.objective)
    best = bd.estimate(problem, sigma=[0.9], config=bd.EstimationConfig(hessian=False))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bd.estimate(problem, sigma=[float(best.theta[0])],
                    config=bd.EstimationConfig(hessian=False, gtol=1e-3))
    assert any("starting values" in str(w.message) for w in caught)


def test_summary_and_fitted(problem: bd.Problem) -> None:
    results = bd.estimate(problem, sigma=[0.5])
    table = results.summary().to_frame()
    assert list(table.index) == ["sigma[x1, x1]", "1", "prices", "x1", "x2"]
    assert results.hessian_eigenvalues is not None and results.hessian_eigenvalues.min() > 0
    fitted = results.fitted
    np.testing.assert_allclose(fitted.xi, results.xi, atol=1e-12)
    assert fitted.alpha == pytest.approx(results.beta[1])


def test_precision_floor_counts_a_stalled_run_at_a_minimum_as_converged() -> None:
    # Reference: the floor sqrt(20 eps |Q| lambda_max) computed by hand for Q = 4, lambda_max = 1e4.
    from blpdemand._types import Status
    from blpdemand.solve.optimizer import OptimizationResult
    from blpdemand.solve.verdicts import at_precision_floor as _at_precision_floor
    floor = np.sqrt(20 * np.finfo(float).eps * 4.0 * 1e4)
    step = OptimizationResult(start=np.zeros(2), theta=np.ones(2), objective=4.0,
                              gradient=np.full(2, floor / 2), projected_gradient_norm=floor / 2,
                              status=Status.NOT_CONVERGED, message="precision loss",
                              iterations=5, evaluations=9)
    assert _at_precision_floor(step, np.diag([1.0, 1e4])).converged
    assert not _at_precision_floor(step, np.diag([-1.0, 1e4])).converged  # not a minimum
    far = dataclasses.replace(step, projected_gradient_norm=2 * floor)
    assert not _at_precision_floor(far, np.diag([1.0, 1e4])).converged


def test_starts_table_agrees_with_the_precision_floor_judgment(nevo_products, nevo_agents) -> None:
    # Reference: the run's own verdict. With gtol = 1e-12 the optimizer stops on precision loss
    # at the Nevo minimum; the estimator counts the run as converged at the line-search
    # precision floor (or its restart gets below gtol), and the starts table's row for that
    # start must say the same.
    import warnings

    import blpdemand as bd

    problem = bd.Problem(nevo_products, linear="prices", nonlinear="1 + prices + sugar + mushy",
                         agents=nevo_agents, absorb="C(product_ids)",
                         demographics="0 + income + income_squared + age + child",
                         instruments=[f"demand_instruments{k}" for k in range(20)])
    sigma = np.diag([0.5580, 3.3124, -0.0058, 0.0934])
    pi = np.array([[2.2918, 0, 1.2840, 0], [588.3252, -30.1920, 0, 11.0546],
                   [-0.3846, 0, 0.0523, 0], [0.7480, 0, -1.3538, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # PyBLP's published estimate (sigma[sugar] < 0) as the one start: that diagonal freed
        results = bd.estimate(problem, sigma=sigma, pi=pi, config=bd.EstimationConfig(
            gtol=1e-12, starts=0, bounds={"sigma[sugar, sugar]": (-np.inf, np.inf)}))
    # the run ends at the floor, or (after the optimizer's restart and Newton steps on the
    # Hessian) below gtol itself
    message = results.optimization.message
    assert "precision floor" in message or "Newton step" in message
    assert results.converged
    assert results.starts_table().to_frame()["converged"].tolist() == [True]


def test_two_step_judges_a_stalled_first_step_at_the_precision_floor(nevo_products,
                                                                     nevo_agents) -> None:
    # Reference: the run's own verdict, as above, for GMM step 1 of a two-step run. With
    # gtol = 1e-12 step 1 stops on precision loss (also after its restart); it must be judged
    # against the line-search floor like the last step (it used to warn "GMM step 1: the
    # optimizer stopped" at gradients the floor could not resolve).
    import warnings

    import blpdemand as bd
    from blpdemand.errors import OptimizationWarning

    problem = bd.Problem(nevo_products, linear="prices", nonlinear="1 + prices",
                         agents=nevo_agents, absorb="C(product_ids)",
                         demographics="0 + income",
                         instruments=[f"demand_instruments{k}" for k in range(20)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = bd.estimate(problem, sigma=np.diag([0.5, 2.0]), pi=np.array([[1.0], [1.0]]),
                              config=bd.EstimationConfig(gtol=1e-12, method="2s", hessian=False))
    first = results.steps[0]
    # the verdict, whichever way step 1 ended on this machine's arithmetic: converged, either by
    # reaching gtol max(1, Q) or by a stop judged at the line-search precision floor
    assert first.converged
    reached = first.projected_gradient_norm <= 1e-12 * max(1.0, abs(first.objective))
    assert reached or "precision floor" in first.message
    assert not [w for w in caught if issubclass(w.category, OptimizationWarning)
                and "GMM step 1" in str(w.message)]


def test_unbounded_optimizer_records_no_bounds(nevo_products, nevo_agents) -> None:
    # Reference: bfgs ignores bounds (scipy), so nothing binds its estimate. Nevo's
    # pi[prices, income] = 588.3 (PyBLP's published estimate) lies far outside the default box
    # (+-82.5) that draws random starts; the results used to record that box, so the projected
    # gradient zeroed components "beyond a bound" and the bootstrap warned of an estimate on a
    # bound. Recorded bounds must be infinite, the projected gradient the gradient.
    import warnings

    import blpdemand as bd

    problem = bd.Problem(nevo_products, linear="prices", nonlinear="1 + prices + sugar + mushy",
                         agents=nevo_agents, absorb="C(product_ids)",
                         demographics="income + income_squared + age + child",
                         instruments=[f"demand_instruments{k}" for k in range(20)])
    sigma = np.diag([0.3302, 2.4526, 0.0163, 0.2441])
    pi = np.array([[5.4819, 0, 0.2037, 0], [15.8935, -1.2, 0, 2.6342],
                   [-0.2506, 0, 0.0511, 0], [1.2650, 0, -0.8091, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = bd.estimate(problem, sigma=sigma, pi=pi,
                              config=bd.EstimationConfig(optimizer="bfgs", gtol=1e-5))
    assert abs(results.pi[1, 0] - 588.3) < 1.0
    assert all(lo == -np.inf and hi == np.inf for lo, hi in results.bounds)
    assert results.projected_gradient_norm == results.gradient_norm
