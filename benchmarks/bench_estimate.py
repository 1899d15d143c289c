"""Benchmark a whole BLP estimation against PyBLP, measured in the same run (run on demand).

    python benchmarks/bench_estimate.py                  # nevo, blp
    python benchmarks/bench_estimate.py nevo --repeat 3
    python benchmarks/bench_estimate.py blp --no-pyblp   # ours only
    python benchmarks/bench_estimate.py nevo --profile   # cProfile of one of our runs

Both tools run with one BLAS thread (set below, before numpy is imported), in turns, best of
``--repeat`` runs, from the same start with the same settings: 1-step GMM, BFGS with
inf-norm gradient tolerance 1e-6, SQUAREM inner loop at 1e-14, robust standard errors.

- nevo: PyBLP's Nevo tutorial (product fixed effects absorbed, X1 '0 + prices', X2 '1 + prices
  + sugar + mushy', demographics income, income_squared, age, child, the tutorial's start).
- blp: the BLP 1995 demand side that both tools solve to the same point (X2 '0 + prices +
  hpwt', pi on prices x I(1 / income); see tests/reference/test_estimate_blp.py for why the
  six-coefficient tutorial specification is not used for a timing comparison).

Printed per problem: wall time of each tool (ours: ``bd.estimate`` including the Hessian and
standard errors; PyBLP: ``Problem.solve`` including its standard errors), the ratio, the
objective of each, the max relative difference of (theta, beta), optimizer iterations and
objective evaluations, and contraction evaluations summed over markets; and the floor of
issue 23 (benchmarks/floor.py: share evaluations x 2 J I flops at the measured dgemm rate plus
exp(mu) per theta at numpy's measured exp rate) with our time over it.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse
import cProfile
import pstats
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import blpdemand as bd
from floor import counting_exp_cells, floor_seconds, rates, sweep_floor_seconds

DATA = Path(os.environ.get("BLPDEMAND_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
GTOL = 1e-6


def nevo() -> dict[str, Any]:
    products = pd.read_csv(DATA / "nevo_products.csv")
    agents = pd.read_csv(DATA / "nevo_agents.csv")
    sigma = np.diag([0.3302, 2.4526, 0.0163, 0.2441])
    pi = np.array([[5.4819, 0, 0.2037, 0], [15.8935, -1.2, 0, 2.6342],
                   [-0.2506, 0, 0.0511, 0], [1.2650, 0, -0.8091, 0]])
    ours = bd.Problem(products, linear="0 + prices", nonlinear="1 + prices + sugar + mushy",
                      demographics="0 + income + income_squared + age + child", agents=agents,
                      absorb="C(product_ids)",
                      instruments=[f"demand_instruments{k}" for k in range(20)])
    return {"name": "nevo", "ours": ours, "sigma": sigma, "pi": pi, "products": products, "agents": agents,
                "formulations": ("0 + prices", "1 + prices + sugar + mushy"),
                "absorb": "C(product_ids)",
                "agent_formulation": "0 + income + income_squared + age + child"}


def blp() -> dict[str, Any]:
    products = pd.read_csv(DATA / "blp_products.csv")
    agents = pd.read_csv(DATA / "blp_agents.csv")
    sigma, pi = np.diag([0, 4.628]), np.c_[[-43.501, 0]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # importance-sampling weights sum to 0.154 by design
        ours = bd.Problem(products, linear="1 + hpwt + air + mpd + space",
                          nonlinear="0 + prices + hpwt", demographics="0 + I(1 / income)",
                          agents=agents, instruments=[f"demand_instruments{k}" for k in range(8)])
    return {"name": "blp", "ours": ours, "sigma": sigma, "pi": pi, "products": products, "agents": agents,
                "formulations": ("1 + hpwt + air + mpd + space", "0 + prices + hpwt"),
                "absorb": None, "agent_formulation": "0 + I(1 / income)"}


def blp6() -> dict[str, Any]:
    """The BLP tutorial's six random coefficients (1-step, demand only)."""
    products = pd.read_csv(DATA / "blp_products.csv")
    agents = pd.read_csv(DATA / "blp_agents.csv")
    sigma, pi = np.diag([3.612, 0, 4.628, 1.818, 1.050, 2.056]), np.c_[[0, -43.501, 0, 0, 0, 0]]
    nonlinear = "1 + prices + hpwt + air + mpd + space"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # importance-sampling weights sum to 0.154 by design
        ours = bd.Problem(products, linear="1 + hpwt + air + mpd + space", nonlinear=nonlinear,
                          demographics="0 + I(1 / income)", agents=agents,
                          instruments=[f"demand_instruments{k}" for k in range(8)])
    return {"name": "blp6", "ours": ours, "sigma": sigma, "pi": pi, "products": products,
            "agents": agents, "formulations": ("1 + hpwt + air + mpd + space", nonlinear),
            "absorb": None, "agent_formulation": "0 + I(1 / income)"}


def pyblp_problem(case: dict[str, Any]) -> Any:
    import pyblp

    pyblp.options.verbose = False
    X1, X2 = case["formulations"]
    formulations = (pyblp.Formulation(X1, absorb=case["absorb"]), pyblp.Formulation(X2))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return pyblp.Problem(formulations, case["products"],
                             pyblp.Formulation(case["agent_formulation"]), case["agents"])


def pyblp_estimate(problem: Any, case: dict[str, Any]) -> Any:
    import pyblp

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return problem.solve(case["sigma"], case["pi"], method="1s",
                             optimization=pyblp.Optimization("bfgs", {"gtol": GTOL}),
                             iteration=pyblp.Iteration("squarem", {"atol": 1e-14}),
                             check_optimality="gradient")


def ours_estimate(case: dict[str, Any]) -> bd.BLPResults:
    # one start: PyBLP runs one, so the work compared is the same (the default runs 5 per step)
    config = bd.EstimationConfig(optimizer="bfgs", gtol=GTOL, method="1s", starts=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bd.estimate(case["ours"], sigma=case["sigma"], pi=case["pi"], config=config)


def pyblp_vector(results: Any, ours: bd.BLPResults) -> np.ndarray:
    """PyBLP's (theta, beta) in our order (free Sigma then Pi elements, column-major)."""
    sigma, pi = np.asarray(results.sigma), np.asarray(results.pi)
    layout = ours.layout
    theta = np.concatenate([sigma[layout.sigma_index], pi[layout.pi_index]])
    return np.concatenate([theta, np.asarray(results.beta).ravel()])


def interleaved(functions: dict[str, Callable[[], Any]], repeat: int) -> dict[str, tuple[float, Any]]:
    """Best wall time of each function, run in turns so that machine load hits all alike."""
    best: dict[str, tuple[float, Any]] = {name: (np.inf, None) for name in functions}
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeat):
        for name, function in functions.items():
            start = time.perf_counter()
            value = function()
            elapsed = time.perf_counter() - start
            times[name].append(elapsed)
            if elapsed < best[name][0]:
                best[name] = (elapsed, value)
    for name, values in times.items():
        print(f"  {name}: runs {', '.join(f'{v:.2f}' for v in values)} s", flush=True)
    return best


RATES: list[tuple[float, float, float]] = []  # floor.rates(), measured once in main


def row(case: dict[str, Any], repeat: int, with_pyblp: bool) -> None:
    functions: dict[str, Callable[[], Any]] = {"ours": lambda: ours_estimate(case)}
    case["ours"].products.logit_delta  # noqa: B018 (data preparation is not timed)
    if with_pyblp:
        problem = pyblp_problem(case)
        functions["pyblp"] = lambda: pyblp_estimate(problem, case)
    best = interleaved(functions, repeat)
    ours_time, ours = best["ours"]
    o = ours.optimization
    print(f"{case['name']:>5} ours : {ours_time:7.3f} s, Q = {ours.objective:.10g}, converged "
          f"{ours.converged}, {o.iterations} iterations, {o.evaluations} objective evaluations, "
          f"{ours.contraction_evaluations} contraction evaluations", flush=True)
    with counting_exp_cells() as cells:  # an untimed run, the same work as the timed ones
        counted = ours_estimate(case)
    floor = floor_seconds(case["ours"], counted.contraction_evaluations, cells[0], RATES[0])
    print(f"{case['name']:>5} floor: {floor:7.3f} s (share evaluations x 2 J I at "
          f"{RATES[0][0] / 1e9:.1f} GFlop/s + {cells[0]:,} exp(mu) cells at "
          f"{RATES[0][1] * 1e9:.2f} ns); ours / floor {ours_time / floor:.1f}x", flush=True)
    sweep = sweep_floor_seconds(case["ours"], counted.contraction_evaluations, cells[0], RATES[0])
    print(f"{case['name']:>5} sweep floor: {sweep:7.3f} s (share evaluations x J I x "
          f"{RATES[0][2] * 1e9:.3f} ns, two dgemv sweeps a cell, + exp(mu)); ours / sweep floor "
          f"{ours_time / sweep:.1f}x; the share evaluations alone at that BLAS rate are "
          f"{sweep / floor:.1f}x the floor", flush=True)
    if not with_pyblp:
        return
    theirs_time, theirs = best["pyblp"]
    mine, ref = ours.estimates, pyblp_vector(theirs, ours)
    gap = np.max(np.abs(mine - ref) / np.maximum(np.abs(ref), 1e-12))
    print(f"{case['name']:>5} pyblp: {theirs_time:7.2f} s, Q = "
          f"{float(np.asarray(theirs.objective)):.10g}, converged {theirs.converged}, "
          f"{theirs.optimization_iterations} iterations, {theirs.objective_evaluations} objective "
          f"evaluations, {int(np.asarray(theirs.contraction_evaluations).sum())} contraction "
          f"evaluations", flush=True)
    print(f"{case['name']:>5} ratio {theirs_time / ours_time:.1f}x; max relative difference of "
          f"(theta, beta) {gap:.1e}", flush=True)


def profile(case: dict[str, Any]) -> None:
    ours_estimate(case)  # warm caches (blocks gathered per problem)
    profiler = cProfile.Profile()
    profiler.enable()
    ours_estimate(case)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("problems", nargs="*", default=["nevo", "blp"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-pyblp", action="store_true")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    builders = {"nevo": nevo, "blp": blp, "blp6": blp6}
    RATES.append(rates())
    for name in args.problems:
        case = builders[name]()
        if args.profile:
            profile(case)
        else:
            row(case, args.repeat, not args.no_pyblp)


if __name__ == "__main__":
    main()
