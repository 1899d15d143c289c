"""A spec's ``nesting`` (issue 20): ``blpdemand estimate`` of a random-coefficients nested logit
writes the Python API's estimate (tolerance 0: the same computation), rho among the
parameters, and the saved file rebuilds it (``load_results`` with the data)."""

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
linear = "1 + prices + x1 + x2"
nonlinear = "0 + x1"
nesting = "nesting_ids"

[instruments]
columns = ["w1", "w2", "w3", "w4"]

[parameters]
sigma = [[0.6]]
rho = 0.5

[estimation]
starts = 0

[output]
plots = false
"""


def test_spec_nesting_equals_python_api(tmp_path: Path) -> None:
    sim = bd.simulate(markets=30, products=6, sigma={"x1": 0.5}, draws=40, rng=2,
                      cost_shifters=4, nests=2, nesting_rho=0.5)
    products = sim.products
    assert sim.agents is not None
    products.to_csv(tmp_path / "products.csv", index=False)
    sim.agents.to_csv(tmp_path / "agents.csv", index=False)
    (tmp_path / "spec.toml").write_text(SPEC)
    assert main(["estimate", str(tmp_path / "spec.toml"), "--output", str(tmp_path / "out")]) == 0
    problem = bd.Problem(products, linear="1 + prices + x1 + x2", nonlinear="0 + x1",
                         nesting="nesting_ids", instruments=["w1", "w2", "w3", "w4"],
                         agents=sim.agents)
    live = bd.estimate(problem, sigma=[[0.6]], rho=0.5, config=bd.EstimationConfig(starts=0))
    saved = load_results(tmp_path / "out" / "results.json")
    assert "rho" in saved.parameters.index
    np.testing.assert_array_equal(saved.parameters["estimate"].to_numpy(), live.estimates)
    rebuilt = load_results(tmp_path / "out" / "results.json", products=products,
                           agents=sim.agents)
    np.testing.assert_allclose(rebuilt.theta, live.theta, rtol=0)
    np.testing.assert_allclose(rebuilt.beta, live.beta, rtol=1e-12)
