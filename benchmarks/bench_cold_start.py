"""Cold start (issue 23): what a fresh Python process pays before its first estimate.

    python benchmarks/bench_cold_start.py                 # everything but the first-ever compile
    python benchmarks/bench_cold_start.py --runs 5 --compile
    python benchmarks/bench_cold_start.py --no-cli        # library only

Every number comes from fresh subprocesses (``--runs`` of each, median printed, min-max beside
it); the machine is shared, so compare medians of the same run. What is measured:

(a) ``import blpdemand`` (and a bare ``python -c pass`` for scale).
(b) the docstring problem, ``bd.simulate(markets=40, products=5, sigma={"x1": 1.0}, draws=50,
    rng=0)``, estimated from sigma=[0.5] with ``EstimationConfig(starts=0)``, twice in one
    process after ``simulate`` (so numpy and pandas are loaded): the first ``bd.estimate`` call
    minus the second, and the whole first user path (resolving ``bd.Problem``, ``bd.estimate``
    and ``bd.EstimationConfig``, building the Problem, estimating) minus the second.
(c) the same path taken apart, in this order, each step timed in one process: imports of
    scipy.optimize, scipy.stats, formulaic, numba (what is still missing when each runs), the
    blpdemand modules behind the API, numba's one-time target initialisation (registries,
    NRT; paid by the first compiled call of any kernel), importing the kernel modules and the
    first call of each kernel (cache hits counted by the dispatcher's ``stats``; kernels with an
    explicit signature load at import, so the import step carries their load), the first and
    a second Problem() (formulaic), with ``absorb=`` (pyhdfe), then the estimate itself. And
    ``python -X importtime`` of the whole first path, self time summed by top-level package,
    plus which of matplotlib, rich, pyarrow and scipy.stats the path imported.
(d) wall time of ``blpdemand --help``, ``blpdemand demo`` and ``blpdemand estimate
    examples/nevo.toml`` (BLPDEMAND_DATA defaults to /work/shared/data; output to a temp dir).
(e) ``--compile``: the first-ever compile of numba's JIT, with NUMBA_CACHE_DIR pointing at an
    empty directory (the source tree's cache is not touched), then a second process loading that
    cache; and the install's ahead-of-time build of the kernels (``setup.py``) into a temporary
    directory.

The kernels run as an installed package runs them: built ahead of time at install where that
build is current (``blpdemand._compiled``), which the first line says; ``--jit`` runs (a), (b)
and (d) with ``BLPDEMAND_JIT=1`` instead (numba's JIT, loading its disk cache). (c) takes numba's
steps apart and always runs the JIT.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = os.environ.get("BLPDEMAND_DATA", "/work/shared/data")
T = time.perf_counter

SETUP = """
import warnings
warnings.simplefilter("ignore")
import blpdemand as bd
sim = bd.simulate(markets=40, products=5, sigma={"x1": 1.0}, draws=50, rng=0)
"""
FIRST = """
problem = bd.Problem(sim.products, linear=sim.linear, nonlinear=sim.nonlinear,
                     agents=sim.agents, instruments=list(sim.instruments))
results = bd.estimate(problem, sigma=[0.5], config=bd.EstimationConfig(starts=0))
"""
WATCHED = ("matplotlib", "rich", "pyarrow", "scipy.stats", "numba", "formulaic", "pyhdfe")
PACKAGES = ("scipy", "numba", "llvmlite", "formulaic", "narwhals", "wrapt", "pandas", "pyarrow",
            "numpy", "pyhdfe", "matplotlib", "rich", "blpdemand")


# --------------------------------------------------------------------------------- children

def _problem(bd: Any, sim: Any, **extra: Any) -> Any:
    return bd.Problem(sim.products, linear=sim.linear, nonlinear=sim.nonlinear,
                      agents=sim.agents, instruments=list(sim.instruments), **extra)


def child_estimate() -> dict[str, Any]:
    """(b): first vs second estimate in one process."""
    import warnings
    warnings.simplefilter("ignore")
    import blpdemand as bd
    sim = bd.simulate(markets=40, products=5, sigma={"x1": 1.0}, draws=50, rng=0)
    start = T()
    problem_cls, estimate, config_cls = bd.Problem, bd.estimate, bd.EstimationConfig
    api = T() - start
    del problem_cls
    times = []
    for _ in range(2):
        start = T()
        problem = _problem(bd, sim)
        built = T()
        estimate(problem, sigma=[0.5], config=config_cls(starts=0))
        times.append((built - start, T() - built))
    (p1, e1), (p2, e2) = times
    return {"api imports": api, "Problem() 1": p1, "estimate 1": e1, "Problem() 2": p2,
            "estimate 2": e2, "estimate gap": e1 - e2, "path gap": api + p1 + e1 - p2 - e2,
            "modules": [m for m in WATCHED if m in sys.modules]}


def _tiny_kernel_inputs() -> tuple[Any, ...]:
    import numpy as np
    rng = np.random.default_rng(0)
    markets, products, agents = 3, 4, 5
    exp_mu = rng.random((markets, products, agents))
    outside = np.ones((markets, agents))
    weights = np.full((markets, agents), 1.0 / agents)
    shares = np.full((markets, products), 0.1)
    product_sizes = np.full(markets, products)
    agent_sizes = np.full(markets, agents)
    x0 = np.zeros((markets, products))
    return exp_mu, outside, weights, shares, product_sizes, agent_sizes, x0


def _hits(dispatcher: Any) -> str:
    stats = getattr(dispatcher, "stats", None)
    if stats is None:
        return "?"
    return f"{sum(stats.cache_hits.values())} hit / {sum(stats.cache_misses.values())} miss"


def child_breakdown() -> dict[str, Any]:
    """(c): the first path taken apart, one step at a time."""
    out: dict[str, Any] = {}

    def step(name: str, action: Callable[[], Any]) -> Any:
        start = T()
        value = action()
        out[name] = T() - start
        return value

    import importlib
    import warnings
    warnings.simplefilter("ignore")
    import blpdemand as bd
    sim = bd.simulate(markets=40, products=5, sigma={"x1": 1.0}, draws=50, rng=0)
    for module in ("scipy.optimize", "scipy.stats", "formulaic", "numba"):
        step(f"import {module}", lambda m=module: importlib.import_module(m))
    step("import blpdemand API (Problem, estimate, config)",
         lambda: (bd.Problem, bd.estimate, bd.EstimationConfig))

    def refresh() -> None:
        from numba.core.registry import cpu_target  # numba internals: a benchmark only
        cpu_target.target_context.refresh()

    step("numba target initialisation (refresh)", refresh)
    ac = step("import solve.anderson_compiled",
              lambda: importlib.import_module("blpdemand.solve.anderson_compiled"))
    ad = importlib.import_module("blpdemand.model.adjoint_compiled")
    from blpdemand.solve.fixed_point import FixedPointConfig
    exp_mu, outside, weights, shares, product_sizes, agent_sizes, x0 = _tiny_kernel_inputs()
    config = FixedPointConfig()
    for label in ("first", "second"):
        step(f"anderson kernel, {label} call", lambda: ac.solve_markets(
            exp_mu, outside, weights, shares, product_sizes, agent_sizes, x0, config))
    import numpy as np
    x2, variables = np.ones((3, 4, 1)), np.ones((3, 5, 1))
    index = np.zeros(1, np.int64)
    for label in ("first", "second"):
        step(f"adjoint kernel, {label} call", lambda: ad.adjoint_markets(
            exp_mu, outside, weights, np.ones((3, 4)), x2, variables, index, index,
            np.ones((3, 4)), product_sizes, agent_sizes))
    out["cache"] = (f"anderson {_hits(ac._anderson_markets)}, "
                    f"adjoint {_hits(ad._adjoint)}")
    for label in ("first", "second"):
        problem = step(f"Problem(), {label} (formulaic)", lambda: _problem(bd, sim))
    for label in ("first", "second"):
        step(f"Problem(absorb=), {label} (pyhdfe)",
             lambda: _problem(bd, sim, absorb="C(product_ids)"))
    for label in ("first", "second"):
        step(f"estimate, {label} (kernels loaded)", lambda: bd.estimate(
            problem, sigma=[0.5], config=bd.EstimationConfig(starts=0)))
    return out


def child_build() -> dict[str, Any]:
    """(e): the install's ahead-of-time build (setup.py's build_kernels) into a temporary path."""
    import sysconfig

    source = (ROOT / "setup.py").read_text().replace("setup(ext_modules", "dict(ext_modules")
    namespace: dict[str, Any] = {"__file__": str(ROOT / "setup.py"), "__name__": "build"}
    exec(compile(source, "setup.py", "exec"), namespace)  # noqa: S102 (our own setup.py)
    with tempfile.TemporaryDirectory() as folder:
        start = T()
        count = namespace["build_kernels"](
            Path(folder) / ("_kernels" + sysconfig.get_config_var("EXT_SUFFIX")))
        return {"ahead-of-time build": T() - start, "kernels": count}


def child_which() -> dict[str, Any]:
    """Where this process's kernels come from."""
    from blpdemand._compiled import ahead_of_time

    built = ahead_of_time()
    return {"kernels": "numba's JIT" if built is None else f"built at install ({built.__file__})"}


def child_compile() -> dict[str, Any]:
    """(e): first call of each kernel, module import included (NUMBA_CACHE_DIR set by parent)."""
    import importlib

    import numpy as np
    start = T()
    import numba  # noqa: F401
    out: dict[str, Any] = {"import numba": T() - start}
    exp_mu, outside, weights, shares, product_sizes, agent_sizes, x0 = _tiny_kernel_inputs()
    start = T()
    ac = importlib.import_module("blpdemand.solve.anderson_compiled")
    from blpdemand.solve.fixed_point import FixedPointConfig
    ac.solve_markets(exp_mu, outside, weights, shares, product_sizes, agent_sizes, x0,
                     FixedPointConfig())
    out["anderson: import + first call"] = T() - start
    start = T()
    ad = importlib.import_module("blpdemand.model.adjoint_compiled")
    index = np.zeros(1, np.int64)
    ad.adjoint_markets(exp_mu, outside, weights, np.ones((3, 4)), np.ones((3, 4, 1)),
                       np.ones((3, 5, 1)), index, index, np.ones((3, 4)), product_sizes,
                       agent_sizes)
    out["adjoint: import + first call"] = T() - start
    out["cache"] = f"anderson {_hits(ac._anderson_markets)}, adjoint {_hits(ad._adjoint)}"
    return out


CHILDREN: dict[str, Callable[[], dict[str, Any]]] = {
    "estimate": child_estimate, "breakdown": child_breakdown, "compile": child_compile,
    "build": child_build, "which": child_which}


# ---------------------------------------------------------------------------------- parent

JIT = {"BLPDEMAND_JIT": "0"}  # main sets "1" for --jit


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("BLPDEMAND_DATA", DATA)
    env.update(JIT)
    env.update(extra)
    return env


def _child(name: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--child", name], capture_output=True,
                          text=True, env=env or _env(), cwd=ROOT, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _wall(command: Sequence[str], env: dict[str, str] | None = None) -> float:
    start = T()
    subprocess.run(list(command), capture_output=True, env=env or _env(), cwd=ROOT, check=True)
    return T() - start


def _importtime() -> tuple[dict[str, float], float]:
    """Self import time (s) by top-level package over SETUP + FIRST, and the total."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", SETUP + FIRST],
                          capture_output=True, text=True, env=_env(), cwd=ROOT, check=True)
    sums: dict[str, float] = {}
    total = 0.0
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|\s*(\S+)", line)
        if match:
            own = int(match.group(1)) / 1e6
            top = match.group(3).split(".")[0]
            sums[top] = sums.get(top, 0.0) + own
            total += own
    return sums, total


def _row(name: str, values: Sequence[float]) -> str:
    if not values:
        return f"| {name} | - | - |"
    return (f"| {name} | {statistics.median(values):.3f} | "
            f"{min(values):.3f}-{max(values):.3f} |")


def _collect(runs: list[dict[str, Any]]) -> dict[str, list[float]]:
    keys: dict[str, list[float]] = {}
    for run in runs:
        for key, value in run.items():
            if isinstance(value, float):
                keys.setdefault(key, []).append(value)
    return keys


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per measurement")
    parser.add_argument("--compile", action="store_true", help="also the first-ever compile")
    parser.add_argument("--no-cli", action="store_true", help="skip the CLI wall times")
    parser.add_argument("--jit", action="store_true", help="numba's JIT for (a), (b), (d)")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child]()))
        return

    n = args.runs
    JIT["BLPDEMAND_JIT"] = "1" if args.jit else "0"
    print(f"cold start, medians of {n} fresh processes (min-max), seconds; {sys.version.split()[0]}")
    print(f"kernels: {_child('which')['kernels']}")
    print("\n| measurement | median | range |\n| --- | ---: | ---: |")
    bare = [_wall([sys.executable, "-c", "pass"]) for _ in range(n)]
    imported = [_wall([sys.executable, "-c", "import blpdemand"]) for _ in range(n)]
    print(_row("python -c pass", bare))
    print(_row("python -c 'import blpdemand'", imported))
    print(_row("(a) import blpdemand (difference)", [b - a for a, b in zip(bare, imported)]))

    estimates = [_child("estimate") for _ in range(n)]
    for key, values in _collect(estimates).items():
        print(_row(f"(b) {key}", values))
    print(f"\nimported by the first path: {', '.join(estimates[-1]['modules'])}")

    print("\n| (c) step, in order, one process | median | range |\n| --- | ---: | ---: |")
    breakdowns = [_child("breakdown", _env(BLPDEMAND_JIT="1")) for _ in range(n)]
    for key, values in _collect(breakdowns).items():
        print(_row(key, values))
    print(f"\nkernel cache: {breakdowns[-1]['cache']}")

    profiles = [_importtime() for _ in range(n)]
    print("\n| (c) self import time by package, simulate + first estimate | median | range |\n"
          "| --- | ---: | ---: |")
    for package in PACKAGES:
        print(_row(package, [sums.get(package, 0.0) for sums, _ in profiles]))
    print(_row("all imports", [total for _, total in profiles]))

    if not args.no_cli:
        exe = shutil.which("blpdemand")
        cli = [exe] if exe else [sys.executable, "-m", "blpdemand"]
        print("\n| (d) CLI wall time | median | range |\n| --- | ---: | ---: |")
        print(_row("blpdemand --help", [_wall([*cli, "--help"]) for _ in range(n)]))
        print(_row("blpdemand demo", [_wall([*cli, "demo"]) for _ in range(n)]))
        nevo = []
        for _ in range(n):
            with tempfile.TemporaryDirectory() as out:
                nevo.append(_wall([*cli, "estimate", "examples/nevo.toml", "--output", out]))
        print(_row("blpdemand estimate examples/nevo.toml", nevo))

    if args.compile:
        print("\n| (e) first-ever compile (empty NUMBA_CACHE_DIR) | median | range |\n"
              "| --- | ---: | ---: |")
        cold, warm = [], []
        for _ in range(n):
            with tempfile.TemporaryDirectory() as cache:
                jit = _env(NUMBA_CACHE_DIR=cache, BLPDEMAND_JIT="1")
                cold.append(_child("compile", jit))
                warm.append(_child("compile", jit))
        for label, runs in (("compile", cold), ("then cached", warm)):
            for key, values in _collect(runs).items():
                print(_row(f"{label}: {key}", values))
            print(f"| {label}: cache | {runs[-1]['cache']} | |")
        builds = [_child("build") for _ in range(n)]
        print(_row(f"ahead-of-time build of {builds[-1]['kernels']} kernels (the install's)",
                   [b["ahead-of-time build"] for b in builds]))


if __name__ == "__main__":
    main()
