"""A problem over one Dask worker's memory limit: one shard is a named error, four shards run.

Reference: ``solve.gmm.DemandObjective`` on the whole problem in this process (Q and dQ/dtheta
at one theta). The limit is set from what a warm worker takes on this machine (measured on a
first cluster without a limit: Python, numpy, numba's kernels, pandas, Dask), so that the
pause threshold, 80% of it, lies ~120 MiB above that: the whole problem (3,000 markets x 50
products x 1,000 draws; a shard of it costs ~200 MiB on top of a warm worker, measured by
benchmarks/bench_shards_memory.py) passes it, a quarter of it (~60 MiB) stays below. A worker
past the threshold is paused by Dask (past 95% restarted); either is a WorkerLostError naming
the shard. Q is compared to 1e-10 relative (the issue's bar; measured ~4e-11 at 5,000 markets)
and the gradient to 1e-10 of its scale 2 sum_m |Z'dxi/dtheta|_m |W g|_m: it is a small
remainder of those terms, so its rounding is bounded by eps times the scale (measured <= 5e-12).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from simulated import rival_sums_problem

import blpdemand as bd
from blpdemand.errors import WorkerLostError
from blpdemand.solve import shard_workers
from blpdemand.solve.gmm import DemandObjective
from blpdemand.solve.shards import ShardedObjective, split_markets

distributed = pytest.importorskip("distributed")  # the [dask] extra; CI installs it

MIB = 1 << 20


def _problem(markets: int, products: int = 50, draws: int = 1000) -> bd.Problem:
    return rival_sums_problem(markets, products, draws, rng=3)


def _warm() -> int:
    """Import and compile on this worker (a tiny problem); its resident bytes after."""
    import gc

    import psutil

    tiny = _problem(4, 3, 5)
    layout, _ = tiny.layout(sigma=[0.5])
    ShardedObjective([tiny], layout)(np.array([0.5]))
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def _cluster(workers: int, limit: int) -> Any:
    return distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                    memory_limit=limit, dashboard_address="127.0.0.1:0")


@pytest.mark.slow
def test_over_one_workers_memory_limit_one_shard_is_named_and_four_shards_equal_one_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shard_workers, "PAUSED_S", 5.0)
    with _cluster(1, 0) as cluster, distributed.Client(cluster) as client:
        warm = max(client.run(_warm).values())
    limit = int((warm + 120 * MIB) / 0.8)
    problem = _problem(3000)
    layout, _ = problem.layout(sigma=[0.5])
    Z = problem.ZD_tilde
    W = np.linalg.inv(Z.T @ Z / problem.N)
    theta = np.array([0.8])
    one = DemandObjective(problem, layout, W).evaluate(theta, report=False)
    scale = 2 * np.abs(Z.T @ one.xi_jacobian).T @ np.abs(W @ one.g)
    with _cluster(4, limit) as cluster, distributed.Client(cluster) as client:
        client.run(_warm)
        with pytest.raises(WorkerLostError, match=r"market shard 0 of 1 \(150,000 products\)"
                           r".*(restarted|paused).* memory_limit"), \
                ShardedObjective([problem], layout, W, executor=client) as whole:
            whole(theta)
        client.wait_for_workers(4)
        with ShardedObjective(split_markets(problem, 4), layout, W,
                              executor=client) as sharded:
            Q, gradient = sharded(theta)
    assert Q == pytest.approx(one.objective, rel=1e-10)
    np.testing.assert_array_less(np.abs(gradient - one.gradient), 1e-10 * scale)
