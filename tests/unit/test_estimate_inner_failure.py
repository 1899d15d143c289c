"""The estimator when the inner loop fails: a named error or an honest 'not converged'.

Regression for a step-2 run driven by NaN: when step 1 ended where xi is not finite, the
step-2 weighting matrix was built from NaN residuals and the run stopped with a bare
"moment covariance has NaN/inf entries". Failure points here are known in closed form: with
x1 and the nodes of order 1, sigma = 500 on x1 spreads agents' utilities over e^{+-500}, beyond
what the contraction can resolve to 1e-14 (it fails in most markets, delta stays finite);
sigma = 5000 overflows exp(mu) (e^709 is float64's limit), so d delta / d theta is not finite;
a contraction allowed 2 evaluations cannot reach 1e-14 from the logit delta at sigma != 0.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import blpdemand as bd
from blpdemand.errors import ConvergenceError, ConvergenceWarning
from blpdemand.solve.gmm import DemandObjective


@pytest.fixture(scope="module")
def problem() -> bd.Problem:
    sim = bd.simulate(markets=40, products=5, sigma={"x1": 1.0}, draws=50, rng=0)
    return bd.Problem(sim.products, linear=sim.linear, nonlinear=sim.nonlinear,
                      agents=sim.agents, instruments=list(sim.instruments))


def test_two_step_from_a_failing_start_stops_with_a_named_error(problem):
    # Reference: closed form (no converged contraction near sigma = 500, see module doc): step 2
    # must not build W from unconverged or NaN residuals; a ConvergenceError names step 1.
    config = bd.EstimationConfig(method="2s", contraction={"max_evaluations": 200}, starts=0)
    with pytest.raises(ConvergenceError, match="GMM step 1"):
        bd.estimate(problem, sigma=[500.0], config=config)


def test_random_starts_rescue_a_failing_user_start(problem):
    # Reference: the user's start alone fails (above); a start where the contraction converges
    # wins over it, so the default multi-start ends at a point where every market converged
    # (never at the failing start, whose penalty cannot be a minimum).
    config = bd.EstimationConfig(method="2s", contraction={"max_evaluations": 200})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = bd.estimate(problem, sigma=[500.0], config=config)
    assert results.failed_markets.size == 0 and np.isfinite(results.objective)
    assert results.theta[0] < 100
    user = results.starts[0].optimization
    assert user.status.value == "contraction failed at the estimate" and np.isnan(user.objective)


def test_a_failed_contraction_at_the_estimate_is_not_converged(problem):
    # Reference: closed form (2 evaluations cannot reach 1e-14): the objective from unconverged
    # deltas is meaningless, so the estimate is reported not converged (it was 'converged').
    config = bd.EstimationConfig(contraction={"max_evaluations": 2})
    with pytest.warns(ConvergenceWarning, match="contraction failed at the estimate"):
        results = bd.estimate(problem, sigma=[0.5], config=config)
    assert not results.converged
    assert "contraction failed at the estimate" in results.optimization.message


def test_the_penalty_for_a_failed_inner_loop_is_never_the_best_point(problem):
    # Reference: closed form (overflow at sigma = 5000): the penalty evaluation is finite (so line
    # searches back off) but must not become the warm start of later retries (NaN delta).
    layout, _ = problem.layout([1.0])
    Z = problem.ZD_tilde
    objective = DemandObjective(problem, layout, np.linalg.inv(Z.T @ Z / problem.N))
    bad = objective.evaluate(np.array([5000.0]), report=False)
    assert not np.all(np.isfinite(bad.xi)) and objective.best is None
    good = objective.evaluate(np.array([1.0]), report=False)
    assert np.all(np.isfinite(good.xi)) and objective.best is good


def test_a_retry_restarts_only_the_failed_markets(problem):
    # Reference: closed form. After a failed solve, the retry starts the failed markets from the
    # retry's delta and every other market from the solution it found (one share evaluation to
    # confirm instead of a new solve); NaN in a converged market's rows, or every market
    # failed, keeps the retry's delta everywhere.
    from types import SimpleNamespace

    layout, _ = problem.layout([1.0])
    Z = problem.ZD_tilde
    objective = DemandObjective(problem, layout, np.linalg.inv(Z.T @ Z / problem.N))
    markets = problem.products.markets
    solved, retry = np.linspace(-3.0, -1.0, problem.N), np.full(problem.N, 7.0)
    failed_ids = markets.ids[[2, 5]]
    rows = np.zeros(problem.N, dtype=bool)
    for t in (2, 5):
        rows[markets.slice(t)] = True
    start = objective._restart_failed(SimpleNamespace(delta=solved, failed_markets=failed_ids),
                                      retry)
    np.testing.assert_array_equal(start[rows], 7.0)
    np.testing.assert_array_equal(start[~rows], solved[~rows])
    broken = solved.copy()
    broken[~rows] = np.nan
    every = SimpleNamespace(delta=solved, failed_markets=markets.ids)
    for result in (SimpleNamespace(delta=broken, failed_markets=failed_ids), every):
        np.testing.assert_array_equal(objective._restart_failed(result, retry), retry)


def test_on_failure_report_records_the_failure_without_a_warning(problem):
    # Reference: the case above (closed form: 2 evaluations cannot reach 1e-14). With the
    # shared failure vocabulary's "report" the estimate carries the failure in its status and
    # failed markets, and nothing is warned (warnings are errors in this test session).
    config = bd.EstimationConfig(contraction={"max_evaluations": 2}, on_failure="report")
    results = bd.estimate(problem, sigma=[0.5], config=config)
    assert not results.converged and results.status is bd.Status.CONTRACTION_FAILED
    assert results.failed_markets.size > 0
