"""A battery of simulated problems of the shapes users have, each against PyBLP (on demand).

    python benchmarks/bench_battery.py                 # every problem, best of 2
    python benchmarks/bench_battery.py mc income --repeat 3

Problems (markets x products x draws; random coefficients; GMM):
  mc          150 x 20 x 200, Monte Carlo draws, sigma on 1 and x, 1-step
  income      200 x 20-40 x 500, sigma on x and Pi on x x income, 2-step
  correlated  100 x 15 x 200, correlated Sigma on 1 and x (Cholesky), 1-step
  product     100 x 15 x 25, Gauss-Hermite product rule (5 x 5) on 1 and x, 1-step
  absorbed    100 x 15 x 200, product fixed effects absorbed, sigma on x and prices, 1-step
  unequal     120 x 5-40 x 50-400, unequal markets and draws, sigma on x, 1-step

Shares come from the model itself (the same agents), prices are endogenous through xi, and
the instruments are cost shifters with rivals' sums of x. Both tools start from the same
values, use bfgs with the same gradient tolerance and one start (PyBLP runs one), and one
BLAS thread. Printed per problem: both wall times (ours best of ``--repeat`` after a warm-up,
PyBLP one run), the ratio, both objectives and the largest relative difference of theta
(both tools order theta as Sigma's free elements column by column, then Pi's), and the floor
of issue 23 (benchmarks/floor.py: share evaluations x 2 J I flops at the measured dgemm rate
plus exp(mu) per theta at numpy's measured exp rate, from an untimed run of ours) with our
time over it; and beside it the sweep floor (the same share evaluations priced at the time of
their two dgemv sweeps over exp(mu), measured per cell; see floor.py) and its ratio to the
floor (sw/fl: how far above the floor a run that made nothing but its share evaluations, at
the machine's own BLAS speed for them, would be).
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

import blpdemand as bd
from floor import counting_exp_cells, floor_seconds, rates, sweep_floor_seconds


@dataclass(frozen=True)
class Case:
    """One simulated problem: data, formulations, starting values, options."""

    name: str
    products: pd.DataFrame
    agents: pd.DataFrame
    linear: str
    nonlinear: str
    demographics: str | None
    sigma: np.ndarray
    pi: np.ndarray | None
    method: str
    absorb: str | None = None
    integration: tuple[str, int] | None = None


def _markets(rng: np.random.Generator, T: int, sizes: np.ndarray, draws: np.ndarray,
             Sigma: np.ndarray, Pi: np.ndarray | None, nonlinear: list[str],
             income: bool, fixed_effects: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Products and agents with shares from the model: u_ij = delta_j + x2_j'(Sigma nu_i + Pi y_i)."""
    rows, agent_rows = [], []
    J_max = int(sizes.max())
    product_effect = rng.normal(scale=0.5, size=J_max) if fixed_effects else np.zeros(J_max)
    for t in range(T):
        J, I = int(sizes[t]), int(draws[t])
        x, w1, w2 = rng.normal(size=J), rng.uniform(size=J), rng.uniform(size=J)
        xi = 0.3 * rng.normal(size=J)
        prices = 2 + w1 + w2 + 0.5 * xi + 0.1 * rng.normal(size=J)
        ids = np.arange(J)
        delta = -2 + x - 1.5 * prices + xi + product_effect[ids]
        nodes = rng.normal(size=(I, Sigma.shape[0]))
        y = rng.lognormal(size=I) - np.exp(0.5) if income else np.zeros(I)
        columns = {"1": np.ones(J), "x": x, "prices": prices}
        X2 = np.column_stack([columns[name] for name in nonlinear])
        coefficients = nodes @ Sigma.T + (np.outer(y, Pi[:, 0]) if Pi is not None else 0.0)
        u = delta[:, None] + X2 @ coefficients.T
        e = np.exp(u - u.max(axis=0, initial=0.0))
        shares = (e / (np.exp(-u.max(axis=0, initial=0.0)) + e.sum(axis=0))).mean(axis=1)
        rival = x.sum() - x
        rows.append(pd.DataFrame({"market_ids": t, "product_ids": ids, "firm_ids": ids % 4,
                                  "shares": shares, "prices": prices, "x": x,
                                  "demand_instruments0": w1, "demand_instruments1": w2,
                                  "demand_instruments2": rival,
                                  "demand_instruments3": rival ** 2,
                                  "demand_instruments4": x ** 2}))
        agent = {"market_ids": t, "weights": 1.0 / I}
        agent.update({f"nodes{k}": nodes[:, k] for k in range(nodes.shape[1])})
        if income:
            agent["income"] = y
        agent_rows.append(pd.DataFrame(agent))
    return pd.concat(rows, ignore_index=True), pd.concat(agent_rows, ignore_index=True)


def cases(rng: np.random.Generator) -> dict[str, Callable[[], Case]]:
    def mc() -> Case:
        S = np.diag([0.5, 1.0])
        p, a = _markets(rng, 150, np.full(150, 20), np.full(150, 200), S, None, ["1", "x"],
                        False)
        return Case("mc", p, a, "1 + prices + x", "1 + x", None, np.diag([0.3, 0.7]), None,
                    "1s")

    def income() -> Case:
        S, P = np.diag([1.0]), np.array([[0.5]])
        sizes = rng.integers(20, 41, size=200)
        p, a = _markets(rng, 200, sizes, np.full(200, 500), S, P, ["x"], True)
        return Case("income", p, a, "1 + prices + x", "0 + x", "0 + income", np.diag([0.5]),
                    np.array([[0.3]]), "2s")

    def correlated() -> Case:
        S = np.array([[0.6, 0.0], [0.4, 0.9]])
        p, a = _markets(rng, 100, np.full(100, 15), np.full(100, 200), S, None, ["1", "x"],
                        False)
        return Case("correlated", p, a, "1 + prices + x", "1 + x", None,
                    np.array([[0.4, 0.0], [0.2, 0.6]]), None, "1s")

    def product() -> Case:
        S = np.diag([0.5, 1.0])
        p, a = _markets(rng, 100, np.full(100, 15), np.full(100, 200), S, None, ["1", "x"],
                        False)
        return Case("product", p, a, "1 + prices + x", "1 + x", None, np.diag([0.3, 0.7]),
                    None, "1s", integration=("product", 5))

    def absorbed() -> Case:
        S = np.diag([1.0, 0.3])
        p, a = _markets(rng, 100, np.full(100, 15), np.full(100, 200), S, None,
                        ["x", "prices"], False, fixed_effects=True)
        return Case("absorbed", p, a, "0 + prices + x", "0 + x + prices", None,
                    np.diag([0.7, 0.2]), None, "1s", absorb="C(product_ids)")

    def unequal() -> Case:
        sizes, draws = rng.integers(5, 41, size=120), rng.integers(50, 401, size=120)
        p, a = _markets(rng, 120, sizes, draws, np.diag([1.0]), None, ["x"], False)
        return Case("unequal", p, a, "1 + prices + x", "0 + x", None, np.diag([0.6]), None,
                    "1s")

    return {"mc": mc, "income": income, "correlated": correlated, "product": product,
            "absorbed": absorbed, "unequal": unequal}


INSTRUMENTS = [f"demand_instruments{k}" for k in range(5)]


def ours(case: Case) -> Callable[[], bd.BLPResults]:
    return ours_with_problem(case)[0]


def ours_with_problem(case: Case) -> tuple[Callable[[], bd.BLPResults], bd.Problem]:
    agents: Any = case.agents
    if case.integration is not None:
        agents = bd.Integration(*case.integration)
    problem = bd.Problem(case.products, linear=case.linear, nonlinear=case.nonlinear,
                         demographics=case.demographics, agents=agents, absorb=case.absorb,
                         instruments=INSTRUMENTS)
    config = bd.EstimationConfig(optimizer="bfgs", gtol=1e-6, method=case.method, starts=0)

    def run() -> bd.BLPResults:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bd.estimate(problem, sigma=case.sigma, pi=case.pi, config=config)
    return run, problem


def theirs(case: Case) -> Callable[[], Any]:
    import pyblp

    pyblp.options.verbose = False
    X1 = pyblp.Formulation(case.linear, absorb=case.absorb)
    formulations = (X1, pyblp.Formulation(case.nonlinear))
    kwargs: dict[str, Any] = {}
    if case.integration is not None:
        kwargs["integration"] = pyblp.Integration(*case.integration)
        problem = pyblp.Problem(formulations, case.products, **kwargs)
    elif case.demographics is not None:
        problem = pyblp.Problem(formulations, case.products,
                                pyblp.Formulation(case.demographics), case.agents)
    else:
        problem = pyblp.Problem(formulations, case.products, agent_data=case.agents)

    def run() -> Any:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return problem.solve(sigma=case.sigma, pi=case.pi, method=case.method,
                                 optimization=pyblp.Optimization("bfgs", {"gtol": 1e-6}))
    return run


def best(run: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        clock = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - clock)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("problems", nargs="*")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--no-pyblp", action="store_true")
    args = parser.parse_args()
    builders = cases(np.random.default_rng(20261207))
    chosen = args.problems or list(builders)
    measured = rates()
    print(f"floor rates: dgemm {measured[0] / 1e9:.1f} GFlop/s, exp {measured[1] * 1e9:.2f} ns, "
          f"share evaluation's two dgemv sweeps {measured[2] * 1e9:.3f} ns a cell")
    print(f"{'problem':11s} {'N':>6s} {'ours':>8s} {'floor':>7s} {'/floor':>6s} {'sweep':>7s} "
          f"{'/sweep':>6s} {'sw/fl':>6s} {'PyBLP':>8s} "
          f"{'ratio':>6s} {'Q ours':>12s} {'Q PyBLP':>12s} {'theta gap':>9s}")
    for name in chosen:
        case = builders[name]()
        run, problem = ours_with_problem(case)
        run()  # warm: blocks, kernels
        seconds, mine = best(run, args.repeat)
        with counting_exp_cells() as cells:
            counted = run()
        floor = floor_seconds(problem, counted.contraction_evaluations, cells[0], measured)
        sweep = sweep_floor_seconds(problem, counted.contraction_evaluations, cells[0], measured)
        ours_columns = (f"{seconds:8.3f} {floor:7.3f} {seconds / floor:5.1f}x {sweep:7.3f} "
                        f"{seconds / sweep:5.1f}x {sweep / floor:5.1f}x")
        if args.no_pyblp:
            print(f"{name:11s} {len(case.products):6d} {ours_columns}")
            continue
        them_seconds, them = best(theirs(case), 1)
        gap = np.max(np.abs(mine.theta - np.asarray(them.theta).ravel())
                     / np.maximum(np.abs(mine.theta), 1e-12))
        print(f"{name:11s} {len(case.products):6d} {ours_columns} {them_seconds:8.2f} "
              f"{them_seconds / seconds:6.1f} {mine.objective:12.6g} "
              f"{float(them.objective):12.6g} {gap:9.1e}")


if __name__ == "__main__":
    main()
