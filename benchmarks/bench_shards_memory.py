"""A problem that does not fit one Dask worker's memory limit, on market shards (issue 22).

    python benchmarks/bench_shards_memory.py                        # 5,000 x 50 x 1,000, 600 MiB
    python benchmarks/bench_shards_memory.py --markets 500 --limit 330 --shards 1 4

The problem (``bench_shards.build``: simulated, one random coefficient, BLP rival sums as
instruments) is evaluated once in this process (``solve.gmm.DemandObjective``, the reference:
Q and dQ/dtheta at two thetas, 2SLS W). Then, for each shard count k, a LocalCluster of k
worker processes (one thread each) whose ``memory_limit`` is ``--limit`` MiB: each worker is
warmed on a tiny problem (imports, compiled kernels), the k shards are scattered, one to each
worker, and the same two evaluations are asked of them. Per k it prints the largest worker's
resident memory after the warm-up, its peak over its life (``ru_maxrss``), the seconds per
evaluation, and the largest difference of Q (relative) and of the gradient from the reference:
relative, and relative to its scale 2 sum_m |Z'dxi/dtheta|_m |W g|_m (the gradient is a small
sum of large terms: its rounding is bounded by eps times that scale, not by eps times itself),
and, relative to that scale, from the shards' own formula run in this process ("here": sums
Z'delta~ - Z'X1~ beta instead of Z'xi, so it differs from the reference by that rounding); or,
where Dask's memory manager paused or restarted a worker, the WorkerLostError it raised.
The machine is shared: times are rough; memory is the evidence.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_shards import build

from blpdemand.errors import WorkerLostError
from blpdemand.solve.gmm import DemandObjective
from blpdemand.solve.shards import ShardedObjective, split_markets

MIB = 1 << 20
THETAS = (np.array([0.8]), np.array([1.1]))


def _warm() -> float:
    """Import and compile on this worker (a tiny problem); its resident MiB after."""
    import gc

    import psutil

    tiny = build(4, 3, 5)
    layout, _ = tiny.layout(sigma=[0.5])
    ShardedObjective([tiny], layout)(np.array([0.5]))
    gc.collect()
    return float(psutil.Process().memory_info().rss) / MIB


def _sample(dask_worker: Any) -> None:
    """Record this worker's largest resident MiB every 5 ms from now on (a daemon thread;
    ru_maxrss would not do: Linux keeps it across exec, so a worker reports its parent's)."""
    import threading

    import psutil

    peak = dask_worker.bench_peak = [0.0]

    def run() -> None:
        process = psutil.Process()
        while True:
            peak[0] = max(peak[0], process.memory_info().rss / MIB)
            time.sleep(0.005)

    threading.Thread(target=run, daemon=True).start()


def _peak(dask_worker: Any) -> float:
    return float(dask_worker.bench_peak[0])


def on_cluster(problem: Any, count: int, limit: int, W: np.ndarray,
               reference: list[tuple[float, np.ndarray, Any]],
               here: list[tuple[float, np.ndarray]]) -> str:
    import distributed

    layout, _ = problem.layout(sigma=[0.5])
    shards = split_markets(problem, count)
    with distributed.LocalCluster(n_workers=count, threads_per_worker=1, processes=True,
                                  memory_limit=f"{limit}MiB",
                                  dashboard_address="127.0.0.1:0") as cluster, \
            distributed.Client(cluster) as client:
        warm = max(client.run(_warm).values())
        client.run(_sample)
        start = time.perf_counter()
        try:
            with ShardedObjective(shards, layout, W, executor=client) as objective:
                values = [objective(theta) for theta in THETAS]
        except WorkerLostError as error:
            seconds = time.perf_counter() - start
            return (f"{warm:>9.0f} {'>limit':>9} {'':>8}  WorkerLostError after {seconds:.1f} "
                    f"s:\n    {error}")
        seconds = (time.perf_counter() - start) / len(THETAS)
        peak = max(client.run(_peak).values())
    dh = max(float(np.max(np.abs(g - h[1]) / r[2]))
             for (_, g), h, r in zip(values, here, reference))
    return f"{warm:>9.0f} {peak:>9.0f} {seconds:>8.2f} {gaps(values, reference)} {dh:>9.1e}"


def gaps(values: list[tuple[float, np.ndarray]], reference: list[tuple[float, np.ndarray, Any]]
         ) -> str:
    """Largest gaps to the reference over the thetas: Q relative, dQ/dtheta relative to itself
    and to its scale 2 sum_m |Z'dxi/dtheta|_m |W g|_m (the rounding bound of its last sum)."""
    dq = max(abs(q - r[0]) / abs(r[0]) for (q, _), r in zip(values, reference))
    dg = max(float(np.max(np.abs(g - r[1])) / np.max(np.abs(r[1])))
             for (_, g), r in zip(values, reference))
    ds = max(float(np.max(np.abs(g - r[1]) / r[2])) for (_, g), r in zip(values, reference))
    return f"{dq:>9.1e} {dg:>9.1e} {ds:>9.1e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--markets", type=int, default=5000)
    parser.add_argument("--products", type=int, default=50)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=600, help="worker memory_limit, MiB")
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4, 8])
    args = parser.parse_args()
    problem = build(args.markets, args.products, args.draws)
    layout, _ = problem.layout(sigma=[0.5])
    Z = problem.ZD_tilde
    W = np.linalg.inv(Z.T @ Z / problem.N)
    whole = DemandObjective(problem, layout, W)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    start = time.perf_counter()
    reference = [whole(theta) for theta in THETAS]
    scales = []
    for theta in THETAS:  # the gradient's scale, from d xi/d theta at theta (N, P)
        at = whole.evaluate(theta, report=False)
        scales.append(2 * np.abs(Z.T @ at.xi_jacobian).T @ np.abs(W @ at.g))
    peak = max(peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    seconds = (time.perf_counter() - start) / len(THETAS)
    cells = int(np.sum(problem.products.markets.sizes * problem.agents.markets.sizes))
    print(f"{args.markets} markets x {args.products} products x {args.draws} draws "
          f"(N = {problem.N:,}; exp(mu) {8 * cells / MIB:,.0f} MiB); one process: "
          f"{seconds:.2f} s per Q+grad, peak {peak:,.0f} MiB (this process: the whole problem); "
          f"worker memory_limit {args.limit} MiB")
    for theta, (q, g), scale in zip(THETAS, reference, scales):
        print(f"  theta {theta.tolist()}: Q = {q!r}, dQ/dtheta = {g.tolist()} (scale "
              f"{scale.tolist()})")
    reference = [(q, g, scale) for (q, g), scale in zip(reference, scales)]
    print(f"{'shards':>6} {'warm MiB':>9} {'peak MiB':>9} {'s/eval':>8} {'dQ rel':>9} "
          f"{'dgrad rel':>9} {'/ scale':>9} {'vs here':>9}", flush=True)  # vs here: / scale
    with ShardedObjective([problem], layout, W) as alone:  # the shards' formula, in process
        here = [alone(theta) for theta in THETAS]
    print(f"{'here':>6} {'':>9} {'':>9} {'':>8} {gaps(here, reference)} {0:>9.1e}", flush=True)
    for count in args.shards:
        print(f"{count:>6} {on_cluster(problem, count, args.limit, W, reference, here)}",
              flush=True)


if __name__ == "__main__":
    main()
