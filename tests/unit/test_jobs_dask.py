"""Starts and bootstrap draws as jobs on a Dask LocalCluster of 2 worker processes.

Reference: the sequential run in this process. A job does the same floating-point work on a
worker (one BLAS thread there too: the environment is inherited), so estimates, every start's
record and the bootstrap draws are compared for equality, not within a tolerance.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd

distributed = pytest.importorskip("distributed")  # the [dask] extra; CI installs it

NEVO_SIGMA = np.diag([0.3302, 2.4526, 0.0163, 0.2441])
NEVO_PI = np.array([[5.4819, 0, 0.2037, 0], [15.8935, -1.2, 0, 2.6342],
                    [-0.2506, 0, 0.0511, 0], [1.2650, 0, -0.8091, 0]])


@pytest.fixture(scope="module")
def client() -> Any:
    # a free port: with dashboard_address=None the scheduler's HTTP server still takes 8787,
    # which another cluster on the machine may hold
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address="127.0.0.1:0")
    with cluster, distributed.Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def nevo(nevo_products: pd.DataFrame, nevo_agents: pd.DataFrame) -> bd.Problem:
    return bd.Problem(nevo_products, linear="0 + prices", nonlinear="1 + prices + sugar + mushy",
                      demographics="0 + income + income_squared + age + child",
                      agents=nevo_agents, absorb="C(product_ids)",
                      instruments=[f"demand_instruments{k}" for k in range(20)])


def _table(results: bd.BLPResults) -> pd.DataFrame:
    return results.starts_table(values=True).to_frame()


def test_nevo_ten_starts_per_step_equal_on_processes_and_dask(nevo: bd.Problem,
                                                              client: Any) -> None:
    # the tutorial's 13 parameters, bfgs (no bounds: PyBLP's tutorial run), 10 starts per step
    config = {"optimizer": "bfgs", "starts": 9, "rng": 3, "method": "1s"}
    sequential = bd.estimate(nevo, sigma=NEVO_SIGMA, pi=NEVO_PI,
                             config=bd.EstimationConfig(**config))
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        processes = bd.estimate(nevo, sigma=NEVO_SIGMA, pi=NEVO_PI,
                                config=bd.EstimationConfig(**config, executor=pool))
    cluster = bd.estimate(nevo, sigma=NEVO_SIGMA, pi=NEVO_PI,
                          config=bd.EstimationConfig(**config, executor=client))
    assert len(sequential.starts) == 10
    for other in (processes, cluster):
        pd.testing.assert_frame_equal(_table(other), _table(sequential), check_exact=True)
        assert np.array_equal(other.theta, sequential.theta)
        assert np.array_equal(other.beta, sequential.beta)
        assert other.objective == sequential.objective
        assert np.array_equal(other.covariance, sequential.covariance, equal_nan=True)


def test_a_bootstrap_of_200_draws_through_dask_equals_the_sequential_one(nevo: bd.Problem,
                                                                         client: Any) -> None:
    results = bd.evaluate(nevo, sigma=np.diag([0.5580, 3.3124, 0.0, 0.0934]), pi=np.array(
        [[2.2918, 0, 1.2840, 0], [588.3252, -30.1920, 0, 11.0546],
         [-0.3846, 0, 0.0523, 0], [0.7480, 0, -1.3538, 0]]),
        config=bd.EstimationConfig(hessian=False))
    sequential = bd.bootstrap(results, draws=200, rng=0)
    cluster = bd.bootstrap(results, draws=200, rng=0, executor=client)
    assert sequential.draws == cluster.draws == 200
    assert np.array_equal(sequential.theta, cluster.theta)
    for a, b in zip(sequential.fitted, cluster.fitted):
        assert np.array_equal(a.delta, b.delta)


def _exit_at(module: str, name: str) -> None:
    """On this worker, make ``module.name`` end the process: the first attempt of a job that
    calls it dies with its worker; the nanny starts a fresh process (without this patch)."""
    import importlib
    import os

    setattr(importlib.import_module(module), name, lambda *args, **kwargs: os._exit(1))


def test_jobs_of_workers_that_die_rerun_and_give_the_sequential_results(client: Any) -> None:
    # Reference: the sequential run. Both workers are made to die in the first job they run
    # (a start's optimizer, a bootstrap block's inner loop); Dask runs those jobs again on the
    # restarted workers (its retries: a job may take down distributed.scheduler.allowed-failures
    # workers, 3 by default), and each job computes the same numbers there: compared for
    # equality. The workers' addresses change with the restarts, which shows they died.
    from test_jobs_executors import _same
    from test_shards import _problem

    small = _problem()
    config = {"starts": 3, "rng": 1, "method": "1s"}
    sequential = bd.estimate(small, sigma=[0.5], config=bd.EstimationConfig(**config))
    for module, name in (("blpdemand.solve.multistart", "minimize"),
                         ("blpdemand.results.bootstrap", "InnerLoop")):
        client.wait_for_workers(2)
        before = set(client.scheduler_info()["workers"])
        client.run(_exit_at, module, name)
        if name == "minimize":
            _same(bd.estimate(small, sigma=[0.5],
                              config=bd.EstimationConfig(**config, executor=client)), sequential)
        else:
            draws = bd.bootstrap(sequential, draws=12, rng=0, executor=client)
            expected = bd.bootstrap(sequential, draws=12, rng=0)
            assert np.array_equal(draws.theta, expected.theta)
            for a, b in zip(draws.fitted, expected.fitted):
                assert np.array_equal(a.delta, b.delta)
        assert not before & set(client.scheduler_info()["workers"])


def test_merger_blocks_as_jobs_equal_the_sequential_merger(client: Any) -> None:
    # Reference: compute_prices in this process. Markets of three sizes (three blocks of the
    # demand engine), each block's fixed point a job on 2 processes and on the LocalCluster:
    # the same prices, shares, surplus and statuses, compared for equality.
    sim = bd.simulate(markets=9, products=5, firms=3, sigma={"x1": 1.0}, draws=30, rng=6)
    products = sim.products[sim.products["product_ids"] < 5 - sim.products["market_ids"] % 3]
    problem = bd.Problem(products.reset_index(drop=True), linear="1 + prices + x1 + x2",
                         nonlinear="0 + x1", agents=sim.agents, instruments=["w1", "w2"])
    results = bd.evaluate(problem, sigma=[[1.0]], config=bd.EstimationConfig(hessian=False))
    sequential = bd.simulate_merger(results, [0, 1])
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        processes = bd.simulate_merger(results, [0, 1], executor=pool)
    cluster = bd.simulate_merger(results, [0, 1], executor=client)
    assert {int(n) for n in products.groupby("market_ids").size()} == {3, 4, 5}
    for other in (processes, cluster):
        np.testing.assert_array_equal(other.prices, sequential.prices)
        np.testing.assert_array_equal(other.shares, sequential.shares)
        np.testing.assert_array_equal(other.consumer_surplus, sequential.consumer_surplus)
        assert other.status == sequential.status
    assert sequential.converged and np.all(np.isfinite(sequential.prices))
