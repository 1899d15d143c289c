"""Benchmark the inner loop against PyBLP, measured in the same run (not a test; run on demand).

    python benchmarks/bench_contraction.py                   # nevo, blp, cars, large
    python benchmarks/bench_contraction.py nevo blp --repeat 5
    python benchmarks/bench_contraction.py large --no-pyblp  # ours only (PyBLP takes a while)

Both tools run with one BLAS thread (set below, before numpy is imported). For each problem:
one full contraction from the logit delta at a fixed theta (ours: ``solve_delta``; PyBLP:
``ProblemResults.compute_delta`` restarted from the logit delta, i.e. its per-market SQUAREM at
atol 1e-14 including its exp(mu)), the ratio, evaluations of each, max |delta_ours -
delta_pyblp| and our peak memory (tracemalloc). For the large problem also one objective
evaluation with its gradient (ours: the estimator's ``DemandObjective``; PyBLP: ``solve`` with
``Optimization('return')``, reported as its optimization time and its wall time), peak memory
of both, and the time of one contraction step against a memory-bandwidth floor and an
arithmetic floor. Peak memory is shown two ways: traced by ``tracemalloc`` (Python and numpy
allocations) and resident (the peak resident set added by one call, in a forked child; see
``peak_rss_bytes``).
Timings on a shared machine are noisy: the best of ``--repeat`` runs is shown.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from blpdemand import Problem
from blpdemand.solve import contraction, inversion

DATA = Path(os.environ.get("BLPDEMAND_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def best_time(function: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, value = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        value = function()
        best = min(best, time.perf_counter() - start)
    return best, value


def peak_bytes(function: Callable[[], Any]) -> int:
    tracemalloc.start()
    function()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def peak_rss_bytes(function: Callable[[], Any]) -> int:
    """Peak resident memory added by one call, in a forked child (Linux; -1 elsewhere).

    The child returns the heap's free memory to the system (``malloc_trim``), resets its
    high-water mark (``/proc/self/clear_refs``), and reports VmHWM minus VmRSS before the call:
    what the call itself touched, numpy buffers and also memory tracemalloc does not see (BLAS
    workspaces, C extensions).
    """
    status = Path("/proc/self/status")
    if not hasattr(os, "fork") or not status.exists():
        return -1

    def kib(field: str) -> int:
        line = next(x for x in status.read_text().splitlines() if x.startswith(field))
        return int(line.split()[1]) * 1024

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read)
        try:
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)
            Path("/proc/self/clear_refs").write_text("5")
            before = kib("VmRSS:")
            function()
            os.write(write, str(kib("VmHWM:") - before).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    return int(text) if text else -1


# ---------------------------------------------------------------------------- problems
def nevo() -> dict[str, Any]:
    products = pd.read_csv(DATA / "nevo_products.csv")
    agents = pd.read_csv(DATA / "nevo_agents.csv")
    sigma = np.diag([0.5580, 3.312, -0.005804, 0.09341])
    pi = np.array([[2.292, 0, 1.284, 0], [588.3, -30.19, 0, 11.05],
                   [-0.3849, 0, 0.05237, 0], [0.7481, 0, -1.353, 0]])
    ours = Problem(products, linear="prices", nonlinear="1 + prices + sugar + mushy",
                   demographics="income + income_squared + age + child", agents=agents,
                   absorb="C(product_ids)",
                   instruments=[f"demand_instruments{k}" for k in range(20)])
    return dict(name="nevo", ours=ours, sigma=sigma, pi=pi, products=products, agents=agents,
                formulations=("0 + prices", "1 + prices + sugar + mushy"),
                absorb="C(product_ids)",
                agent_formulation="0 + income + income_squared + age + child")


def blp() -> dict[str, Any]:
    products = pd.read_csv(DATA / "blp_products.csv")
    agents = pd.read_csv(DATA / "blp_agents.csv")
    sigma = np.diag([3.612, 0, 4.628, 1.818, 1.050, 2.056])
    pi = np.array([[0.0], [-43.501], [0.0], [0.0], [0.0], [0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # weights sum to 0.154 by design
        ours = Problem(products, linear="1 + hpwt + air + mpd + space",
                       nonlinear="1 + prices + hpwt + air + mpd + space",
                       demographics="0 + I(1 / income)", agents=agents,
                       instruments=[f"demand_instruments{k}" for k in range(8)])
    return dict(name="blp", ours=ours, sigma=sigma, pi=pi, products=products, agents=agents,
                formulations=("1 + hpwt + air + mpd + space",
                              "1 + prices + hpwt + air + mpd + space"),
                absorb=None, agent_formulation="0 + I(1 / income)")


def cars(draws: int = 200) -> dict[str, Any]:
    from scipy.stats import norm, qmc

    raw = pd.read_csv(DATA / "course" / "cars.csv")
    products = pd.DataFrame({
        "market_ids": raw["year"], "shares": raw["sales"] / (raw["number_households"] / 2.5),
        "prices": raw["price"], "log_hp": np.log(raw["hp"]), "height": raw["height"],
        "footprint": raw["footprint"], "demand_instruments0": raw["RXR"],
        "demand_instruments1": raw["weight"] / 1000})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Sobol balance wants a power of 2; 200 is the spec
        nodes = norm.ppf(qmc.Sobol(d=2, scramble=True, seed=0).random(draws))
    markets = np.sort(products["market_ids"].unique())
    agents = pd.DataFrame({"market_ids": np.repeat(markets, draws),
                           "weights": 1.0 / draws,
                           "nodes0": np.tile(nodes[:, 0], markets.size),
                           "nodes1": np.tile(nodes[:, 1], markets.size)})
    sigma = np.diag([0.03, 0.5])
    ours = Problem(products, linear="1 + prices + log_hp + height + footprint",
                   nonlinear="0 + prices + log_hp", agents=agents,
                   instruments=["demand_instruments0", "demand_instruments1"])
    return dict(name="cars", ours=ours, sigma=sigma, pi=None, products=products, agents=agents,
                formulations=("1 + prices + log_hp + height + footprint", "0 + prices + log_hp"),
                absorb=None, agent_formulation=None)


def large(T: int = 1000, J: int = 50, I: int = 1000, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    market_ids = np.repeat(np.arange(T), J)
    prices = 1.0 + rng.uniform(size=T * J)
    x = rng.normal(size=T * J)
    z = np.column_stack([prices + rng.normal(size=T * J), rng.normal(size=T * J),
                         rng.normal(size=T * J)])
    agents = pd.DataFrame({"market_ids": np.repeat(np.arange(T), I), "weights": 1.0 / I,
                           **{f"nodes{k}": rng.normal(size=T * I) for k in range(3)}})
    sigma = np.diag([0.5, 0.4, 0.5])
    frame = pd.DataFrame({"market_ids": market_ids, "shares": 1.0 / (2 * J), "prices": prices,
                          "x": x, **{f"demand_instruments{k}": z[:, k] for k in range(3)}})
    # shares from a known delta at sigma, computed with our kernels (data generation only)
    draft = Problem(frame, linear="1 + prices + x", nonlinear="1 + prices + x", agents=agents,
                    instruments=[f"demand_instruments{k}" for k in range(3)])
    layout, theta = draft.layout(sigma)
    delta = -4.5 - 1.0 * prices + 0.5 * x + 0.5 * rng.normal(size=T * J)
    frame["shares"] = draft.products.unsort(
        contraction.compute_shares(draft, layout, theta, draft.products.sort(delta)))
    ours = Problem(frame, linear="1 + prices + x", nonlinear="1 + prices + x", agents=agents,
                   instruments=[f"demand_instruments{k}" for k in range(3)])
    return dict(name="large", ours=ours, sigma=sigma, pi=None, products=frame, agents=agents,
                formulations=("1 + prices + x", "1 + prices + x"), absorb=None,
                agent_formulation=None)


# ---------------------------------------------------------------------------- pyblp side
def pyblp_problem(case: dict[str, Any]) -> Any:
    import pyblp

    pyblp.options.verbose = False
    X1, X2 = case["formulations"]
    formulations = (pyblp.Formulation(X1, absorb=case["absorb"]), pyblp.Formulation(X2))
    agent_formulation = (pyblp.Formulation(case["agent_formulation"])
                         if case["agent_formulation"] else None)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return pyblp.Problem(formulations, case["products"], agent_formulation, case["agents"])


def pyblp_solve(problem: Any, case: dict[str, Any]) -> Any:
    import pyblp

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return problem.solve(case["sigma"], case["pi"], method="1s",
                             optimization=pyblp.Optimization("return"),
                             check_optimality="gradient",
                             iteration=pyblp.Iteration("squarem", {"atol": 1e-14}))


def pyblp_contraction(results: Any, logit_delta: np.ndarray) -> np.ndarray:
    """PyBLP's full contraction from the logit delta (its compute_delta starts at _delta)."""
    import pyblp

    results._delta = logit_delta[:, None]  # benchmark-only: restart its solver from logit
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        out = results.compute_delta(iteration=pyblp.Iteration("squarem", {"atol": 1e-14}))
    return np.asarray(out).ravel()


# ---------------------------------------------------------------------------- runs
def interleaved(functions: dict[str, Callable[[], Any]], repeat: int) -> dict[str, tuple[float, Any]]:
    """Best wall time of each function, run in turns so that machine load hits all alike."""
    best: dict[str, tuple[float, Any]] = {name: (np.inf, None) for name in functions}
    for _ in range(repeat):
        for name, function in functions.items():
            elapsed, value = best_time(function, 1)
            if elapsed < best[name][0]:
                best[name] = (elapsed, value)
    return best


def contraction_row(case: dict[str, Any], repeat: int, with_pyblp: bool,
                    methods: list[str]) -> None:
    problem = case["ours"]
    layout, theta = problem.layout(case["sigma"], case["pi"])
    functions: dict[str, Callable[[], Any]] = {}
    for method in methods:
        config = contraction.FixedPointConfig(method=method)  # type: ignore[arg-type]
        functions[method] = (lambda config=config:
                             inversion.solve_delta(problem, layout, theta, config=config))
        functions[method]()  # the first call gathers the blocks (cached per problem)
    evaluations = np.zeros(1)
    if with_pyblp:
        results = pyblp_solve(pyblp_problem(case), case)
        logit = problem.products.unsort(problem.products.logit_delta)
        functions["pyblp"] = lambda: problem.products.sort(pyblp_contraction(results, logit))
        evaluations = np.asarray(results.contraction_evaluations).ravel()
    best = interleaved(functions, repeat)
    if with_pyblp:
        theirs_time, theirs = best["pyblp"]
        print(f"{case['name']:>6} contraction: pyblp    {theirs_time * 1e3:9.1f} ms, evaluations "
              f"{int(evaluations.sum())} (max/market {int(evaluations.max())})", flush=True)
    for method in methods:
        ours_time, ours = best[method]
        peak = peak_bytes(functions[method])
        line = (f"{case['name']:>6} contraction: ours {method:>8} {ours_time * 1e3:9.1f} ms, "
                f"evaluations {ours.evaluations} (max/market {ours.iterations}), converged "
                f"{ours.converged}, peak {peak / 2**20:.1f} MiB")
        if with_pyblp:
            line += (f"; ratio {theirs_time / ours_time:.1f}x, max |delta - pyblp| "
                     f"{np.max(np.abs(theirs - ours.delta)):.1e}")
        print(line, flush=True)


def floors(case: dict[str, Any]) -> None:
    """One contraction step vs bandwidth and arithmetic floors (large problem)."""
    from blpdemand.model.shares import block_shares

    problem = case["ours"]
    layout, theta = problem.layout(case["sigma"], case["pi"])
    blocks = contraction._prepare(problem, layout, contraction.FixedPointConfig().block_bytes)
    mapping = contraction._coefficient_map(layout, theta)
    from blpdemand.solve.anderson_compiled import solve_markets

    steps, exp_time, cells = 5, 0.0, 0
    step_time = kernel_time = 0.0
    kernel_evaluations = 0
    config = contraction.FixedPointConfig()
    for data in blocks:
        start = time.perf_counter()
        utility = contraction._block_utility(data, mapping)
        exp_time += time.perf_counter() - start
        logit = data.block.gather_products(problem.products.logit_delta)
        e = np.exp(logit)
        start = time.perf_counter()
        for _ in range(steps):
            block_shares(e, utility)
        step_time += (time.perf_counter() - start) / steps
        start = time.perf_counter()  # the compiled kernel: whole solve, per market evaluation
        fp = solve_markets(utility.exp_mu, utility.outside, utility.weights, data.shares,
                           data.product_sizes, data.agent_sizes, logit, config)
        kernel_time += time.perf_counter() - start
        kernel_evaluations += int(fp.evaluations.sum())
        cells += utility.exp_mu.size
    size = 8 * cells
    source, target = np.ones(size // 8), np.empty(size // 8)
    copy_time, _ = best_time(lambda: np.copyto(target, source), 3)
    bandwidth = 2 * size / copy_time  # bytes read + written per second
    n = 1500
    a, b = np.random.default_rng(0).normal(size=(2, n, n))
    gemm_time, _ = best_time(lambda: a @ b, 3)
    rate = 2 * n**3 / gemm_time
    per_step = kernel_time / kernel_evaluations * problem.T  # one evaluation of every market
    print(f"{case['name']:>6} step: ours {per_step * 1e3:.1f} ms per share evaluation of all "
          f"markets in the compiled kernel (with its Anderson bookkeeping; numpy block shares "
          f"{step_time * 1e3:.1f} ms) "
          f"(exp(mu) {size / 2**20:.0f} MiB, computed in {exp_time * 1e3:.0f} ms); "
          f"DRAM floor for one read {size / bandwidth * 1e3:.1f} ms "
          f"({bandwidth / 1e9:.1f} GB/s by np.copyto); arithmetic floor "
          f"{2 * cells / rate * 1e3:.1f} ms (2 J I flops/market, dgemm {rate / 1e9:.1f} GFLOP/s)",
          flush=True)


def objective_row(case: dict[str, Any], repeat: int, with_pyblp: bool,
                  methods: list[str]) -> None:
    from blpdemand.solve.gmm import DemandObjective

    problem = case["ours"]
    layout, theta = problem.layout(case["sigma"], case["pi"])
    Z = problem.ZD_tilde
    W = np.linalg.inv(Z.T @ Z / problem.N)
    functions: dict[str, Callable[[], Any]] = {}
    for method in methods:
        config = contraction.FixedPointConfig(method=method)  # type: ignore[arg-type]
        functions[method] = (lambda config=config: DemandObjective(
            problem, layout, W, contraction=config).evaluate(theta, report=False))
        functions[method]()
    if with_pyblp:
        pyblp_case = pyblp_problem(case)
        functions["pyblp"] = lambda: pyblp_solve(pyblp_case, case)
    best = interleaved(functions, repeat)
    if with_pyblp:
        theirs_time, results = best["pyblp"]
        theirs_peak = peak_bytes(functions["pyblp"])
        theirs_rss = peak_rss_bytes(functions["pyblp"])
        print(f"{case['name']:>6} objective+gradient: pyblp    {theirs_time:.2f} s (solve at "
              f"fixed theta, Optimization('return')), Q = "
              f"{float(np.asarray(results.objective)):.6g}, peak {theirs_peak / 2**20:.0f} MiB "
              f"traced, {theirs_rss / 2**20:.0f} MiB resident", flush=True)
    for method in methods:
        ours_time, value = best[method]
        ours_peak = peak_bytes(functions[method])
        ours_rss = peak_rss_bytes(functions[method])
        line = (f"{case['name']:>6} objective+gradient: ours {method:>8} {ours_time:.2f} s "
                f"(Q = {value.objective:.6g}), peak {ours_peak / 2**20:.0f} MiB traced, "
                f"{ours_rss / 2**20:.0f} MiB resident")
        if with_pyblp:
            line += f"; ratio {theirs_time / ours_time:.1f}x"
        print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("problems", nargs="*", default=["nevo", "blp", "cars", "large"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-pyblp", action="store_true")
    parser.add_argument("--methods", nargs="+", default=["auto", "squarem"])
    args = parser.parse_args()
    builders = {"nevo": nevo, "blp": blp, "cars": cars, "large": large}
    for name in args.problems:
        case = builders[name]()
        contraction_row(case, args.repeat, not args.no_pyblp, args.methods)
        if name == "large":
            floors(case)
            objective_row(case, max(1, args.repeat - 1), not args.no_pyblp, args.methods)


if __name__ == "__main__":
    main()
