"""Multi-start on threads (``EstimationConfig(workers=...)``) against the sequential run.

Reference for every estimation test: the same estimation with ``workers=1`` (the jobs run one
after another in the calling thread). Each start builds its own objective and inner loop, the
shared cached market blocks are only read, and BLAS runs one thread (tests/conftest.py), so a
start performs the same floating-point operations in the same order on either path: results are
compared for exact equality (tolerance 0), not within a tolerance. No timing is asserted.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.optimize

import blpdemand as bd
from blpdemand.errors import SpecificationError
from blpdemand.solve.jobs import run_jobs
from blpdemand.solve.optimizer import minimize
from blpdemand.solve.progress import RecordingReporter

WAIT = 60.0  # seconds a thread waits for the other before the test fails (a deadlock guard)


@pytest.fixture(scope="module")
def simulated() -> bd.Problem:
    """40 markets x 6 products, sigma_x1 = 1; over-identified by sums of rivals' x1 and x2
    (BLP 1995 instruments, computed here with pandas)."""
    sim = bd.simulate(markets=40, products=6, sigma={"x1": 1.0}, draws=50, rng=7)
    frame = sim.products.copy()
    for column in ("x1", "x2"):
        total = frame.groupby("market_ids")[column].transform("sum")
        frame[f"rival_{column}"] = total - frame[column]
    return bd.Problem(frame, linear=sim.linear, nonlinear=sim.nonlinear, agents=sim.agents,
                      instruments=[*sim.instruments, "rival_x1", "rival_x2"])


@pytest.fixture(scope="module")
def nevo(nevo_products: pd.DataFrame, nevo_agents: pd.DataFrame) -> bd.Problem:
    """Nevo (2000) cereal, PyBLP tutorial specification (13 parameters)."""
    return bd.Problem(nevo_products, linear="0 + prices", nonlinear="1 + prices + sugar + mushy",
                      demographics="0 + income + income_squared + age + child",
                      agents=nevo_agents, absorb="C(product_ids)",
                      instruments=[f"demand_instruments{k}" for k in range(20)])


NEVO_SIGMA = np.diag([0.3302, 2.4526, 0.0163, 0.2441])
NEVO_PI = np.array([[5.4819, 0, 0.2037, 0], [15.8935, -1.2, 0, 2.6342],
                    [-0.2506, 0, 0.0511, 0], [1.2650, 0, -0.8091, 0]])


def _estimate(problem: bd.Problem, workers: int, reporter: RecordingReporter | None = None,
              **kwargs: Any) -> tuple[bd.BLPResults, list[str]]:
    config = bd.EstimationConfig(starts=3, rng=11, workers=workers, **kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sigma, pi = (NEVO_SIGMA, NEVO_PI) if problem.D else ([0.5], None)
        results = bd.estimate(problem, sigma=sigma, pi=pi, config=config, reporter=reporter)
    return results, sorted(f"{w.category.__name__}: {w.message}" for w in caught)


def _assert_identical(parallel: bd.BLPResults, sequential: bd.BLPResults) -> None:
    # Reference: the sequential run; tolerance 0 (see the module docstring).
    steps = len(sequential.steps)  # 4 starts in each GMM step
    assert len(parallel.starts) == len(sequential.starts) == 4 * steps
    for p, s in zip(parallel.starts, sequential.starts):
        assert np.array_equal(p.start, s.start)
        assert p.optimization.objective == s.optimization.objective
        assert np.array_equal(p.optimization.theta, s.optimization.theta)
        assert np.array_equal(p.optimization.gradient, s.optimization.gradient)
        assert p.optimization.evaluations == s.optimization.evaluations
        assert p.optimization.status is s.optimization.status
    for name in ("theta", "beta", "delta", "xi", "gradient", "covariance", "W"):
        assert np.array_equal(getattr(parallel, name), getattr(sequential, name)), name
    assert parallel.objective == sequential.objective
    assert [step.objective for step in parallel.steps] == [step.objective for step in sequential.steps]
    assert parallel.contraction_evaluations == sequential.contraction_evaluations


def test_simulated_two_step_starts_on_threads_match_sequential(simulated: bd.Problem) -> None:
    sequential, seq_warnings = _estimate(simulated, 1, method="2s")
    parallel, par_warnings = _estimate(simulated, 2, method="2s")
    _assert_identical(parallel, sequential)
    assert par_warnings == seq_warnings  # the same warnings, whichever thread raised them


def test_nevo_starts_on_threads_match_sequential(nevo: bd.Problem) -> None:
    # BFGS as in the PyBLP tutorial (tests/reference/test_estimate_nevo.py): about 100
    # evaluations per start; one random start ends at a distinct local minimum (warned).
    sequential, seq_warnings = _estimate(nevo, 1, optimizer="bfgs")
    parallel, par_warnings = _estimate(nevo, 2, optimizer="bfgs")
    _assert_identical(parallel, sequential)
    assert par_warnings == seq_warnings


def test_reporter_gets_each_starts_records_in_order(simulated: bd.Problem) -> None:
    # Reference: the sequential run's records. On threads the starts' records interleave, but
    # each start's own records arrive in its order with the same values (time aside).
    def by_start(reporter: RecordingReporter) -> dict[int, list[tuple[object, ...]]]:
        out: dict[int, list[tuple[object, ...]]] = {}
        for r in reporter.records:
            out.setdefault(r.start, []).append(
                (r.step, r.evaluation, r.iteration, r.contraction_iterations,
                 r.contraction_evaluations, r.objective, r.gradient_norm, r.theta.tobytes()))
        return out

    sequential, parallel = RecordingReporter(), RecordingReporter()
    _estimate(simulated, 1, reporter=sequential)
    _estimate(simulated, 3, reporter=parallel)
    assert len(parallel.records) == len(sequential.records) > 0
    assert by_start(parallel) == by_start(sequential)
    assert sorted(by_start(parallel)) == [0, 1, 2, 3]


def test_workers_must_be_a_positive_integer() -> None:
    bad: Any
    for bad in (0, -2, 1.5, True, "2", None):
        with pytest.raises(SpecificationError, match="workers"):
            bd.EstimationConfig(workers=bad)
    with pytest.raises(SpecificationError, match="workers"):
        run_jobs([lambda: 1], workers=0)
    assert bd.EstimationConfig(workers=4).workers == 4
    assert bd.EstimationConfig(workers=np.int64(2)).workers == 2


def test_a_runner_overrides_workers(simulated: bd.Problem) -> None:
    # Reference: the runner is called once with the 1 + starts jobs and its results are used.
    calls: list[int] = []

    def runner(jobs: Sequence[Callable[[], Any]]) -> list[Any]:
        calls.append(len(jobs))
        return [job() for job in jobs]

    results, _ = _estimate(simulated, 2, runner=runner)
    sequential, _ = _estimate(simulated, 1)
    assert calls == [4]
    _assert_identical(results, sequential)


def test_run_jobs_keeps_job_order_and_caller_numpy_error_state() -> None:
    # Job 0 finishes only after job 1 has finished (an event), so results arrive out of order;
    # reference for the order: the job list. Reference for the error state: the caller's own
    # np.geterr() (threads would otherwise start from numpy's defaults).
    second_done = threading.Event()

    def first() -> tuple[int, Any]:
        assert second_done.wait(WAIT), "the two jobs did not run at the same time"
        return 0, np.geterr()

    def second() -> tuple[int, Any]:
        second_done.set()
        return 1, np.geterr()

    with np.errstate(all="raise", under="ignore"):
        expected = np.geterr()
        out = run_jobs([first, second], workers=2)
    assert [k for k, _ in out] == [0, 1]
    assert all(state == expected for _, state in out)


def test_run_jobs_raises_the_first_failing_job_in_order() -> None:
    # Reference: the sequential run raises the exception of the first failing job in order.
    def fail(k: int) -> Callable[[], int]:
        def job() -> int:
            raise ValueError(f"job {k}")
        return job

    jobs = [lambda: 0, fail(1), fail(2), lambda: 3]
    with pytest.raises(ValueError, match="job 1"):
        run_jobs(jobs, workers=1)
    with pytest.raises(ValueError, match="job 1"):
        run_jobs(jobs, workers=3)


def test_overlapping_optimizers_keep_the_warning_filters() -> None:
    # Two optimizers run at once and the first one leaves while the second still runs. With a
    # per-call catch_warnings, the first one's exit would restore the filters the second one
    # replaced: OptimizeWarning would stop being ignored inside the second, and a stale filter
    # list would outlive both. Reference: the filter list before the run, and "error" for
    # OptimizeWarning (pyproject) outside the optimizers.
    both_in = threading.Barrier(2, timeout=WAIT)
    first_left = threading.Event()
    seen: list[int] = []

    def quadratic(x: np.ndarray) -> tuple[float, np.ndarray]:
        return float(np.sum((x - 1.0) ** 2)), 2.0 * (x - 1.0)

    def first() -> float:
        calls = [0]

        def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
            calls[0] += 1
            if calls[0] == 1:
                both_in.wait()
            return quadratic(x)

        result = minimize(fun, np.zeros(2), method="l-bfgs-b", bounds=None, gtol=1e-10,
                          max_iterations=50)
        first_left.set()
        return result.objective

    def second() -> float:
        calls = [0]

        def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
            calls[0] += 1
            if calls[0] == 1:
                both_in.wait()
                assert first_left.wait(WAIT)
                # still inside this optimizer: scipy's OptimizeWarning must stay ignored
                warnings.warn("inside the optimizer", scipy.optimize.OptimizeWarning)
                seen.append(1)
            return quadratic(x)

        return minimize(fun, np.zeros(2), method="l-bfgs-b", bounds=None, gtol=1e-10,
                        max_iterations=50).objective

    before = list(warnings.filters)
    objectives = run_jobs([first, second], workers=2)
    assert warnings.filters == before
    assert seen == [1]
    assert max(objectives) < 1e-12  # minimum 0 at x = (1, 1)
    with pytest.raises(scipy.optimize.OptimizeWarning):  # "error" again outside
        warnings.warn("outside", scipy.optimize.OptimizeWarning)
