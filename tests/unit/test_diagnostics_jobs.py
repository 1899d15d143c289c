"""Objective profiles and contours as jobs on a process pool and a Dask LocalCluster (issue 22).

Reference: the same profile and contour computed in sequence in this process. Each line of
points is a picklable ``PointsJob`` (problem, W, warm start, points) run by ``q_at_points``
with its own objective, so a worker does the same floating-point work in the same order (one
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
from blpdemand.results.diagnostics import ObjectiveContour, ObjectiveProfile


@pytest.fixture(scope="module")
def results() -> bd.BLPResults:
    return bd.estimate(_problem(None), sigma=[0.5, 0.5],
                       config=bd.EstimationConfig(hessian=False, starts=1))


def _same(results: bd.BLPResults, executor: object) -> None:
    profile = ObjectiveProfile.from_results(results, points=5, executor=executor)
    np.testing.assert_array_equal(profile.values,
                                  ObjectiveProfile.from_results(results, points=5).values)
    assert np.all(np.isfinite(profile.values)) and profile.values.shape == (2, 5)
    contour = ObjectiveContour.from_results(results, points=3, executor=executor)
    np.testing.assert_array_equal(contour.values,
                                  ObjectiveContour.from_results(results, points=3).values)


def test_profile_and_contour_on_a_process_pool_equal_the_sequential_ones(
        results: bd.BLPResults) -> None:
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        _same(results, pool)


def test_profile_and_contour_on_a_dask_cluster_equal_the_sequential_ones(
        results: bd.BLPResults) -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address="127.0.0.1:0") as cluster, \
            distributed.Client(cluster) as client:
        _same(results, client)
        assert "q_at_points" in {key.split("-")[0] for key in cluster.scheduler.task_prefixes}
