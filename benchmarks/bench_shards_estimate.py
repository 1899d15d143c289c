"""Market shards as an estimation option (issue 22): 1 vs 2 workers on 5,000 markets.

    python benchmarks/bench_shards_estimate.py                 # threads and a LocalCluster
    python benchmarks/bench_shards_estimate.py --markets 5000 --products 10 --draws 100

In one run, on a problem simulated by ``bd.simulate`` (BLP rival sums as instruments, one
random coefficient): the seconds of one objective+gradient (median of 3 warm evaluations at
new thetas) and of a full two-step estimate (``starts=0``: one start per step, Hessian and
SEs included), for

- one process (``shards=None``, the baseline);
- 2 shards in this process on 1 and on 2 threads (``EstimationConfig(shards=2, workers=...)``);
- 2 shards on a Dask LocalCluster of 1 and of 2 worker processes (one thread each).

It prints the speed-ups (x) over the baseline, the CPU seconds per wall second of this process
while it evaluates (for threads: 2.0 means two busy cores; below that, the cores were shared),
the contraction evaluations of the estimate, each run's largest relative difference from the
baseline's estimates (theta, beta, SEs; at the default gtol the optimizer stops within ~1e-7
of the minimum, and sums in another order move where) and the bytes that travel per evaluation (pickled requests and replies of one shard):
theta out and Z'delta back (pass 1), u = W g out and the (P,) gradient piece back (pass 2).
The machine's cores are shared with other work: the figures are what was measured here.
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import time
import warnings
from typing import Any

import numpy as np
from bench_shards import build  # the same simulated problem (run from benchmarks/)

import blpdemand as bd
from blpdemand.model.problem import Problem
from blpdemand.solve.gmm import DemandObjective
from blpdemand.solve.shards import ShardedObjective, ShardRequest, _Shard, split_markets

THETAS = tuple(np.array([t]) for t in (0.9, 1.1, 1.0, 0.95, 1.05, 0.98))


def evaluation_seconds(objective: Any) -> tuple[float, float]:
    """Median wall seconds of Q and dQ/dtheta at new thetas after a first (cold) evaluation,
    and this process's CPU seconds over wall seconds meanwhile (2 = two busy cores)."""
    objective(THETAS[0])
    times = []
    wall, cpu = time.perf_counter(), time.process_time()
    for theta in THETAS[1:]:
        clock = time.perf_counter()
        objective(theta)
        times.append(time.perf_counter() - clock)
    return statistics.median(times), (time.process_time() - cpu) / (time.perf_counter() - wall)


def estimate(problem: Problem, **options: Any) -> tuple[float, bd.BLPResults]:
    config = bd.EstimationConfig(method="2s", starts=0, **options)
    clock = time.perf_counter()
    with warnings.catch_warnings():  # the same optimizer warnings in every run: shown once
        warnings.simplefilter("ignore" if options else "default")
        results = bd.estimate(problem, sigma=[0.5], config=config)
    return time.perf_counter() - clock, results


def difference(one: bd.BLPResults, other: bd.BLPResults) -> float:
    a = np.concatenate([one.theta, one.beta, one.theta_se, one.beta_se])
    b = np.concatenate([other.theta, other.beta, other.theta_se, other.beta_se])
    return float(np.max(np.abs(a - b) / np.abs(a)))


def message_bytes(problem: Problem, W: np.ndarray) -> dict[str, int]:
    """Pickled sizes of one shard's requests and replies in one evaluation."""
    layout, _ = problem.layout(sigma=[0.5])
    shard = _Shard(split_markets(problem, 2)[0], layout, None)
    theta = THETAS[0]
    ask = ShardRequest(token="0" * 32, shard=0, step="moments", layout=layout, theta=theta)
    moments = shard.answer(ask)
    u = W @ np.ones(W.shape[0])
    grad = ShardRequest(token="0" * 32, shard=0, step="gradient", layout=layout, theta=theta,
                        u=u)
    gradient = shard.answer(grad)
    return {name: len(pickle.dumps(value)) for name, value in
            (("moments request", ask), ("moments reply", moments),
             ("gradient request", grad), ("gradient reply", gradient),
             ("shard data (scattered once)", shard.problem))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--markets", type=int, default=5000)
    parser.add_argument("--products", type=int, default=10)
    parser.add_argument("--draws", type=int, default=100)
    parser.add_argument("--no-dask", action="store_true")
    args = parser.parse_args()
    problem = build(args.markets, args.products, args.draws)
    layout, _ = problem.layout(sigma=[0.5])
    Z = problem.ZD_tilde
    W = np.linalg.inv(Z.T @ Z / problem.N)
    print(f"{problem.T} markets, {problem.N} products, {args.draws} draws a market")
    rows = []
    seconds, cpu = evaluation_seconds(DemandObjective(problem, layout, W))
    total, one = estimate(problem)
    rows.append(("one process", seconds, cpu, total, one, 0.0))
    for threads in (1, 2):
        seconds, cpu = evaluation_seconds(ShardedObjective(split_markets(problem, 2), layout, W,
                                                           workers=threads))
        total, results = estimate(problem, shards=2, workers=threads)
        rows.append((f"2 shards, {threads} thread(s)", seconds, cpu, total, results,
                     difference(one, results)))
    if not args.no_dask:
        import distributed

        for workers in (1, 2):
            with distributed.LocalCluster(n_workers=workers, threads_per_worker=1,
                                          processes=True,
                                          dashboard_address="127.0.0.1:0") as cluster, \
                    distributed.Client(cluster) as client:
                client.run(_warm)  # imports and compiles on every worker before timing
                with ShardedObjective(split_markets(problem, 2), layout, W,
                                      executor=client) as sharded:
                    seconds, _ = evaluation_seconds(sharded)
                total, results = estimate(problem, shards=2, executor=client)
                rows.append((f"2 shards, Dask {workers} worker(s)", seconds, float("nan"), total,
                             results, difference(one, results)))
    print(f"{'run':30s} {'Q+grad s':>8s} {'CPU/wall':>8s} {'x':>5s} {'estimate s':>10s} "
          f"{'x':>5s} {'Q evals':>7s} {'contractions':>12s} {'max rel diff':>12s}")
    for name, seconds, cpu, total, results, diff in rows:
        print(f"{name:30s} {seconds:8.3f} {cpu:8.2f} {rows[0][1] / seconds:5.2f} {total:10.2f} "
              f"{rows[0][3] / total:5.2f} {sum(s.evaluations for s in results.steps):7d} "
              f"{results.contraction_evaluations:12d} {diff:12.1e}")
    for name, size in message_bytes(problem, W).items():
        print(f"{name:32s} {size:>12,d} bytes")


def _warm() -> None:
    small = build(4, 3, 5)
    layout, _ = small.layout(sigma=[0.5])
    ShardedObjective([small], layout)(np.array([0.5]))


if __name__ == "__main__":
    main()
