"""Benchmark: Gandhi-Houde differentiation instruments on 1,000 markets x 100 products.

Run: ``python benchmarks/bench_instruments.py [--markets 1000] [--products 100] [--no-pyblp]``

For each variant (local / quadratic, with and without interactions) prints our best time of 3
untraced runs, our peak
traced memory (tracemalloc, numpy allocations included), PyBLP's time for the same call in the
same run, the ratio, and the largest difference between the two. Not a test.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
import pandas as pd

from blpdemand.instruments import build_blp_instruments, build_differentiation_instruments


def simulate(markets: int, products: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = markets * products
    return pd.DataFrame({
        "market_ids": np.repeat(np.arange(markets), products),
        "firm_ids": rng.integers(0, 10, size=n),
        "x1": rng.normal(size=n),
        "x2": rng.uniform(size=n),
        "x3": rng.integers(0, 2, size=n).astype(float),
    })


def measure(call, repeat: int = 3):  # type: ignore[no-untyped-def]
    """(output, best wall seconds of ``repeat`` untraced runs, peak MiB of one traced run)."""
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        out = call()
        best = min(best, time.perf_counter() - start)
    tracemalloc.start()
    call()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, best, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--markets", type=int, default=1000)
    parser.add_argument("--products", type=int, default=100)
    parser.add_argument("--no-pyblp", action="store_true")
    args = parser.parse_args()
    data = simulate(args.markets, args.products)
    formula = "0 + x1 + x2 + x3"
    build_differentiation_instruments(data.head(200), formula)  # warm up imports
    print(f"{args.markets} markets x {args.products} products = {len(data):,} rows, "
          f"characteristics {formula}")
    pyblp = None
    if not args.no_pyblp:
        import pyblp

        pyblp.options.verbose = False
    print(f"{'variant':<22}{'ours s':>9}{'peak MiB':>10}{'pyblp s':>9}{'ratio':>8}{'max diff':>11}")
    variants = [("local", False), ("quadratic", False), ("local", True), ("quadratic", True)]
    for version, interact in variants:
        ours, seconds, peak = measure(lambda v=version, i=interact: (
            build_differentiation_instruments(data, formula, version=v, interact=i)))
        line = f"{version + (' + interact' if interact else ''):<22}{seconds:9.3f}{peak:10.1f}"
        if pyblp is not None:
            start = time.perf_counter()
            with np.errstate(all="ignore"):
                ref = pyblp.build_differentiation_instruments(pyblp.Formulation(formula), data,
                                                              version=version, interact=interact)
            theirs = time.perf_counter() - start
            diff = float(np.max(np.abs(ours.to_numpy() - ref)))
            line += f"{theirs:9.3f}{theirs / seconds:8.1f}x{diff:11.2e}"
        print(line)
    ours, seconds, peak = measure(lambda: build_blp_instruments(data, "1 + x1 + x2 + x3"))
    line = f"{'blp sums':<22}{seconds:9.3f}{peak:10.1f}"
    if pyblp is not None:
        start = time.perf_counter()
        ref = pyblp.build_blp_instruments(pyblp.Formulation("1 + x1 + x2 + x3"), data)
        theirs = time.perf_counter() - start
        line += f"{theirs:9.3f}{theirs / seconds:8.1f}x{np.max(np.abs(ours.to_numpy() - ref)):11.2e}"
    print(line)


if __name__ == "__main__":
    main()
