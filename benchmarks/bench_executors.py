"""Multi-start on executors: the BLP tutorial's 10 starts in sequence, on 2 processes, on Dask.

    python benchmarks/bench_executors.py                  # starts=9 (10 runs), repeat 2
    python benchmarks/bench_executors.py --starts 19 --workers 2 4

The lecture's advice made concrete: "each start can be a separate job, run in parallel". Each
start of the GMM step is a picklable job (``StartJob``) run by ``run_start``; the same results
come back bit for bit from every executor (checked here, and in tests/unit/test_jobs_*.py).
Printed: wall seconds (best of ``--repeat``), the speed-up over the sequential run, and the
objective. Pool and cluster start-up are counted once, outside the timings (as a user keeps
one open across estimations); their start-up time is printed separately. One BLAS thread per
process. Expect at most ``workers``x on ``workers`` free cores.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse
import multiprocessing
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import blpdemand as bd

DATA = Path(os.environ.get("BLPDEMAND_DATA",
                           Path(__file__).resolve().parents[2] / "shared" / "data"))


def blp6() -> tuple[bd.Problem, dict[str, Any]]:
    """The BLP tutorial's six random coefficients (demand only, 1-step)."""
    products = pd.read_csv(DATA / "blp_products.csv")
    agents = pd.read_csv(DATA / "blp_agents.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # importance-sampling weights sum to 0.154 by design
        problem = bd.Problem(products, linear="1 + hpwt + air + mpd + space",
                             nonlinear="1 + prices + hpwt + air + mpd + space",
                             demographics="0 + I(1 / income)", agents=agents,
                             instruments=[f"demand_instruments{k}" for k in range(8)])
    start = {"sigma": np.diag([3.612, 0, 4.628, 1.818, 1.050, 2.056]),
             "pi": np.c_[[0, -43.501, 0, 0, 0, 0]]}
    return problem, start


def timed(problem: bd.Problem, start: dict[str, Any], config: bd.EstimationConfig,
          repeat: int) -> tuple[float, bd.BLPResults]:
    best, results = np.inf, None
    for _ in range(repeat):
        clock = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results = bd.estimate(problem, config=config, **start)
        best = min(best, time.perf_counter() - clock)
    assert results is not None
    return best, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=9, help="random starts besides the given")
    parser.add_argument("--workers", nargs="+", type=int, default=[2])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    problem, start = blp6()
    options = {"starts": args.starts, "rng": 11, "method": "1s", "optimizer": "bfgs"}
    sequential, reference = timed(problem, start, bd.EstimationConfig(**options), args.repeat)
    rows = [("sequential", sequential, reference, 0.0)]
    for workers in args.workers:
        clock = time.perf_counter()
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            pool.submit(int, 0).result()  # the workers are up
            startup = time.perf_counter() - clock
            wall, results = timed(problem, start, bd.EstimationConfig(**options, executor=pool),
                                  args.repeat)
        rows.append((f"{workers} processes", wall, results, startup))
        try:
            import distributed
        except ImportError:
            continue
        clock = time.perf_counter()
        with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                      dashboard_address="127.0.0.1:0") as cluster, \
                distributed.Client(cluster) as client:
            startup = time.perf_counter() - clock
            wall, results = timed(problem, start, bd.EstimationConfig(**options,
                                                                      executor=client),
                                  args.repeat)
        rows.append((f"Dask, {workers} workers", wall, results, startup))
    print(f"BLP tutorial, 6 random coefficients, {args.starts + 1} starts, bfgs, "
          f"{os.cpu_count()} cores")
    for name, wall, results, startup in rows:
        same = np.array_equal(results.theta, reference.theta) and \
            results.objective == reference.objective
        print(f"  {name:20s} wall {wall:7.2f} s   speed-up {sequential / wall:4.2f}x   "
              f"start-up {startup:5.2f} s   objective {results.objective:.12g}   "
              f"{'identical' if same else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
