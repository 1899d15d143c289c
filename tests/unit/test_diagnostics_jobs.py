"""Objective profiles, contours and draws-stability re-estimations as jobs on a process pool
and a Dask LocalCluster (issue 22).

Reference: the same profile and contour computed in sequence in this process. Each line of
points is a picklable ``PointsJob`` (problem, W, warm start, points) run by ``q_at_points``
with its own objective, and each stability re-estimation a ``reestimate`` job (its refined
rule, the results' config less runner and executor), so a worker does the same
floating-point work in the same order (one
BLAS thread: tests/conftest.py; Dask's nanny sets one too): the values are compared for
equality.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
from test_gmm_diagnostics import _problem

import blpdemand as bd
from blpdemand.results.diagnostics import DrawsStability, ObjectiveContour, ObjectiveProfile


@pytest.fixture(scope="module")
def results() -> bd.BLPResults:
    return bd.estimate(_problem(None), sigma=[0.5, 0.5],
                       config=bd.EstimationConfig(hessian=False, starts=1))


@pytest.fixture(scope="module")
def stability() -> tuple[bd.BLPResults, bd.Integration, DrawsStability]:
    rule = bd.Integration("sobol", 64, rng=0)
    base = bd.estimate(_problem(rule), sigma=[0.5, 0.5],
                       config=bd.EstimationConfig(hessian=False, starts=0))
    return base, rule, DrawsStability.from_results(base, rule, factors=(1, 2))


def _same(results: bd.BLPResults, executor: object,
          stability: tuple[bd.BLPResults, bd.Integration, DrawsStability]) -> None:
    profile = ObjectiveProfile.from_results(results, points=5, executor=executor)
    np.testing.assert_array_equal(profile.values,
                                  ObjectiveProfile.from_results(results, points=5).values)
    assert np.all(np.isfinite(profile.values)) and profile.values.shape == (2, 5)
    contour = ObjectiveContour.from_results(results, points=3, executor=executor)
    np.testing.assert_array_equal(contour.values,
                                  ObjectiveContour.from_results(results, points=3).values)
    # each re-estimation with a refined rule is a job: the same estimates
    base, rule, sequential = stability
    jobs = DrawsStability.from_results(base, rule, factors=(1, 2), executor=executor)
    np.testing.assert_array_equal(jobs.report.values, sequential.report.values)
    assert jobs.report.names == sequential.report.names


def test_profile_and_contour_on_a_process_pool_equal_the_sequential_ones(
        results: bd.BLPResults,
        stability: tuple[bd.BLPResults, bd.Integration, DrawsStability]) -> None:
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        _same(results, pool, stability)


def test_profile_and_contour_on_a_dask_cluster_equal_the_sequential_ones(
        results: bd.BLPResults,
        stability: tuple[bd.BLPResults, bd.Integration, DrawsStability]) -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address="127.0.0.1:0") as cluster, \
            distributed.Client(cluster) as client:
        _same(results, client, stability)
        assert {"q_at_points", "reestimate"} <= set(cluster.scheduler.task_prefixes)
