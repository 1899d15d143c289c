"""Jobs as data: the starts of each GMM step as picklable jobs on any executor.

Reference: the sequential run (``executor=None``, ``workers=1``). A start is the same
floating-point work wherever it runs (one BLAS thread, tests/conftest.py, inherited by the
worker processes), so estimates and every start's record are compared for equality.
"""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import numpy as np
import pytest
from simulated import rival_sums_problem

import blpdemand as bd
from blpdemand.errors import SpecificationError
from blpdemand.solve.multistart import StartJob, run_start


@pytest.fixture(scope="module")
def problem() -> bd.Problem:
    return rival_sums_problem(markets=30, products=6, draws=50, rng=7)


class Recording:
    """An executor that runs each job inline after a pickle round trip (as a process would)."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def submit(self, function: Any, item: Any) -> Future[Any]:
        self.items.append(item)
        function, item = pickle.loads(pickle.dumps((function, item)))
        future: Future[Any] = Future()
        future.set_result(function(item))
        return future


def _same(a: bd.BLPResults, b: bd.BLPResults) -> None:
    assert np.array_equal(a.theta, b.theta) and np.array_equal(a.beta, b.beta)
    assert a.objective == b.objective and len(a.starts) == len(b.starts)
    for x, y in zip(a.starts, b.starts):
        assert np.array_equal(x.start, y.start) and x.step == y.step
        assert x.optimization.objective == y.optimization.objective or (
            np.isnan(x.optimization.objective) and np.isnan(y.optimization.objective))
        assert np.array_equal(x.optimization.theta, y.optimization.theta)
        assert x.optimization.status is y.optimization.status


def test_each_start_is_a_picklable_job_and_the_result_is_the_sequential_one(
        problem: bd.Problem) -> None:
    sequential = bd.estimate(problem, sigma=[0.5], config=bd.EstimationConfig(method="2s"))
    executor = Recording()
    elsewhere = bd.estimate(problem, sigma=[0.5], config=bd.EstimationConfig(
        method="2s", executor=executor))
    assert len(executor.items) == 10 and all(isinstance(j, StartJob) for j in executor.items)
    assert [j.step for j in executor.items] == [1] * 5 + [2] * 5
    assert all(j.reporter is None for j in executor.items)  # progress stays in this process
    _same(elsewhere, sequential)
    again = run_start(executor.items[0])
    assert again.result.objective == sequential.starts[0].optimization.objective


def test_starts_on_two_processes_equal_the_sequential_run(problem: bd.Problem) -> None:
    sequential = bd.estimate(problem, sigma=[0.5], config=bd.EstimationConfig(starts=3))
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        parallel = bd.estimate(problem, sigma=[0.5], config=bd.EstimationConfig(
            starts=3, executor=pool))
    _same(parallel, sequential)


def test_an_executor_that_cannot_run_jobs_is_refused() -> None:
    with pytest.raises(SpecificationError, match="executor=.*submit"):
        bd.EstimationConfig(executor="tcp://127.0.0.1:8786")


def test_results_estimated_on_an_executor_save_and_rebuild(tmp_path: Any) -> None:
    # Reference: the live results. Where the work ran is not part of what was computed: the
    # saved file rebuilds the same estimates (an executor's text in the saved config was read
    # back as an executor and refused).
    sim = bd.simulate(markets=20, products=5, sigma={"x1": 1.0}, draws=30, rng=2)
    frame = sim.products.copy()
    frame["rival_x1"] = frame.groupby("market_ids")["x1"].transform("sum") - frame["x1"]
    problem = bd.Problem(frame, linear=sim.linear, nonlinear=sim.nonlinear, agents=sim.agents,
                         instruments=[*sim.instruments, "rival_x1"])
    live = bd.estimate(problem, sigma=[0.5], config=bd.EstimationConfig(
        starts=1, executor=Recording()))
    path = bd.save_results(live, tmp_path / "results.json")
    again = bd.load_results(path, products=frame, agents=sim.agents)
    np.testing.assert_allclose(again.estimates, live.estimates, rtol=1e-10)
    assert again.config.executor is None


def test_a_start_or_a_bootstrap_draw_that_raises_is_named(
        problem: bd.Problem, monkeypatch: pytest.MonkeyPatch) -> None:
    # a job's error is never dropped: reported with the start or draw that raised it, in
    # sequence, on threads and on executors alike (solve.jobs.named_error). Ours keep their
    # type; anything else is a JobError caused by the original
    from blpdemand.errors import ConvergenceError, JobError
    from blpdemand.results import bootstrap as bootstrap_module
    from blpdemand.solve import multistart

    minimize = multistart.minimize

    def failing(objective: Any, *args: Any, **kwargs: Any) -> Any:
        if objective.start == 2:
            raise ValueError("boom")
        if objective.start == 1 and objective.step == 2:
            raise ConvergenceError("stalled")
        return minimize(objective, *args, **kwargs)

    monkeypatch.setattr(multistart, "minimize", failing)
    for workers in (1, 2):
        config = bd.EstimationConfig(starts=2, rng=1, method="1s", workers=workers)
        with pytest.raises(JobError, match="^start 2 of GMM step 1 raised ValueError: boom$") \
                as raised:
            bd.estimate(problem, sigma=[0.5], config=config)
        assert isinstance(raised.value.__cause__, ValueError)
    with pytest.raises(ConvergenceError, match="^start 1 of GMM step 2: stalled$"):
        bd.estimate(problem, sigma=[0.5],
                    config=bd.EstimationConfig(starts=1, rng=1, method="2s"))
    monkeypatch.undo()

    results = bd.estimate(problem, sigma=[0.5], config=bd.EstimationConfig(method="1s"))
    inner_loop = bootstrap_module.InnerLoop

    class Failing(inner_loop):  # type: ignore[misc, valid-type]
        def solve(self, theta: Any, **kwargs: Any) -> Any:
            if theta[0] == 0.123:
                raise FloatingPointError("overflow")
            return super().solve(theta, **kwargs)

    monkeypatch.setattr(bootstrap_module, "InnerLoop", Failing)
    with pytest.raises(JobError, match=r"^bootstrap draws 0\.\.2: bootstrap draw 1 raised "
                       "FloatingPointError: overflow$"):
        bd.BootstrapDraws.from_parameters(results, [[0.5], [0.123], [0.6]],
                                          np.tile(results.beta, (3, 1)))
