"""PyBLP's micro-moments tutorial (Petrin 2002, CEX survey), demand side, against PyBLP (on demand).

    python benchmarks/bench_micro.py                  # 50 agents a market, 1-step GMM
    python benchmarks/bench_micro.py --agents 1000    # the tutorial's 1,000 (PyBLP: long)

The tutorial's formulations, ten micro moments, starting values and clustered W and standard
errors (no supply side: that block is another issue's), PyBLP's initial update at the start
and one GMM step; both with L-BFGS-B (PyBLP gtol 1e-12, ftol 0; ours its defaults), one
start, one BLAS thread. Printed: both wall times (one run each, in this
process), the ratio, both objectives and the largest relative difference of theta's free
elements. The data are the ones tests/reference/test_micro_pyblp.py uses.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import blpdemand as bd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "reference"))
from test_micro_pyblp import _ours, _pyblp


def main() -> None:
    import pyblp

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--data", default=os.environ.get("BLPDEMAND_DATA", "/work/shared/data"))
    args = parser.parse_args()
    data = Path(args.data)
    products = pd.read_csv(data / "petrin_products.csv")
    agents = pd.read_csv(data / "petrin_agents.csv").groupby("market_ids").head(args.agents)
    agents = agents.assign(weights=1.0 / args.agents)
    values = pd.read_csv(data / "petrin_values.csv", index_col=0)["value"]
    config = bd.EstimationConfig(starts=0, weighting="clustered", covariance="clustered",
                                 clusters="clustering_ids")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clock = time.perf_counter()
        ours = _ours(products, agents, values, config, run=bd.estimate)
        ours_time = time.perf_counter() - clock
        clock = time.perf_counter()
        theirs = _pyblp(products, agents, values, W_type="clustered", se_type="clustered",
                        optimization=pyblp.Optimization("l-bfgs-b", {"gtol": 1e-12,
                                                                      "ftol": 0.0}))
        theirs_time = time.perf_counter() - clock
    theta = theirs.theta.ravel()
    free = theta != 0
    difference = np.max(np.abs(ours.theta[free] - theta[free]) / np.abs(theta[free]))
    print(f"Petrin micro moments, {args.agents} agents a market, 1-step GMM")
    print(f"  ours   {ours_time:8.1f} s   Q = {ours.objective:.10g}")
    print(f"  PyBLP  {theirs_time:8.1f} s   Q = {float(theirs.objective):.10g}")
    print(f"  ratio  {theirs_time / ours_time:8.1f} x   max rel diff theta {difference:.1e}")


if __name__ == "__main__":
    main()
