"""What a fresh process loads on the way to its first estimate (issue 23).

Behaviour, not time (timings are in benchmarks/bench_cold_start.py): ``import blpdemand`` loads
no third-party package, and estimating loads neither matplotlib, rich nor scipy.stats (0.3 s
of imports that only summaries, plots, Sobol/Halton draws and the terminal need). Each check
runs in a fresh interpreter, since this session has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys

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
