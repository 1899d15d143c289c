"""``blpdemand estimate`` with a [supply] section: the JSON's gamma equals the Python API's
joint estimate on the same data and options (rel 1e-10: the same computation), and a [supply]
section without a formula is an error naming it."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import blpdemand as bd
from blpdemand.cli import main
from blpdemand.errors import SpecificationError

SPEC = """
title = "joint"
[data]
products = "products.csv"
agents = "agents.csv"
[model]
linear = "1 + x1 + x2"
nonlinear = "0 + x1 + prices"
demographics = "0 + one"
[instruments]
columns = ["w1", "w2", "w1x1"]
[supply]
formula = "1 + w1 + w2"
instruments = ["x1", "x2"]
costs = "log"
conduct = "bertrand"
lower = 0.001
[parameters]
sigma = [[1.0, 0], [0, 0]]
pi = [[0], [-1.2]]
[estimation]
starts = 0
hessian = false
[output]
json = true
latex = false
html = false
plots = false
"""


def _data(folder: Path) -> tuple[object, object]:
    sim = bd.simulate(markets=30, products=4, firms=2, sigma={"x1": 1.0}, draws=50,
                      pricing="bertrand", rng=8)
    products = sim.products.copy()
    products["w1x1"] = products["w1"] * products["x1"]
    agents = sim.agents.copy()
    agents["one"] = 1.0
    products.to_csv(folder / "products.csv", index=False)
    agents.to_csv(folder / "agents.csv", index=False)
    return products, agents


def _run(tmp_path: Path, spec: str) -> dict[str, Any]:
    """Run ``blpdemand estimate`` on ``spec``; its results.json."""
    (tmp_path / "spec.toml").write_text(spec)
    out = tmp_path / "out"
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        assert main(["estimate", str(tmp_path / "spec.toml"), "--output", str(out)]) == 0
    record: dict[str, Any] = json.loads(next(out.glob("*.json")).read_text())
    return record


def test_supply_section_estimates_gamma_like_the_api(tmp_path: Path) -> None:
    products, agents = _data(tmp_path)
    record = _run(tmp_path, SPEC)
    rows = {r["name"]: r for r in record["parameters"]}
    problem = bd.Problem(products, linear="1 + x1 + x2", nonlinear="0 + x1 + prices",
                         demographics="0 + one", agents=agents, instruments=["w1", "w2", "w1x1"],
                         supply="1 + w1 + w2", supply_instruments=["x1", "x2"], costs="log",
                         costs_bounds=(0.001, None))
    api = bd.estimate(problem, sigma=np.diag([1.0, 0.0]), pi=np.c_[[0.0, -1.2]],
                      config=bd.EstimationConfig(starts=0, hessian=False))
    cli = np.array([rows[f"gamma[{n}]"]["estimate"] for n in ("1", "w1", "w2")])
    assert all(rows[f"gamma[{n}]"]["group"] == "gamma" for n in ("1", "w1", "w2"))
    np.testing.assert_allclose(cli, api.gamma, rtol=1e-10)


def test_supply_section_needs_a_formula(tmp_path: Path) -> None:
    from blpdemand.cli.spec import parse_spec

    with pytest.raises(SpecificationError, match=r"\[supply\].*formula"):
        parse_spec({"data": {"products": "p.csv"}, "model": {"linear": "1"},
                    "supply": {"costs": "log"}}, tmp_path / "s.toml")


def test_supply_section_covariance_restrictions_like_the_api(tmp_path: Path) -> None:
    # [supply] covariance = [...] and covariance_mean: the same estimate as the API's
    # covariance_restrictions / covariance_moments_mean (rel 1e-10: the same computation)
    products, agents = _data(tmp_path)
    spec = SPEC.replace("lower = 0.001", 'lower = 0.001\ncovariance = ["1", "x1"]\n'
                        "covariance_mean = 0.01")
    record = _run(tmp_path, spec)
    rows = {r["name"]: r for r in record["parameters"]}
    problem = bd.Problem(products, linear="1 + x1 + x2", nonlinear="0 + x1 + prices",
                         demographics="0 + one", agents=agents, instruments=["w1", "w2", "w1x1"],
                         supply="1 + w1 + w2", supply_instruments=["x1", "x2"], costs="log",
                         costs_bounds=(0.001, None), covariance_restrictions=["1", "x1"],
                         covariance_moments_mean=0.01)
    api = bd.estimate(problem, sigma=np.diag([1.0, 0.0]), pi=np.c_[[0.0, -1.2]],
                      config=bd.EstimationConfig(starts=0, hessian=False))
    cli = np.array([rows[n]["estimate"] for n in api.names])
    np.testing.assert_allclose(cli, api.estimates, rtol=1e-10)
    assert record["model"]["covariance_restrictions"] == ["1", "x1"]


def test_supply_section_covariance_entries_are_strings(tmp_path: Path) -> None:
    from blpdemand.cli.spec import parse_spec

    with pytest.raises(SpecificationError, match="covariance"):
        parse_spec({"data": {"products": "p.csv"}, "model": {"linear": "1"},
                    "supply": {"formula": "1 + w1", "covariance": [1]}}, tmp_path / "s.toml")
