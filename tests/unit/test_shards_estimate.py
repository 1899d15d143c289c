"""Market shards as an estimation option: ``EstimationConfig(shards=k)`` equals one process.

Reference: ``bd.estimate`` on the whole problem with the same config but ``shards=None``, run
in the same test. The shards solve the same per-market contractions from the same starts
(warm starts sliced per shard) and the client forms xi, beta, S and d xi/d theta from the
gathered delta and d delta/d theta with the one-process formulas; the order of sums in
Z'delta and the adjoint gradient differs, and each inner loop predicts its warm starts from its
own history (solve.warm_start), so delta agrees to the contraction's 1e-14, not exactly. With
both optimizers driven to the minimum (gtol 1e-10, below) estimates and SEs agree within 1e-10
relative (measured 8e-13 before the predicted warm starts, about 1e-10 with them), Q and W
within 1.2e-10 (compared to 1e-9). The Hessian is forward
differences of the gradient with h = 1e-6: a gradient difference of ~1e-13 between the two
runs becomes ~1e-7 in H (measured 2e-7 to 5e-7 relative), so H is compared to 1e-5.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from test_shards import _problem

import blpdemand as bd
from blpdemand.errors import SpecificationError
from blpdemand.model.problem import Problem
from blpdemand.solve.progress import RecordingReporter

# gtol 1e-10: the optimizer is driven (l-bfgs-b, then Newton steps) to the minimum itself. At
# the default 1e-6 it stops anywhere in a ball of ~1e-7 around it, and sums in another order
# change its path within that ball (measured: theta 2.6e-8 apart with 2 shards, Q 4e-14)
CONFIG = {"method": "2s", "starts": 1, "gtol": 1e-10}


@pytest.fixture(scope="module")
def problem() -> Problem:
    return _problem()


@pytest.fixture(scope="module")
def whole(problem: Problem) -> bd.BLPResults:
    return bd.estimate(problem, sigma=[0.5], config=bd.EstimationConfig(**CONFIG))


def _same_results(one: bd.BLPResults, sharded: bd.BLPResults) -> None:
    for name in ("theta", "beta", "theta_se", "beta_se", "delta", "xi"):
        a, b = np.atleast_1d(getattr(one, name)), np.atleast_1d(getattr(sharded, name))
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-10 * np.abs(a).max(), err_msg=name)
    # Q is first order in the inner loop's error: each shard's delta is solved to 1e-14 from
    # its own predicted warm start (solve.warm_start), one process from another, and
    # N g'W dg moves Q by about 1e-10 relative here (measured 1.1e-10 with 4 shards)
    assert sharded.objective == pytest.approx(one.objective, rel=1e-9)
    # W = S(xi at step 1's estimate)^{-1}, and G and the covariance at the estimate, inherit the
    # same inner-loop difference through xi: measured 1.2e-10 of W's largest element
    for name in ("W", "covariance", "G"):
        a, b = getattr(one, name), getattr(sharded, name)
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-9 * np.abs(a).max(), err_msg=name)
    assert one.hessian is not None and sharded.hessian is not None
    np.testing.assert_allclose(sharded.hessian, one.hessian, rtol=1e-5)
    # the same starts ended at the same places in both GMM steps: the starts not reported are
    # not Newton-polished, so their ends are located only to the line search's floor,
    # sqrt(20 eps Q lambda) / lambda = 6e-8 here (Q 0.8, lambda 11.7; measured 4e-10 apart)
    assert len(sharded.starts) == len(one.starts) == 4
    for a, b in zip(one.starts, sharded.starts):
        assert (a.step, a.same) == (b.step, b.same)
        np.testing.assert_allclose(b.optimization.theta, a.optimization.theta, rtol=1e-7)
    assert [s.status for s in sharded.steps] == [s.status for s in one.steps]


@pytest.mark.parametrize("count", [2, 4])
def test_two_step_estimate_on_in_process_shards_equals_one_process(
        problem: Problem, whole: bd.BLPResults, count: int) -> None:
    config = bd.EstimationConfig(shards=count, workers=2, **CONFIG)
    _same_results(whole, bd.estimate(problem, sigma=[0.5], config=config))


def test_absorbed_market_effects_estimate_on_shards_as_in_one_process() -> None:
    within = _problem("C(market_ids)")
    one = bd.estimate(within, sigma=[0.5], config=bd.EstimationConfig(**CONFIG))
    sharded = bd.estimate(within, sigma=[0.5], config=bd.EstimationConfig(shards=3, **CONFIG))
    _same_results(one, sharded)


@pytest.fixture(scope="module")
def client() -> Any:
    distributed = pytest.importorskip("distributed")
    # memory_limit=0: no memory monitor, which would resume the worker paused by hand below
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  memory_limit=0, dashboard_address="127.0.0.1:0") as cluster, \
            distributed.Client(cluster) as client:
        yield client


@pytest.mark.parametrize("count", [2, 4])
def test_two_step_estimate_on_a_dask_cluster_of_two_processes_equals_one_process(
        problem: Problem, whole: bd.BLPResults, client: Any, count: int) -> None:
    from blpdemand.solve.shards import release_token

    config = bd.EstimationConfig(shards=count, executor=client, **CONFIG)
    _same_results(whole, bd.estimate(problem, sigma=[0.5], config=config))
    # every objective's state was released on the workers, and the shards' data too (the
    # scheduler forgets cancelled data asynchronously: polled for up to 10 s)
    assert sum(len(state) for state in client.run(_held).values()) == 0
    deadline = time.monotonic() + 10
    while client.who_has() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.run(release_token, "none") and not client.who_has()


def test_progress_records_are_the_one_process_evaluations(problem: Problem) -> None:
    # Reference: the records of the one-process estimate, one per evaluation of Q. The paths
    # are the same until the optimizer reaches Q's noise floor, where roundoff decides how many
    # more line-search trials it makes (seen: 4 more in one start): records are compared for
    # each start up to Q within 1e-9 of its lowest value
    records = []
    for shards in (None, 3):
        reporter = RecordingReporter()
        bd.estimate(problem, sigma=[0.5], reporter=reporter,
                    config=bd.EstimationConfig(shards=shards, **CONFIG))
        records.append(reporter.records)
    one, sharded = records
    starts = sorted({(r.step, r.start) for r in one})
    assert starts == sorted({(r.step, r.start) for r in sharded}) and len(starts) == 4
    for start in starts:
        a, b = ([r for r in rs if (r.step, r.start) == start] for rs in (one, sharded))
        floor = min(r.objective for r in a) * (1 + 1e-9)
        a, b = ([r for r in rs if r.objective > floor] for rs in (a, b))
        assert len(a) == len(b) >= 3
        for x, y in zip(a, b):
            assert (x.evaluation, x.iteration) == (y.evaluation, y.iteration)
            assert y.objective == pytest.approx(x.objective, rel=1e-10)
            np.testing.assert_allclose(y.theta, x.theta, rtol=1e-10)


def _held() -> list[object]:
    from blpdemand.solve.shards import _STATE

    return list(_STATE)


def test_bad_shard_options_are_refused_by_name(problem: Problem) -> None:
    for count in (0, -1, 2.0, True):
        with pytest.raises(SpecificationError, match="shards="):
            bd.EstimationConfig(shards=count)  # type: ignore[arg-type]
    with pytest.raises(SpecificationError, match="shards=41"):
        bd.estimate(problem, sigma=[0.5], config=bd.EstimationConfig(shards=41))
    with ThreadPoolExecutor(1) as pool, pytest.raises(SpecificationError,
                                                     match="shards=2 with executor="):
        bd.estimate(problem, sigma=[0.5], config=bd.EstimationConfig(shards=2, executor=pool))


def test_supply_micro_and_nests_are_refused_by_name() -> None:
    # market shards carry the demand side only (solve.shards.split_markets)
    import test_micro  # puts tests/simulation (micro_data) on the path
    from test_rcnl import _problem as nested_problem
    from test_supply_gradient import supply_problem

    config = bd.EstimationConfig(shards=2)
    with pytest.raises(SpecificationError, match="shards.*supply side"):
        bd.estimate(supply_problem(), sigma=np.diag([0.6, 0.8, 0.0]), pi=[[0.1], [0.0], [0.0]],
                    config=config)
    with pytest.raises(SpecificationError, match="shards.*nested logit"):
        bd.estimate(nested_problem(), sigma=[0.5], rho=0.3, config=config)
    data = test_micro.simulate_micro(markets=6, products=4, agents=40, rng=5)
    moments = [bd.micro.probability(chose=bd.micro.inside(), value=0.5, observations=10)]
    micro_problem = bd.Problem(data.products, agents=data.agents, micro=moments, **test_micro.KW)
    with pytest.raises(SpecificationError, match="shards.*micro moments"):
        bd.estimate(micro_problem, sigma=np.diag([0.0, 1.0]), pi=np.array([[0.5], [0.0]]),
                    config=config)


def test_starts_at_once_on_dask_equal_the_starts_one_after_another(
        problem: Problem, client: Any) -> None:
    # Reference: the same sharded estimate with its starts one after another (workers=1).
    # Each start has its own objective and, on every worker, its own inner loop per shard, so
    # running two at once changes no operation: compared for equality
    runs = []
    for workers in (1, 2):
        reporter = RecordingReporter()
        config = bd.EstimationConfig(shards=2, executor=client, workers=workers, **CONFIG)
        runs.append((bd.estimate(problem, sigma=[0.5], reporter=reporter, config=config),
                     reporter.records))
    (one, _), (two, records) = runs
    for name in ("theta", "beta", "theta_se", "delta", "W"):
        assert np.array_equal(getattr(one, name), getattr(two, name)), name
    assert [s.optimization.theta.tolist() for s in one.starts] == [
        s.optimization.theta.tolist() for s in two.starts]
    # the two starts of step 1 ran at once: their records interleave
    order = [r.start for r in records if r.step == 1]
    assert order.index(1) < len(order) - 1 - order[::-1].index(0)


def _answer_exits() -> None:
    import os

    from blpdemand.solve import shards

    shards._Shard.answer = lambda self, request: os._exit(1)  # type: ignore[method-assign]


def _pause(paused: bool, dask_worker: Any) -> None:
    from distributed.core import Status

    dask_worker.status = Status.paused if paused else Status.running


def test_a_shard_worker_restarted_or_paused_is_a_named_error_not_a_hang(
        problem: Problem, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Dask's memory manager restarts a worker past 95% of its memory_limit (the nanny kills
    # it: here os._exit when it answers a shard) and pauses one past 80% (it then starts no
    # task: here its status set by hand). The shard's data and inner loop are gone with a
    # restarted worker and a paused one never answers: both are WorkerLostError naming the
    # start, the shard and the worker (benchmarks/bench_shards_memory.py: the real limit)
    from blpdemand.errors import WorkerLostError
    from blpdemand.solve import shard_workers
    from blpdemand.solve.shards import ShardedObjective, split_markets

    monkeypatch.setattr(shard_workers, "POLL_S", 0.1)
    monkeypatch.setattr(shard_workers, "PAUSED_S", 1.0)
    config = bd.EstimationConfig(shards=2, executor=client, **CONFIG)
    first = min(client.scheduler_info()["workers"])  # holds shard 0 (round robin)
    client.run(_answer_exits, workers=[first])
    with pytest.raises(WorkerLostError, match=r"start 0 of GMM step 1: market shard 0 of 2 "
                       rf"\(\d+ products\) .*worker {first} was restarted or left"):
        bd.estimate(problem, sigma=[0.5], config=config)
    client.wait_for_workers(2)
    layout, _ = problem.layout(sigma=[0.5])
    with ShardedObjective(split_markets(problem, 2), layout, executor=client) as objective:
        objective(np.array([0.5]))
        first = objective._remote[0][1]  # the worker holding shard 0
        client.run(_pause, True, workers=[first])
        start = time.monotonic()
        try:
            with pytest.raises(WorkerLostError, match=rf"shard 0 of 2 \(\d+ products\) .*"
                               rf"moments: .*{first} has been paused for 1 s"):
                objective(np.array([0.6]))
        finally:
            client.run(_pause, False, workers=[first])
    assert time.monotonic() - start < 20
