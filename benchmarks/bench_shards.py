"""Market shards (issue 22): memory held by each worker for 1, 2 and 4 shards.

    python benchmarks/bench_shards.py                      # shards measured one at a time here
    python benchmarks/bench_shards.py --dask               # also on a LocalCluster, a worker each
    python benchmarks/bench_shards.py --markets 400 --products 25 --draws 1000

What a worker pays is its shard's data (products and agents of its markets), its inner loop's
gathered blocks and the cached exp(mu) (8 J_t I_t bytes per market, kept between the two
passes of an evaluation), plus the transient arrays of the contraction and the adjoint. For
each shard count this prints, per shard (largest over shards):

- data MB: the shard Problem's arrays; exp(mu) MB: 8 sum_t J_t I_t;
- traced peak MB: tracemalloc's peak (numpy reports its buffers to it) while a fresh
  ShardedObjective over that shard alone is built and evaluated at two thetas (the shard's
  data are sliced from the whole problem inside the traced window, so they count);
- with ``--dask``: the same peak measured inside each worker process of a LocalCluster with one
  worker per shard (tracemalloc started there after a warm-up on a tiny problem has imported
  and compiled everything, before the shard is scattered and evaluated), and the seconds
  per evaluation there (the machine is shared: a rough figure, not a claim).

The whole-problem numbers (1 shard) are the one-process baseline: each row should be about
that divided by the number of shards. The client still holds the whole Problem here (it
splits it); for data that fit no single machine, build each shard's Problem on its worker.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from typing import Any

import numpy as np

import blpdemand as bd
from blpdemand.model.problem import Problem
from blpdemand.solve.shards import ShardedObjective, split_markets

MB = 1 << 20
THETAS = (np.array([0.8]), np.array([1.1]))


def build(markets: int, products: int, draws: int) -> Problem:
    sim = bd.simulate(markets=markets, products=products, sigma={"x1": 1.0}, draws=draws, rng=3)
    frame = sim.products.copy()
    for column in ("x1", "x2"):
        frame[f"rival_{column}"] = (frame.groupby("market_ids")[column].transform("sum")
                                    - frame[column])
    return bd.Problem(frame, linear=sim.linear, nonlinear=sim.nonlinear, agents=sim.agents,
                      instruments=[*sim.instruments, "rival_x1", "rival_x2"])


def data_bytes(problem: Problem) -> int:
    arrays = [problem.X1.values, problem.X2.values, problem.ZD.values, problem.X1_tilde,
              problem.ZD_tilde, problem.products.shares]
    if problem.agents is not None:
        arrays += [problem.agents.weights, problem.agents.nodes, problem.agents.demographics]
    frame = int(problem.products.frame.memory_usage(deep=True).sum())
    return frame + sum(int(a.nbytes) for a in arrays)


def exp_mu_bytes(problem: Problem) -> int:
    assert problem.agents is not None
    return 8 * int(np.sum(problem.products.markets.sizes * problem.agents.markets.sizes))


def traced_peak(problem: Problem, count: int, index: int, W: np.ndarray) -> int:
    """tracemalloc peak of slicing shard ``index`` of ``count`` and evaluating it alone."""
    layout, _ = problem.layout(sigma=[0.5])
    tracemalloc.start()
    try:
        shard = split_markets(problem, count)[index]
        objective = ShardedObjective([shard], layout, W)
        for theta in THETAS:
            objective(theta)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _warm_and_trace() -> None:
    """Import and compile on this worker (a tiny problem), then start tracing: the peak is
    then the shard's, not the libraries' (about 30 MB per process)."""
    tiny = build(4, 3, 5)
    layout, _ = tiny.layout(sigma=[0.5])
    ShardedObjective([tiny], layout)(np.array([0.5]))
    tracemalloc.start()


def _peak() -> int:
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def on_dask(problem: Problem, count: int, W: np.ndarray) -> tuple[float, float]:
    """(largest worker peak MB, seconds per evaluation) on a LocalCluster of ``count``."""
    import distributed

    layout, _ = problem.layout(sigma=[0.5])
    shards = split_markets(problem, count)
    with distributed.LocalCluster(n_workers=count, threads_per_worker=1, processes=True,
                                  dashboard_address="127.0.0.1:0") as cluster, \
            distributed.Client(cluster) as client:
        client.run(_warm_and_trace)
        with ShardedObjective(shards, layout, W, executor=client) as objective:
            objective(np.array([0.5]))
            start = time.perf_counter()
            for theta in THETAS:
                objective(theta)
            seconds = (time.perf_counter() - start) / len(THETAS)
            peaks: dict[str, Any] = client.run(_peak)
    return max(peaks.values()) / MB, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--markets", type=int, default=200)
    parser.add_argument("--products", type=int, default=20)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--dask", action="store_true")
    args = parser.parse_args()
    problem = build(args.markets, args.products, args.draws)
    Z = problem.ZD_tilde
    W = np.linalg.inv(Z.T @ Z / problem.N)
    traced_peak(problem, 1, 0, W)  # compile the kernels outside the measurements
    print(f"{args.markets} markets x {args.products} products x {args.draws} draws "
          f"(N = {problem.N}); per worker, the largest over its shards:")
    header = f"{'shards':>6} {'markets':>8} {'data MB':>8} {'exp(mu) MB':>10} {'traced MB':>10}"
    if args.dask:
        header += f" {'dask MB':>8} {'s/eval':>7}"
    print(header)
    for count in args.shards:
        shards = split_markets(problem, count)
        peak = max(traced_peak(problem, count, k, W) for k in range(count))
        row = (f"{count:>6} {max(s.T for s in shards):>8} "
               f"{max(data_bytes(s) for s in shards) / MB:>8.1f} "
               f"{max(exp_mu_bytes(s) for s in shards) / MB:>10.1f} {peak / MB:>10.1f}")
        if args.dask:
            dask_peak, seconds = on_dask(problem, count, W)
            row += f" {dask_peak:>8.1f} {seconds:>7.3f}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
