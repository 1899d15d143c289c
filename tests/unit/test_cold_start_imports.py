"""What a fresh process loads and compiles on the way to its first estimate (issue 23).

Behaviour, not time (timings are in benchmarks/bench_cold_start.py): ``import blpdemand`` loads
no third-party package, and estimating loads neither matplotlib, rich nor scipy.stats (0.3 s
of imports that only summaries, plots, Sobol/Halton draws and the terminal need); these checks
run in a fresh interpreter, since this session has imported everything already. Each compiled
kernel has exactly one version (its explicit signature), which read-only, Fortran-ordered or
int32 inputs reuse instead of compiling another (seconds each, once per cache); the kernels
built ahead of time at install have one by construction (``tests/unit/test_ahead_of_time.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from blpdemand.model import adjoint_compiled
from blpdemand.solve import anderson_compiled
from blpdemand.solve.fixed_point import FixedPointConfig

HEAVY = ("numpy", "pandas", "scipy", "numba", "formulaic", "pyarrow", "matplotlib", "rich")


def _loaded(code: str) -> set[str]:
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", script], capture_output=True,
                          text=True, check=True)
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_import_loads_no_third_party_package() -> None:
    loaded = _loaded("import blpdemand")
    assert not loaded & set(HEAVY)


def test_estimate_loads_no_plotting_terminal_or_scipy_stats() -> None:
    loaded = _loaded(
        "import blpdemand as bd\n"
        "sim = bd.simulate(markets=10, products=3, sigma={'x1': 1.0}, draws=20, rng=0)\n"
        "problem = bd.Problem(sim.products, linear=sim.linear, nonlinear=sim.nonlinear,\n"
        "                     agents=sim.agents, instruments=list(sim.instruments))\n"
        "bd.estimate(problem, sigma=[0.5], config=bd.EstimationConfig(starts=0))\n")
    assert "blpdemand.solve.anderson_compiled" in loaded  # the compiled path was taken
    assert not loaded & {"matplotlib", "rich", "scipy.stats"}


def test_kernels_have_one_version_for_every_input_layout() -> None:
    rng = np.random.default_rng(0)
    exp_mu, outside = rng.random((3, 4, 5)), rng.random((3, 5)) + 0.5
    weights, shares = np.full((3, 5), 0.2), np.full((3, 4), 0.1)
    sizes, agents, x0 = np.full(3, 4), np.full(3, 5), np.zeros((3, 4))
    x2, variables, index = rng.random((3, 4, 1)), rng.random((3, 5, 1)), np.zeros(1, np.int64)

    def solve(*a: np.ndarray) -> tuple[np.ndarray, ...]:
        fp = anderson_compiled.solve_markets(*a, FixedPointConfig())
        gradient, ok = adjoint_compiled.adjoint_markets(
            a[0], a[1], a[2], np.exp(fp.x), x2, variables, index, index, np.ones((3, 4)), a[4],
            a[5])
        return fp.x, fp.codes, fp.evaluations, fp.change, gradient, ok

    expected = solve(exp_mu, outside, weights, shares, sizes, agents, x0)
    frozen = [a.copy() for a in (exp_mu, outside, weights, shares, sizes, agents, x0)]
    for a in frozen:
        a.setflags(write=False)
    other = (np.asfortranarray(exp_mu), outside, weights, shares, sizes.astype(np.int32),
             agents.astype(np.int32), x0)
    for inputs in (frozen, other):
        for got, want in zip(solve(*inputs), expected):
            np.testing.assert_array_equal(got, want)  # the same machine code: bit for bit
    for kernel in (anderson_compiled._anderson_markets, adjoint_compiled._adjoint):
        # numba's JIT keeps its compiled versions; the kernels built at install have one each
        assert len(getattr(kernel, "signatures", ("built ahead of time",))) == 1
