"""Random-coefficients nested logit: blpdemand against PyBLP 1.3, both in this run (on demand).

    python benchmarks/bench_rcnl.py                       # 100 markets x 20 products, 2 nests
    python benchmarks/bench_rcnl.py --markets 200 --repeat 2

Data: PyBLP's Simulation with X1 = [1, prices, x], a random coefficient on x (sigma 0.8), a common
rho = 0.5 over two nests drawn at random, 7-node Gauss-Hermite agents (or ``--draws`` Monte
Carlo draws) and Bertrand prices.
Instruments: BLP sums of x and w, w, within-nest sums of x and w and nest counts. Both tools
estimate 2-step GMM from the truth with l-bfgs-b (gtol 1e-8) and the inner loop to 1e-14, one
start (our ``starts=0``), one BLAS thread. Printed: the best wall time of each, the ratio, and
the largest relative difference of the estimates.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

import blpdemand as bd


def simulate(markets: int, products: int, draws: int = 0
             ) -> tuple[pd.DataFrame, pd.DataFrame, Any]:
    import pyblp

    pyblp.options.verbose = False
    ids = pyblp.build_id_data(T=markets, J=products, F=4)
    nests = np.random.default_rng(0).integers(0, 2, markets * products)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        simulation = pyblp.Simulation(
            product_formulations=(pyblp.Formulation("1 + prices + x"), pyblp.Formulation("0 + x"),
                                  pyblp.Formulation("1 + x + w")),
            product_data={"market_ids": ids.market_ids, "firm_ids": ids.firm_ids,
                          "nesting_ids": nests},
            beta=[1.0, -2.0, 1.0], sigma=[[0.8]], gamma=[1.0, 0.5, 0.5], rho=0.5,
            integration=(pyblp.Integration("product", 7) if not draws else
                         pyblp.Integration("monte_carlo", draws, {"seed": 0})),
            xi_variance=0.2, omega_variance=0.2,
            correlation=0.7, seed=1)
        data = simulation.replace_endogenous().product_data
    products_frame = pd.DataFrame({name: np.ravel(getattr(data, name)) for name in
                                   ("market_ids", "firm_ids", "nesting_ids", "shares", "prices",
                                    "x", "w")})
    Z = pyblp.build_blp_instruments(pyblp.Formulation("0 + x + w"), products_frame)
    cell = products_frame.groupby(["market_ids", "nesting_ids"])
    extra = [products_frame["w"], cell["x"].transform("sum") - products_frame["x"],
             cell["x"].transform("size"), cell["w"].transform("sum") - products_frame["w"]]
    for k, column in enumerate([*Z.T, *extra]):
        products_frame[f"demand_instruments{k}"] = np.asarray(column, dtype=np.float64)
    agents = pd.DataFrame({"market_ids": np.ravel(simulation.agent_data.market_ids),
                           "weights": np.ravel(simulation.agent_data.weights),
                           "nodes0": simulation.agent_data.nodes[:, 0]})
    return products_frame, agents, pyblp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markets", type=int, default=100)
    parser.add_argument("--products", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--draws", type=int, default=0,
                        help="Monte Carlo draws per market (0: 7 Gauss-Hermite nodes)")
    args = parser.parse_args()
    products, agents, pyblp = simulate(args.markets, args.products, args.draws)
    instruments = [c for c in products if c.startswith("demand_instruments")]
    problem = bd.Problem(products, linear="1 + prices + x", nonlinear="0 + x", agents=agents,
                         nesting="nesting_ids", instruments=instruments)
    config = bd.EstimationConfig(method="2s", starts=0, gtol=1e-8,
                                 contraction=bd.FixedPointConfig(tol=1e-14))
    bd.estimate(problem, sigma=[[0.8]], rho=0.5, config=config)  # compile and warm up once
    ours_times, theirs_times = [], []
    for _ in range(args.repeat):
        clock = time.perf_counter()
        ours = bd.estimate(problem, sigma=[[0.8]], rho=0.5, config=config)
        ours_times.append(time.perf_counter() - clock)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs_problem = pyblp.Problem(
                (pyblp.Formulation("1 + prices + x"), pyblp.Formulation("0 + x")), products,
                agent_data=agents)
            clock = time.perf_counter()
            theirs = theirs_problem.solve(
                sigma=[[0.8]], rho=0.5, method="2s",
                iteration=pyblp.Iteration("squarem", {"atol": 1e-14}),
                optimization=pyblp.Optimization("l-bfgs-b", {"gtol": 1e-8}))
            theirs_times.append(time.perf_counter() - clock)
    reference = np.concatenate([np.ravel(theirs.sigma), np.ravel(theirs.rho),
                                np.ravel(theirs.beta)])
    estimates = np.concatenate([ours.theta, ours.beta])
    difference = np.max(np.abs(estimates - reference) / np.abs(reference))
    agents_per_market = args.draws or 7
    print(f"RCNL {args.markets} markets x {args.products} products x {agents_per_market} agents, "
          "2-step GMM")
    print(f"  blpdemand {min(ours_times):8.2f} s   PyBLP {min(theirs_times):8.2f} s   "
          f"ratio {min(theirs_times) / min(ours_times):6.1f}x   max rel diff {difference:.1e}")


if __name__ == "__main__":
    main()
