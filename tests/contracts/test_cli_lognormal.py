"""A spec's ``lognormal = ["prices"]`` (issue 20): the CLI's results.json equals the Python API's
estimate of the same problem (tolerance 0: the same computation), and the saved file rebuilds
the lognormal problem (``load_results`` with the data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import blpdemand as bd
from blpdemand.cli import main
from blpdemand.results.io import load_results

SPEC = """
[data]
products = "products.csv"
agents = "agents.csv"

[model]
linear = "1 + x1 + x2"
nonlinear = "0 + x1 + prices"
demographics = "1"
lognormal = ["prices"]

[instruments]
columns = ["w1", "w2", "w3", "w4"]

[parameters]
sigma = [[1.0, 0.0], [0.0, 0.5]]
pi = [[0.0], [0.1]]

[estimation]
starts = 0

[output]
plots = false
"""


def test_spec_lognormal_equals_python_api(tmp_path: Path) -> None:
    sim = bd.simulate(markets=40, products=5, sigma={"x1": 1.0, "prices": 0.5}, draws=50, rng=5, cost_shifters=4,
                      lognormal=True)
    sim.products.to_csv(tmp_path / "products.csv", index=False)
    assert sim.agents is not None
    sim.agents.to_csv(tmp_path / "agents.csv", index=False)
    (tmp_path / "spec.toml").write_text(SPEC)
    assert main(["estimate", str(tmp_path / "spec.toml"), "--output", str(tmp_path / "out")]) == 0
    problem = bd.Problem(sim.products, linear="1 + x1 + x2", nonlinear="0 + x1 + prices",
                         demographics="1", lognormal=["prices"], instruments=["w1", "w2", "w3", "w4"],
                         agents=sim.agents)
    live = bd.estimate(problem, sigma=np.diag([1.0, 0.5]), pi=[[0.0], [0.1]],
                       config=bd.EstimationConfig(starts=0))
    saved = load_results(tmp_path / "out" / "results.json")
    np.testing.assert_array_equal(saved.model["theta"], live.theta)
    np.testing.assert_array_equal(saved.parameters["estimate"].to_numpy(), live.estimates)
    rebuilt = load_results(tmp_path / "out" / "results.json", products=sim.products,
                           agents=sim.agents)
    assert rebuilt.problem.inputs["lognormal"] == {"prices": -1}
    np.testing.assert_allclose(rebuilt.beta, live.beta, rtol=1e-12)
