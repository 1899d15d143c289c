"""Benchmark post-estimation counterfactual prices: a Nevo merger before and after issue 18.

    python benchmarks/bench_pricing.py                    # baseline commit vs this checkout
    python benchmarks/bench_pricing.py --repeat 50
    python benchmarks/bench_pricing.py --baseline 2137500^ --profile

``compute_prices`` for the PyBLP tutorial's merger (firm 2 joins firm 1) on Nevo's cereal data
(94 markets x 24 products x 20 agents, product fixed effects absorbed, X1 '0 + prices', X2
'1 + prices + sugar + mushy', four demographics) at Nevo's published estimates, costs implied by
the observed prices. Each side runs in its own subprocess with one BLAS thread, the baseline
from a ``git worktree`` of ``--baseline`` (default 2137500^, the parent of the commit that
compiled the zeta fixed point: the per-market Python engine) with PYTHONPATH at its src/, and
this checkout's src/ for the other. Both evaluate the same theta; the second side then uses the
first side's delta, so both price the same demand. Printed: the min over ``--repeat`` calls of
each (after one warm-up call that compiles), their ratio, and the largest relative difference
of the counterfactual prices (the issue asks for <= 1e-12) and of the costs.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("BLPDEMAND_DATA", ROOT.parent / "shared" / "data"))


def child(out: Path, delta_file: Path | None, repeat: int, profile: bool) -> None:
    """Time compute_prices in this process (the blpdemand on PYTHONPATH) and save the prices."""
    import dataclasses
    import warnings

    import pandas as pd

    import blpdemand as bd
    from blpdemand.results.counterfactual import compute_prices

    products = pd.read_csv(DATA / "nevo_products.csv")
    agents = pd.read_csv(DATA / "nevo_agents.csv")
    sigma = np.diag([0.5581, 3.312, 0.00576, 0.0934])
    pi = np.array([[2.292, 0, 1.284, 0], [588.3, -30.19, 0, 11.05],
                   [-0.3848, 0, 0.05240, 0], [0.7481, 0, -1.353, 0]])
    problem = bd.Problem(products, linear="0 + prices", nonlinear="1 + prices + sugar + mushy",
                         demographics="0 + income + income_squared + age + child",
                         agents=agents, absorb="C(product_ids)",
                         instruments=[f"demand_instruments{k}" for k in range(20)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = bd.evaluate(problem, sigma=sigma, pi=pi).fitted
    if delta_file is not None:
        fitted = dataclasses.replace(fitted, delta=np.load(delta_file))
    merged = products["firm_ids"].replace({2: 1}).to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cf = compute_prices(fitted, firm_ids=merged)  # warm-up: compiles the kernels
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            cf = compute_prices(fitted, firm_ids=merged)
            times.append(time.perf_counter() - start)
        if profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(20):
                compute_prices(fitted, firm_ids=merged)
            profiler.disable()
            pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(25)
    np.savez(out, prices=cf.prices, costs=cf.costs, shares=cf.shares,
             surplus=cf.consumer_surplus, delta=fitted.delta,
             converged=np.array([s.converged for s in cf.status]))
    print(json.dumps({"min_s": min(times), "median_s": float(np.median(times)),
                      "failed": int(sum(not s.converged for s in cf.status))}))


def run_side(src: Path, out: Path, delta_file: Path | None, repeat: int,
             profile: bool) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", str(out), "--repeat", str(repeat)]
    if delta_file is not None:
        command += ["--delta", str(delta_file)]
    if profile:
        command.append("--profile")
    env = {**os.environ, "PYTHONPATH": str(src), "BLPDEMAND_DATA": str(DATA)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{src}: child failed\n{done.stderr}")
    if profile:
        print(done.stderr)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="2137500^")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--child", type=Path)
    parser.add_argument("--delta", type=Path)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.delta, args.repeat, args.profile)
        return
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        base = tmp / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base),
                        args.baseline], check=True, capture_output=True)
        try:
            before = run_side(base / "src", tmp / "before.npz", None, args.repeat, args.profile)
            np.save(tmp / "delta.npy", np.load(tmp / "before.npz")["delta"])
            after = run_side(ROOT / "src", tmp / "after.npz", tmp / "delta.npy", args.repeat,
                             args.profile)
            a, b = np.load(tmp / "before.npz"), np.load(tmp / "after.npz")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                           check=False, capture_output=True)
        print(f"Nevo merger (firm 2 -> 1), compute_prices, min of {args.repeat} calls")
        print(f"  baseline {args.baseline}: {1e3 * before['min_s']:.2f} ms "
              f"(median {1e3 * before['median_s']:.2f}), failed markets {before['failed']}")
        print(f"  this checkout:  {1e3 * after['min_s']:.2f} ms "
              f"(median {1e3 * after['median_s']:.2f}), failed markets {after['failed']}")
        print(f"  speed-up: {before['min_s'] / after['min_s']:.1f}x")
        for name in ("prices", "costs", "shares", "surplus"):
            x, y = a[name], b[name]
            both = np.isnan(x) & np.isnan(y)
            gap = np.max(np.abs(x - y)[~both] / np.abs(x)[~both]) if (~both).any() else 0.0
            print(f"  max relative difference of {name}: {gap:.2e}"
                  f" (NaN in the same places: {bool(np.array_equal(np.isnan(x), np.isnan(y)))})")


if __name__ == "__main__":
    main()
