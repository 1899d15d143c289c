"""Benchmark: the Salanie-Wolak approximation on big simulated data (default 100,000 markets).

Run: ``python benchmarks/bench_salanie_wolak.py [--markets 100000] [--products 10] [--pyblp]``

Prints the time to build the Problem, to estimate the approximation (the number that matters:
seconds at 100,000 markets), the estimates against the truth, and, with ``--pyblp``, the ratio
to PyBLP's plain logit 2SLS on the same rows (PyBLP has no Salanie-Wolak estimator; its logit
is the same amount of linear algebra with fewer regressors). ``--demographics`` also times the
nonlinear path (Pi's quadratic term, Gauss-Newton): agents get an ``income`` draw with
market-varying mean and spread that the simulated shares do not use (true pi = 0), so it
measures cost, not accuracy.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

import blpdemand as bd
from blpdemand.instruments.differentiation import build_differentiation_instruments
from blpdemand.results.approximation import estimate_approximation


def simulate_big(markets: int, products: int, sigma: float, seed: int) -> tuple[pd.DataFrame,
                                                                              pd.DataFrame, dict]:
    """bd.simulate in chunks of 5,000 markets (bounded memory), 200 draws each."""
    frames, agents = [], []
    chunk = 5_000
    truth: dict = {}
    for k, start in enumerate(range(0, markets, chunk)):
        size = min(chunk, markets - start)
        sim = bd.simulate(markets=size, products=products, sigma={"x1": sigma}, draws=200,
                          rng=seed + k)
        frame = sim.products.assign(market_ids=sim.products["market_ids"] + start)
        frames.append(frame)
        a = sim.agents
        assert a is not None
        a = a.groupby("market_ids").head(5)
        agents.append(a.assign(market_ids=a["market_ids"] + start, weights=0.2))
        truth = {**sim.truth["beta"], "prices": sim.truth["alpha"], "sigma": sigma}
    return pd.concat(frames, ignore_index=True), pd.concat(agents, ignore_index=True), truth


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--markets", type=int, default=100_000)
    parser.add_argument("--products", type=int, default=10)
    parser.add_argument("--sigma", type=float, default=0.5)
    parser.add_argument("--pyblp", action="store_true", help="also time PyBLP's logit 2SLS")
    parser.add_argument("--demographics", action="store_true",
                        help="also time the nonlinear path with a demographic (pi on x1)")
    args = parser.parse_args()

    clock = time.perf_counter()
    products, agents, truth = simulate_big(args.markets, args.products, args.sigma, seed=0)
    gh = build_differentiation_instruments(products, "x1 + x2", version="quadratic")
    products = pd.concat([products, gh], axis=1).assign(x1sq=products["x1"] ** 2)
    instruments = ["w1", "w2", *gh.columns, "x1sq"]
    print(f"simulated {args.markets:,} markets x {args.products} products "
          f"({len(products):,} rows) in {time.perf_counter() - clock:.1f} s")

    clock = time.perf_counter()
    problem = bd.Problem(products, linear="1 + prices + x1 + x2", nonlinear="0 + x1",
                         agents=agents, instruments=instruments)
    print(f"Problem built in {time.perf_counter() - clock:.2f} s")

    clock = time.perf_counter()
    approx = estimate_approximation(problem, covariance="robust")
    ours = time.perf_counter() - clock
    print(f"estimate_approximation: {ours:.2f} s")
    frame = approx.to_frame()[["estimate", "std. error"]]
    frame["truth"] = [truth.get(n, np.nan) for n in problem.X1.names] + [
        truth["sigma"] ** 2, truth["sigma"]]
    print(frame.to_string())

    if args.demographics:
        rng = np.random.default_rng(1)
        T = args.markets
        mean, spread = rng.uniform(-1, 1, T), rng.uniform(0.5, 1.5, T)
        codes = agents["market_ids"].to_numpy()
        agents = agents.assign(income=mean[codes] + spread[codes] * rng.normal(size=len(agents)))
        demo = products.assign(m_x1=mean[products["market_ids"].to_numpy()] * products["x1"])
        problem = bd.Problem(demo, linear="1 + prices + x1 + x2", nonlinear="0 + x1",
                             agents=agents, demographics="income",
                             instruments=[*instruments, "m_x1"])
        clock = time.perf_counter()
        approx = estimate_approximation(problem, sigma=[1.0], pi=[[1.0]])
        print(f"with pi (nonlinear 2SLS, {approx.iterations} Gauss-Newton iterations, "
              f"converged={approx.converged}): {time.perf_counter() - clock:.2f} s")
        print(approx.to_frame()[["estimate", "std. error"]].to_string())

    if args.pyblp:
        import pyblp

        pyblp.options.verbose = False
        data = products.rename(columns={c: f"demand_instruments{k}" for k, c in
                                        enumerate(instruments)})
        clock = time.perf_counter()
        logit = pyblp.Problem(pyblp.Formulation("1 + prices + x1 + x2"), data)
        built = time.perf_counter() - clock
        clock = time.perf_counter()
        with np.errstate(all="ignore"):
            logit.solve(method="1s")
        theirs = time.perf_counter() - clock
        print(f"PyBLP logit 2SLS: Problem {built:.2f} s, solve {theirs:.2f} s; "
              f"ratio (PyBLP logit solve / our approximation) = {theirs / ours:.2f}")


if __name__ == "__main__":
    main()
