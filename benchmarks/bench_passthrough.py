"""Benchmark cost pass-through dp/dc' against PyBLP's ``compute_passthrough`` in the same run.

    python benchmarks/bench_passthrough.py               # nevo and blp
    python benchmarks/bench_passthrough.py nevo --repeat 20

Both tools evaluate demand at the same fixed parameters (PyBLP's ``Optimization('return')``;
ours a FittedDemand from PyBLP's beta and delta), as ``tests/reference/test_post_pyblp.py``
does: Nevo's cereal data at the tutorial's estimates (94 markets x 24 products x 20 agents) and
the BLP autos at the tutorial's starting values (20 markets of 72-150 products x 200 agents).
Printed: our best of ``--repeat`` calls after a warm-up, PyBLP's one call, their ratio, and the
largest difference over the largest entry. One BLAS thread.
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
from blpdemand.model.fitted import FittedDemand

DATA = Path(os.environ.get("BLPDEMAND_DATA", Path(__file__).resolve().parents[2] / "shared"
                           / "data"))
CASES: dict[str, dict[str, Any]] = {
    "nevo": {"sigma": np.diag([0.5588, 3.3124, -0.0058, 0.0934]),
             "pi": np.array([[2.2919, 0, 1.2842, 0], [588.3252, -30.1920, 0, 11.0546],
                             [-0.3842, 0, 0.0524, 0], [0.7480, 0, -1.3536, 0]]),
             "linear": "prices", "absorb": "C(product_ids)",
             "nonlinear": "1 + prices + sugar + mushy",
             "demographics": "income + income_squared + age + child", "instruments": 20},
    "blp": {"sigma": np.diag([3.612, 0, 4.628, 1.818, 1.050, 2.056]),
            "pi": np.c_[[0, -15.2, 0, 0, 0, 0]], "linear": "1 + hpwt + air + mpd + space",
            "absorb": None, "nonlinear": "1 + prices + hpwt + air + mpd + space",
            "demographics": "I(1 / income)", "instruments": 8},
}


def setup(name: str) -> tuple[FittedDemand, Any]:
    import pyblp

    case = CASES[name]
    products = pd.read_csv(DATA / f"{name}_products.csv")
    agents = pd.read_csv(DATA / f"{name}_agents.csv")
    pyblp.options.verbose = False
    linear = "0 + prices" if name == "nevo" else case["linear"]
    formulations = (pyblp.Formulation(linear, absorb=case["absorb"]),
                    pyblp.Formulation(case["nonlinear"]))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        theirs = pyblp.Problem(formulations, products,
                               pyblp.Formulation("0 + " + case["demographics"]), agents).solve(
            case["sigma"], case["pi"], optimization=pyblp.Optimization("return"))
        problem = bd.Problem(products, linear=case["linear"], nonlinear=case["nonlinear"],
                             demographics=case["demographics"], agents=agents,
                             absorb=case["absorb"], instruments=[
                                 f"demand_instruments{k}" for k in range(case["instruments"])])
    layout, theta = problem.layout(sigma=case["sigma"], pi=case["pi"])
    fitted = FittedDemand(problem=problem, layout=layout, theta=theta,
                          beta=np.asarray(theirs.beta).ravel(),
                          delta=problem.products.sort(np.asarray(theirs.delta).ravel()))
    return fitted, theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("problems", nargs="*", default=["nevo", "blp"])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    for name in args.problems:
        fitted, theirs = setup(name)
        bd.compute_passthrough(fitted)  # warm-up
        best = np.inf
        for _ in range(args.repeat):
            start = time.perf_counter()
            ours = bd.compute_passthrough(fitted).stacked()
            best = min(best, time.perf_counter() - start)
        start = time.perf_counter()
        with np.errstate(all="ignore"):
            expected = np.asarray(theirs.compute_passthrough())
        them = time.perf_counter() - start
        finite = np.isfinite(expected)
        gap = np.max(np.abs(ours[finite] - expected[finite])) / np.abs(expected[finite]).max()
        print(f"{name:5s} ours {best:8.4f} s  PyBLP {them:8.3f} s  ratio {them / best:6.1f}x  "
              f"max |difference| / max |entry| {gap:.1e}", flush=True)


if __name__ == "__main__":
    main()
