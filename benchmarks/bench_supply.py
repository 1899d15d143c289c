"""Benchmark joint demand-supply estimation against PyBLP, measured in the same run.

    python benchmarks/bench_supply.py                 # BLP tutorial: evaluation and 2-step
    python benchmarks/bench_supply.py --no-estimate   # the fixed-theta evaluation only
    python benchmarks/bench_supply.py --no-pyblp      # ours only
    python benchmarks/bench_supply.py --large 1000    # T x 50 products x 1,000 draws

Both tools run with one BLAS thread (set below, before numpy is imported), in turns.
The problem is PyBLP's BLP (1995) tutorial with supply: X1 '1 + hpwt + air + mpd + space',
X2 '1 + prices + hpwt + air + mpd + space', X3 '1 + log(hpwt) + air + log(mpg) + log(space) +
trend', log costs clipped at 0.001, agents '0 + I(1 / income)', the tutorial's start.

- evaluation: Q and dQ/dtheta at the tutorial's start (ours: the optimizer's objective,
  ``DemandObjective.__call__`` with a warm inner loop, best of --repeat at perturbed theta;
  PyBLP: ``Problem.solve`` with ``Optimization('return')`` and ``check_optimality='gradient'``
  (no Hessian), which also computes its standard errors).
- large (``--large T``): a simulated joint problem (T markets x 50 products x 1,000 draws, 3
  random coefficients, Bertrand prices, log costs), one objective and gradient at the truth by
  each tool, wall time and peak traced memory (``tracemalloc``; numpy reports its buffers).
- estimate: the 2-step GMM with clustered W and SEs, one start (ours ``bd.estimate`` with
  ``starts=0``; PyBLP ``Problem.solve(method='2s')``), the objective of each and the max
  relative difference of the estimates.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import blpdemand as bd
from blpdemand.errors import IntegrationWarning
from blpdemand.solve.covariance import weighting_matrix
from blpdemand.solve.gmm import DemandObjective
from blpdemand.solve.moments import problem_stack

DATA = Path(os.environ.get("BLPDEMAND_DATA",
                           Path(__file__).resolve().parents[2] / "shared" / "data"))
LINEAR = "1 + hpwt + air + mpd + space"
NONLINEAR = "1 + prices + hpwt + air + mpd + space"
SUPPLY = "1 + log(hpwt) + air + log(mpg) + log(space) + trend"
SIGMA = np.diag([3.612, 0, 4.628, 1.818, 1.050, 2.056])
PI = np.c_[[0, -43.501, 0, 0, 0, 0]]


def large(T: int, with_pyblp: bool) -> None:
    """One objective and gradient of a simulated T x 50 x 1,000 joint problem, both tools."""
    import tracemalloc

    sim = bd.simulate(markets=T, products=50, firms=10, sigma={"1": 0.5, "x1": 1.0},
                      draws=1000, pricing="bertrand", gamma=[0.5, 0.5], rng=3)
    products = sim.products.copy()
    products["w1x1"] = products["w1"] * products["x1"]
    products["x1sq"] = products["x1"] ** 2
    agents = sim.agents.copy()
    agents["one"] = 1.0
    instruments = ["w1", "w2", "w1x1", "x1sq"]
    problem = bd.Problem(products, linear="1 + x1 + x2", nonlinear="1 + x1 + prices",
                         demographics="0 + one", agents=agents, instruments=instruments,
                         supply=sim.supply, supply_instruments=["x1", "x2"], costs="log")
    sigma, pi = np.diag([0.5, 1.0, 0.0]), np.c_[[0.0, 0.0, -1.0]]
    layout, theta = problem.layout(sigma, pi)
    Z = problem_stack(problem).Z
    tracemalloc.start()
    start = time.perf_counter()
    objective = DemandObjective(problem, layout, weighting_matrix(Z.T @ Z / problem.N))
    value, _ = objective(theta)
    ours = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    print(f"large T={T}  ours {ours:7.2f} s  peak {peak:8.0f} MiB  Q {value:.8g}", end="")
    if not with_pyblp:
        print()
        return
    import pyblp

    pyblp.options.verbose = False
    frame = products.copy()
    for n, name in enumerate(instruments):
        frame[f"demand_instruments{n}"] = frame[name]
    frame["supply_instruments0"], frame["supply_instruments1"] = frame["x1"], frame["x2"]
    tracemalloc.start()
    start = time.perf_counter()
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = pyblp.Problem((pyblp.Formulation("1 + x1 + x2"),
                                pyblp.Formulation("1 + x1 + prices"),
                                pyblp.Formulation("1 + w1 + w2")), frame,
                               pyblp.Formulation("0 + one"), agents, costs_type="log")
        ref = theirs.solve(sigma, pi, method="1s", optimization=pyblp.Optimization("return"),
                           check_optimality="gradient", iteration=pyblp.Iteration(
                               "squarem", {"atol": 1e-14}))
    pyblp_time = time.perf_counter() - start
    pyblp_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    print(f"\n            PyBLP {pyblp_time:7.2f} s  peak {pyblp_peak:8.0f} MiB  Q "
          f"{float(ref.objective):.8g}   ratio {pyblp_time / ours:5.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-pyblp", action="store_true")
    parser.add_argument("--no-estimate", action="store_true")
    parser.add_argument("--large", type=int, default=0, help="markets of the large problem")
    args = parser.parse_args()
    if args.large:
        large(args.large, not args.no_pyblp)
        return
    products = pd.read_csv(DATA / "blp_products.csv")
    agents = pd.read_csv(DATA / "blp_agents.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IntegrationWarning)
        problem = bd.Problem(products, linear=LINEAR, nonlinear=NONLINEAR,
                             demographics="0 + I(1 / income)", agents=agents,
                             instruments=[f"demand_instruments{k}" for k in range(8)],
                             supply=SUPPLY, costs="log", costs_bounds=(0.001, None),
                             supply_instruments=[f"supply_instruments{k}" for k in range(12)])
    layout, theta = problem.layout(SIGMA, PI)
    Z = problem_stack(problem).Z
    objective = DemandObjective(problem, layout, weighting_matrix(Z.T @ Z / problem.N))
    objective(theta)
    ours = []
    for k in range(args.repeat):
        start = time.perf_counter()
        objective(theta * (1 + 1e-6 * (k + 1)))
        ours.append(time.perf_counter() - start)
    print(f"evaluation  ours {min(ours) * 1e3:8.1f} ms", end="")
    pyblp_problem = None
    if not args.no_pyblp:
        import pyblp

        pyblp.options.verbose = False
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pyblp_problem = pyblp.Problem(
                (pyblp.Formulation(LINEAR), pyblp.Formulation(NONLINEAR),
                 pyblp.Formulation(SUPPLY)), products, pyblp.Formulation("0 + I(1 / income)"),
                agents, costs_type="log")
            theirs = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                pyblp_problem.solve(SIGMA, PI, method="1s", costs_bounds=(0.001, None),
                                    optimization=pyblp.Optimization("return"),
                                    check_optimality="gradient")
                theirs.append(time.perf_counter() - start)
        print(f"   PyBLP {min(theirs) * 1e3:8.1f} ms   ratio {min(theirs) / min(ours):6.1f}x")
    else:
        print()
    if args.no_estimate:
        return
    config = bd.EstimationConfig(method="2s", weighting="clustered", covariance="clustered",
                                 clusters="clustering_ids", starts=0)
    start = time.perf_counter()
    mine = bd.estimate(problem, sigma=SIGMA, pi=PI, config=config)
    t_ours = time.perf_counter() - start
    print(f"estimate    ours {t_ours:8.2f} s  Q {mine.objective:.8g} converged {mine.converged}",
          end="")
    if pyblp_problem is not None:
        import pyblp

        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            ref = pyblp_problem.solve(SIGMA, PI, method="2s", costs_bounds=(0.001, None),
                                      W_type="clustered", se_type="clustered")
            t_theirs = time.perf_counter() - start
        ours_estimates = np.r_[mine.theta, mine.beta, mine.gamma]
        free = layout.sigma_free
        ref_estimates = np.r_[ref.sigma[free], ref.pi[layout.pi_free], ref.beta.ravel(),
                              ref.gamma.ravel()]
        difference = np.max(np.abs(ours_estimates - ref_estimates) / np.abs(ref_estimates))
        print(f"\n            PyBLP {t_theirs:7.2f} s  Q {ref.objective:.8g} converged "
              f"{ref.converged}   ratio {t_theirs / t_ours:5.1f}x   max rel diff {difference:.1e}")
    else:
        print()


if __name__ == "__main__":
    main()
