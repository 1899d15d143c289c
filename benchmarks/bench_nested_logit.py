"""Nested logit on many rows: our linear IV against PyBLP's numerical rho (on demand).

    python benchmarks/bench_nested_logit.py                      # 500,000 rows; PyBLP on 50,000
    python benchmarks/bench_nested_logit.py --rows 100000 --pyblp-rows 100000

The nested logit log(s_j/s_0) = x_j' beta - alpha p_j + rho log(s_{j|g}) + xi_j is a linear IV
regression with log(s_{j|g}) endogenous (Berry 1994): ``bd.estimate_logit(nesting=...)`` solves
it in closed form; PyBLP treats rho as a nonlinear parameter and optimizes over it with its
contraction. Data: simulated markets of 100 products in 5 random nests, shares from the closed-form
nested-logit formula with rho = 0.5, prices endogenous through xi, cost shifters and the
number of products per nest as instruments. Printed: wall seconds, rho and alpha of each tool
(on the same rows where both run), and the ratio. One BLAS thread for each tool.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse
import time
import warnings

import numpy as np
import pandas as pd

import blpdemand as bd


def simulate(rows: int, products: int = 100, nests: int = 5, rho: float = 0.5,
             rng: int = 0) -> pd.DataFrame:
    """Nested-logit markets: s_j = e^{V_j/(1-rho)} / D_g * D_g^{1-rho} / (1 + sum_h D_h^{1-rho})."""
    gen = np.random.default_rng(rng)
    T = rows // products
    market = np.repeat(np.arange(T), products)
    nest = gen.integers(0, nests, size=rows)  # nests of unequal, varying sizes
    x = gen.normal(size=rows)
    w = gen.uniform(size=(rows, 2))
    xi = 0.3 * gen.normal(size=rows)
    prices = 1 + w.sum(axis=1) + 0.5 * xi + 0.1 * gen.normal(size=rows)
    V = -3.0 + x - 2.0 * prices + xi
    scaled = np.exp(V / (1 - rho))
    D = pd.Series(scaled).groupby([market, nest]).transform("sum").to_numpy()
    inclusive = pd.DataFrame({"m": market, "g": nest, "D": D}).drop_duplicates(["m", "g"])
    total = 1 + (inclusive["D"] ** (1 - rho)).groupby(inclusive["m"]).sum()
    shares = scaled / D * D ** (1 - rho) / total.to_numpy()[market]
    frame = pd.DataFrame({"market_ids": market, "product_ids": np.arange(rows) % products,
                          "firm_ids": np.arange(rows) % 10, "nesting_ids": nest,
                          "shares": shares, "prices": prices, "x": x, "w1": w[:, 0],
                          "w2": w[:, 1]})
    counts = bd.build_nesting_instruments(frame, "x")
    return pd.concat([frame, counts], axis=1)


def ours(frame: pd.DataFrame, instruments: list[str]) -> tuple[float, float, float]:
    clock = time.perf_counter()
    results = bd.estimate_logit(frame, linear="1 + prices + x", instruments=instruments,
                                nesting="nesting_ids")
    return time.perf_counter() - clock, float(results.params["rho"]), results.alpha


def theirs(frame: pd.DataFrame, instruments: list[str]) -> tuple[float, float, float]:
    import pyblp

    pyblp.options.verbose = False
    data = frame.copy()
    for k, name in enumerate(instruments):
        data[f"demand_instruments{k}"] = data[name]
    clock = time.perf_counter()
    problem = pyblp.Problem(pyblp.Formulation("1 + prices + x"), data)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        results = problem.solve(rho=0.7, method="1s",
                                optimization=pyblp.Optimization("l-bfgs-b", {"gtol": 1e-10}))
    alpha = float(np.asarray(results.beta).ravel()[1])
    return time.perf_counter() - clock, float(np.asarray(results.rho).ravel()[0]), alpha


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--pyblp-rows", type=int, default=50_000)
    parser.add_argument("--no-pyblp", action="store_true")
    args = parser.parse_args()
    frame = simulate(args.rows)
    prefix = [c for c in frame.columns if c.startswith("nest_")]
    instruments = ["w1", "w2", *prefix]
    seconds, rho, alpha = ours(frame, instruments)
    print(f"ours, {len(frame):,} rows: {seconds:6.2f} s   rho {rho:.6f}   alpha {alpha:.6f} "
          "(truth 0.5, -2)")
    if args.no_pyblp:
        return
    small = frame[frame["market_ids"] < args.pyblp_rows // 100].reset_index(drop=True)
    mine, rho_small, alpha_small = ours(small, instruments)
    them, rho_them, alpha_them = theirs(small, instruments)
    print(f"on {len(small):,} rows: ours {mine:6.2f} s (rho {rho_small:.8f}, alpha "
          f"{alpha_small:.8f}); PyBLP {them:6.2f} s (rho {rho_them:.8f}, alpha {alpha_them:.8f}); "
          f"ratio {them / mine:.0f}x")


if __name__ == "__main__":
    main()
