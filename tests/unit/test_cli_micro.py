"""``[[micro]]`` in a spec: the CLI estimates with the survey statistics of a CSV.

Reference: the same problem, moments and options through the Python API (bd.micro and
bd.estimate), run in the test: the CLI is a thin adapter, so the estimates are equal (rel
1e-10) and the report holds the micro-moments table. Bad entries get named errors.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.cli import main
from blpdemand.errors import SpecificationError

sys.path.insert(0, str(Path(__file__).parents[1] / "simulation"))
from micro_data import PI, SIGMA, simulate_micro, survey

SPEC = """
[data]
products = "products.csv"
agents = "agents.csv"
micro = "survey.csv"

[model]
linear = "1 + prices + x1"
nonlinear = "0 + prices + x1"
demographics = "income"

[instruments]
columns = ["w", "w2", "rival_x1", "rival_w"]

[parameters]
sigma = [[0, 0], [0, 0.8]]
pi = [[0.6], [0]]

[estimation]
starts = 0
method = "2s"

[[micro]]
name = "Cov(income, price | buyer)"
kind = "covariance"
variables = ["income", "prices"]
given = "inside"
survey = "buyers"
observations = 3000

[[micro]]
name = "E[income | buyer]"
kind = "mean"
variable = "income"
given = "inside"
survey = "buyers"
"""


def _write(tmp_path: Path, spec: str) -> tuple[Path, dict[str, float]]:
    data = simulate_micro(markets=20, products=6, agents=150, rng=7)
    statistics = survey(data, 3000)
    data.products.to_csv(tmp_path / "products.csv", index=False)
    data.agents.to_csv(tmp_path / "agents.csv", index=False)
    pd.DataFrame({"name": ["Cov(income, price | buyer)", "E[income | buyer]"],
                  "value": [statistics["cov"], statistics["mean"]]}).to_csv(
        tmp_path / "survey.csv", index=False)
    (tmp_path / "spec.toml").write_text(spec)
    return tmp_path / "spec.toml", statistics


def test_micro_spec_equals_the_python_api(tmp_path: Path) -> None:
    path, statistics = _write(tmp_path, SPEC)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["estimate", str(path), "--output", str(tmp_path / "out"), "--quiet"]) == 0
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    buyers = bd.micro.Survey("buyers", 3000)
    moments = [bd.micro.covariance("income", "prices", given=bd.micro.inside(),
                                   value=statistics["cov"], survey=buyers),
               bd.micro.mean("income", given=bd.micro.inside(), value=statistics["mean"],
                             survey=buyers)]
    products = pd.read_csv(tmp_path / "products.csv")
    problem = bd.Problem(products, linear="1 + prices + x1", nonlinear="0 + prices + x1",
                         demographics="income", agents=pd.read_csv(tmp_path / "agents.csv"),
                         instruments=["w", "w2", "rival_x1", "rival_w"], micro=moments)
    ours = bd.estimate(problem, sigma=np.diag([0.0, SIGMA]), pi=[[PI], [0.0]],
                       config=bd.EstimationConfig(starts=0, method="2s"))
    assert "micro" in saved["tables"]
    estimates = {p["name"]: p["estimate"] for p in saved["parameters"]}
    np.testing.assert_allclose([estimates[n] for n in ours.layout.names], ours.theta,
                               rtol=1e-10)
    assert (tmp_path / "out" / "micro.html").exists()
    # a results file names its micro moments but cannot hold them (code): a named refusal
    assert saved["model"]["micro"] == ["Cov(income, price | buyer)", "E[income | buyer]"]
    with pytest.raises(SpecificationError, match="micro"):
        bd.load_results(tmp_path / "out" / "results.json", products=products,
                        agents=pd.read_csv(tmp_path / "agents.csv"))


@pytest.mark.parametrize("entry, culprit", [
    ('kind = "median"\nvariable = "income"\nvalue = 1.0\nobservations = 10', "median"),
    ('kind = "mean"\nvalue = 1.0\nobservations = 10', "variable"),
    ('kind = "mean"\nvariable = "incme"\nvalue = 1.0\nobservations = 10', "incme"),
    ('kind = "mean"\nvariable = "income"\nvalue = 1.0', "observations"),
])
def test_bad_micro_entries_are_named(tmp_path: Path, entry: str, culprit: str) -> None:
    spec = SPEC[:SPEC.index("[[micro]]")] + "[[micro]]\nname = \"m\"\n" + entry + "\n"
    path, _ = _write(tmp_path, spec)
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        assert main(["estimate", str(path), "--output", str(tmp_path / "out"), "--quiet"]) == 2
    assert culprit in err.getvalue()
