"""PyBLP's micro-moments tutorial (Petrin 2002, CEX survey), demand side, against PyBLP (on demand).

    python benchmarks/bench_micro.py                  # 50 agents a market, 1-step GMM
    python benchmarks/bench_micro.py --agents 1000    # the tutorial's 1,000 (PyBLP: long)
    python benchmarks/bench_micro.py --tutorial-supply            # the tutorial's own run
    python benchmarks/bench_micro.py --tutorial-supply --side pyblp --save pyblp.pkl
    python benchmarks/bench_micro.py --tutorial-supply --side ours --load pyblp.pkl

The tutorial's formulations, ten micro moments, starting values and clustered W and standard
errors (no supply side: that block is another issue's), PyBLP's initial update at the start
and one GMM step; both with L-BFGS-B (PyBLP gtol 1e-12, ftol 0; ours its defaults), one
start, one BLAS thread. Printed: both wall times (one run each, in this
process), the ratio, both objectives and the largest relative difference of theta's free
elements. The data are the ones tests/reference/test_micro_pyblp.py uses.

``--tutorial-supply``: the tutorial's own estimation, as its notebook makes it: X3 '1 +
log(hpwt) + log(wt) + log(mpg) + air + fwd + trend * (jp + eu) + log(q)' with log costs (no
cost bounds), its ten micro moments, start, clustered W and SEs, 2-step GMM with PyBLP's
initial update, BFGS to gtol 1e-4 (both tools: unbounded, as the tutorial's), SQUAREM to 1e-13
for PyBLP, our default inner loop; ``--agents`` (default 1,000, the tutorial's) keeps each
market's first agents. Printed: wall time, Q, iterations and evaluations per step of each, the
ratio, the largest |ours - PyBLP| / max(|PyBLP|, SE) over (theta, beta, gamma), and, with
1,000 agents, our estimate rounded to 2 digits against the tutorial's published output.
``--side pyblp --save F`` runs PyBLP's side alone (long) and ``--side ours --load F`` compares.
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
from typing import Any

import numpy as np
import pandas as pd

import blpdemand as bd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "reference"))
from test_micro_pyblp import (
    DEMOGRAPHICS,
    PI,
    SIGMA,
    X1,
    X2,
    _ours,
    _ours_moments,
    _pyblp,
    _pyblp_moments,
)

# The tutorial's supply side (log costs): its X3 with the trend-by-origin interactions and
# log quantity, and its solve options (2-step, BFGS to gtol 1e-4, SQUAREM to 1e-13).
X3 = "1 + log(hpwt) + log(wt) + log(mpg) + air + fwd + trend * (jp + eu) + log(q)"
PYBLP_X3 = ("1", "log(hpwt)", "log(wt)", "log(mpg)", "air", "fwd", "trend", "jp", "eu",
            "trend:jp", "trend:eu", "log(q)")
OURS_X3 = PYBLP_X3[:9] + ("log(q)", "trend:jp", "trend:eu")

# PyBLP's published tutorial output (1,000 agents; its documentation, PyBLP 1.2.0, 2 digits):
# Q 1.8E+02 after 72 iterations and 87 evaluations; |Sigma| (BFGS is unbounded: a diagonal
# element's sign is not identified), Pi on prices and fv*log(fs), beta, gamma (our X3 order).
PUBLISHED = {
    "Q": [1.8e2],
    "|sigma|": [3.0e-2, 1.2e-1, 9.2e-2, 1.3, 1.6e-1, 1.6],
    "pi": [-3.9, -1.2e1, -2.4e1, 4.2e-1, 1.7e-1, 1.0e-1, 2.5e-1],
    "beta": [-8.9, 8.3, 4.9, 3.8, -1.4e-1, -6.5, -2.1, -1.3, -1.1, -3.3, 3.4e-2, 2.2e-1, -1.5e-2],
    "gamma": [1.4, 8.8e-1, 1.4, 1.2e-1, 2.7e-1, 6.9e-2, -1.2e-2, 1.0e-1, 4.6e-1, -6.9e-2,
              1.6e-3, -1.1e-2],
}


def two_digits(values: np.ndarray) -> np.ndarray:
    """Round to 2 significant digits, as PyBLP's tables print with options.digits = 2."""
    values = np.asarray(values, dtype=float)
    exponent = np.floor(np.log10(np.abs(np.where(values == 0, 1.0, values))))
    return np.round(values / 10.0 ** exponent, 1) * 10.0 ** exponent


def against_published(ours: bd.BLPResults) -> str:
    """Our estimate, rounded as the tutorial prints, against its published numbers."""
    P = ours.theta.size
    sigma_free = np.nonzero(np.diag(SIGMA))[0].size
    ours_values = {"Q": [ours.objective], "|sigma|": np.abs(ours.theta[:sigma_free]),
                   "pi": ours.theta[sigma_free:P], "beta": ours.beta, "gamma": ours.gamma}
    lines = []
    for name, published in PUBLISHED.items():
        rounded = two_digits(np.asarray(ours_values[name]))
        same = np.isclose(rounded, published, rtol=1e-9, atol=0)
        lines.append(f"  {name}: {int(same.sum())} of {same.size} equal at 2 digits"
                     + ("" if same.all() else f" (ours {rounded[~same].tolist()}, published "
                        f"{np.asarray(published)[~same].tolist()})"))
    return "\n".join(lines)


def tutorial_pyblp(products: pd.DataFrame, agents: pd.DataFrame,
                   values: pd.Series) -> tuple[float, dict[str, Any]]:
    """PyBLP's tutorial call as the tutorial makes it; its wall time and results as a dict."""
    import pyblp

    pyblp.options.verbose = False
    problem = pyblp.Problem((pyblp.Formulation(X1), pyblp.Formulation(X2),
                             pyblp.Formulation(X3)), products,
                            pyblp.Formulation("1 + " + DEMOGRAPHICS), agents, costs_type="log")
    clock = time.perf_counter()
    with np.errstate(all="ignore"):
        results = problem.solve(sigma=SIGMA, pi=np.column_stack([np.zeros(11), PI]),
                                optimization=pyblp.Optimization("bfgs", {"gtol": 1e-4}),
                                iteration=pyblp.Iteration("squarem", {"atol": 1e-13}),
                                se_type="clustered", W_type="clustered",
                                micro_moments=_pyblp_moments(values))
    seconds = time.perf_counter() - clock
    out: dict[str, Any] = {k: np.asarray(getattr(results, k)) for k in (
        "theta", "sigma", "pi", "beta", "gamma", "sigma_se", "pi_se", "beta_se", "gamma_se",
        "objective", "gradient", "projected_gradient", "micro_values", "W",
        "optimization_iterations", "objective_evaluations", "fp_iterations",
        "contraction_evaluations")}
    out["step1"] = {k: np.asarray(getattr(results.last_results, k)) for k in (
        "theta", "objective", "optimization_iterations", "objective_evaluations")}
    out["converged"] = bool(results.converged)
    return seconds, out


def main() -> None:
    import pyblp

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=None,
                        help="agents a market (default 50; the tutorial's 1,000 with "
                             "--tutorial-supply)")
    parser.add_argument("--tutorial-supply", action="store_true",
                        help="the tutorial's 2-step run with its log-cost supply side")
    parser.add_argument("--side", choices=("both", "pyblp", "ours"), default="both")
    parser.add_argument("--save", help="pickle PyBLP's side here")
    parser.add_argument("--load", help="PyBLP's side from this pickle (run before)")
    parser.add_argument("--data", default=os.environ.get("BLPDEMAND_DATA", "/work/shared/data"))
    args = parser.parse_args()
    data = Path(args.data)
    if args.tutorial_supply:
        tutorial(data, args.agents or 1000, args.side, args.save, args.load)
        return
    args.agents = args.agents or 50
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


def tutorial_problem(products: pd.DataFrame, agents: pd.DataFrame,
                     values: pd.Series) -> bd.Problem:
    """Our problem for the tutorial: 'prices' in X2 (the supply side asks for it; Pi's price
    row changes sign), the same X3 and log costs, no cost bounds (the tutorial sets none)."""
    instruments = [c for c in products.columns if c.startswith("demand_instruments")]
    supply_instruments = [c for c in products.columns if c.startswith("supply_instruments")]
    return bd.Problem(products, linear=X1, nonlinear=X2.replace("I(-prices)", "prices"),
                      demographics=DEMOGRAPHICS, agents=agents, instruments=instruments,
                      supply=X3, costs="log", supply_instruments=supply_instruments,
                      micro=_ours_moments(values))


def tutorial_ours(problem: bd.Problem, config: bd.EstimationConfig) -> bd.BLPResults:
    """Our 2-step estimate from the tutorial's start."""
    pi = PI.copy()
    pi[1] = -pi[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bd.estimate(problem, sigma=SIGMA, pi=pi, config=config)


def pyblp_estimates(theirs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """PyBLP's estimates and SEs in our order (theta with Pi's price row turned, beta, gamma)."""
    sigma, pi = np.asarray(theirs["sigma"]), np.asarray(theirs["pi"])[:, 1:].copy()
    sigma_se, pi_se = np.asarray(theirs["sigma_se"]), np.asarray(theirs["pi_se"])[:, 1:]
    pi[1] = -pi[1]
    s_index, p_index = np.nonzero(SIGMA.T)[::-1], np.nonzero(PI.T)[::-1]
    order = [PYBLP_X3.index(name) for name in OURS_X3]  # formulaic puts log(q) before trend:jp
    estimates = np.r_[sigma[s_index], pi[p_index], np.ravel(theirs["beta"]),
                      np.ravel(theirs["gamma"])[order]]
    se = np.r_[sigma_se[s_index], pi_se[p_index], np.ravel(theirs["beta_se"]),
               np.ravel(theirs["gamma_se"])[order]]
    return estimates, se


def tutorial(data: Path, agents_per_market: int, side: str, save: str | None,
             load: str | None) -> None:
    """The tutorial's 2-step run with supply: PyBLP's and ours, compared."""
    import pickle

    products = pd.read_csv(data / "petrin_products.csv")
    agents = pd.read_csv(data / "petrin_agents.csv").groupby("market_ids").head(
        agents_per_market)
    agents = agents.assign(weights=1.0 / agents_per_market)
    values = pd.read_csv(data / "petrin_values.csv", index_col=0)["value"]
    theirs: dict[str, Any] | None = None
    if side in ("both", "pyblp"):
        seconds, theirs = tutorial_pyblp(products, agents, values)
        theirs["seconds"] = seconds
        theirs["agents"] = agents_per_market
        print(f"PyBLP {seconds:.1f} s, Q = {float(theirs['objective']):.10g}, "
              f"iterations {theirs['optimization_iterations']}, "
              f"evaluations {theirs['objective_evaluations']}", flush=True)
        if save:
            with open(save, "wb") as file:
                pickle.dump(theirs, file)
    elif load:
        with open(load, "rb") as file:
            theirs = pickle.load(file)
    if side == "pyblp":
        return
    problem = tutorial_problem(products, agents, values)
    config = bd.EstimationConfig(method="2s", optimizer="bfgs", gtol=1e-4, starts=0,
                                 weighting="clustered", covariance="clustered",
                                 clusters="clustering_ids")
    clock = time.perf_counter()
    ours = tutorial_ours(problem, config)
    seconds = time.perf_counter() - clock
    assert problem.supply is not None and problem.supply.X3.names == OURS_X3
    steps = ", ".join(f"step {k + 1}: Q {step.objective:.10g}, {step.iterations} iterations, "
                      f"{step.evaluations} evaluations, {step.message}"
                      for k, step in enumerate(ours.steps))
    print(f"ours  {seconds:.1f} s, Q = {ours.objective:.10g} ({steps})", flush=True)
    if agents_per_market == 1000:
        print("against the tutorial's published output (PyBLP 1.2.0, 2 digits):")
        print(against_published(ours))
    if theirs is None:
        return
    estimates, se = pyblp_estimates(theirs)
    scale = np.maximum(np.abs(estimates), se)
    gap = np.abs(ours.estimates - estimates) / scale
    print(f"ratio {float(theirs['seconds']) / seconds:.1f} x; Q PyBLP "
          f"{float(theirs['objective']):.10g}; max |ours - PyBLP| / max(|PyBLP|, SE) "
          f"{gap.max():.1e}")


if __name__ == "__main__":
    main()
