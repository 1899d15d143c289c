"""Multi-start on threads: wall and CPU time of ``EstimationConfig(workers=...)`` (on demand).

    python benchmarks/bench_parallel_starts.py                       # nevo and sim, workers 1 2
    python benchmarks/bench_parallel_starts.py sim --workers 1 2 4 --starts 7
    python benchmarks/bench_parallel_starts.py sim --size 100 20 1000

One BLAS thread per worker (set below, before numpy is imported). Each configuration runs in
turns with the others, best of ``--repeat``. Printed: wall seconds, process CPU seconds over
wall (about 1 when the threads serialize on the GIL, up to ``workers`` when they overlap), and
the best objective (identical across rows: the threaded run reproduces the sequential one).

Threads overlap only where numpy works on large arrays (it holds the GIL for small ones and for
Python-level loop overhead): Nevo (94 markets x 24 products x 20 agents) is dominated by
per-step overhead of the contraction on small work sets and barely gains; many agents per
market (``sim`` default: 50 markets x 20 products x 2000 draws) gain.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import blpdemand as bd

DATA = Path(os.environ.get("BLPDEMAND_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def nevo() -> tuple[bd.Problem, dict[str, Any], str]:
    products = pd.read_csv(DATA / "nevo_products.csv")
    agents = pd.read_csv(DATA / "nevo_agents.csv")
    problem = bd.Problem(products, linear="0 + prices", nonlinear="1 + prices + sugar + mushy",
                         demographics="0 + income + income_squared + age + child",
                         agents=agents, absorb="C(product_ids)",
                         instruments=[f"demand_instruments{k}" for k in range(20)])
    start = {"sigma": np.diag([0.3302, 2.4526, 0.0163, 0.2441]),
             "pi": np.array([[5.4819, 0, 0.2037, 0], [15.8935, -1.2, 0, 2.6342],
                             [-0.2506, 0, 0.0511, 0], [1.2650, 0, -0.8091, 0]])}
    return problem, start, "bfgs"


def sim(markets: int, products: int, draws: int) -> tuple[bd.Problem, dict[str, Any], str]:
    data = bd.simulate(markets=markets, products=products, sigma={"x1": 1.0}, draws=draws, rng=3)
    problem = bd.Problem(data.products, linear=data.linear, nonlinear=data.nonlinear,
                         agents=data.agents, instruments=list(data.instruments))
    return problem, {"sigma": [0.5]}, "l-bfgs-b"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("problems", nargs="*", default=["nevo", "sim"], help="nevo and/or sim")
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--size", nargs=3, type=int, default=[50, 20, 2000],
                        metavar=("MARKETS", "PRODUCTS", "DRAWS"))
    args = parser.parse_args()
    unknown = set(args.problems) - {"nevo", "sim"}
    if unknown:
        parser.error(f"unknown problem(s) {sorted(unknown)}; use nevo and/or sim")
    warnings.simplefilter("ignore")
    for name in args.problems:
        problem, start, optimizer = nevo() if name == "nevo" else sim(*args.size)
        best: dict[int, tuple[float, float, float]] = {}
        for _ in range(args.repeat):
            for workers in args.workers:
                config = bd.EstimationConfig(starts=args.starts, rng=11, workers=workers,
                                             optimizer=optimizer)
                wall, cpu = time.perf_counter(), time.process_time()
                results = bd.estimate(problem, config=config, **start)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                if workers not in best or wall < best[workers][0]:
                    best[workers] = (wall, cpu, results.objective)
        print(f"{name}: N={problem.N}, {args.starts} random starts + the given one, {optimizer}")
        for workers, (wall, cpu, objective) in sorted(best.items()):
            print(f"  workers={workers}: wall {wall:7.2f} s   cpu/wall {cpu / wall:4.2f}   "
                  f"objective {objective:.12g}")


if __name__ == "__main__":
    main()
