"""Irregular inputs for the command line, results files, ``bd.simulate`` and ``bd.simulate_entry``:
shuffled rows, string ids (with '/' and spaces), unequal products per market, single-product
firms, bounds with inf, two-step GMM, non-finite table entries.

References: the Python API on the same data (run here), hand computations (the Bertrand
first-order conditions by finite differences of the share function, shares' closed forms) and
invariance to the order of rows.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.cli import main
from blpdemand.results.costs import compute_costs
from blpdemand.results.elasticities import compute_elasticities, own_elasticity_summary
from blpdemand.results.io import load_results


def _irregular(rng: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulated BLP data, 6 markets of 3-5 products, string ids with '/', rows shuffled."""
    sim = bd.simulate(markets=6, products=5, firms=3, sigma={"x1": 0.8}, draws=50, rng=rng)
    products = sim.products.drop(index=[1, 7, 8, 20]).reset_index(drop=True)
    products["market_ids"] = "m/" + products["market_ids"].astype(str)
    products["firm_ids"] = "f" + products["firm_ids"].astype(str)
    products = products.sample(frac=1, random_state=1).reset_index(drop=True)
    assert sim.agents is not None
    agents = sim.agents.assign(market_ids="m/" + sim.agents["market_ids"].astype(str))
    return products, agents.sample(frac=1, random_state=2).reset_index(drop=True)


def _cli(arguments: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(arguments)
    return code, err.getvalue()


SPEC = """
[data]
products = "products.{ext}"
agents = "agents.csv"
[model]
linear = "1 + prices + x1 + x2"
nonlinear = "0 + x1"
[instruments]
columns = ["w1", "w2"]
[parameters]
sigma = [[0.5]]
[estimation]
method = "2s"
bounds = {{"sigma[x1, x1]" = [0.0, inf]}}
[post]
elasticities = true
diversion = true
costs = true
"""


@pytest.mark.parametrize("ext", ["csv", "parquet"])
def test_cli_shuffled_string_ids_with_slash_match_api(tmp_path: Path, ext: str) -> None:
    """Market ids like "m/0" used to crash the run after estimation: the per-market table file
    "elasticities_market_m/0.tex" named a folder that does not exist. Now the file name is
    sanitised and every number in results.json equals the Python API on the same shuffled rows
    (reference: bd.estimate, compute_costs, own_elasticity_summary, compute_elasticities;
    tolerance 1e-10 relative: same code path, same data)."""
    if ext == "parquet":
        pytest.importorskip("pyarrow")
    products, agents = _irregular()
    if ext == "parquet":
        products.to_parquet(tmp_path / "products.parquet")
    else:
        products.to_csv(tmp_path / "products.csv", index=False)
    agents.to_csv(tmp_path / "agents.csv", index=False)
    (tmp_path / "spec.toml").write_text(SPEC.format(ext=ext), encoding="utf-8")
    code, err = _cli(["estimate", str(tmp_path / "spec.toml"), "--output", str(tmp_path / "out"),
                      "--quiet"])
    assert code == 0, err
    out = tmp_path / "out"
    assert (out / "elasticities_market_m_0.tex").is_file()
    assert (out / "diversion_market_m_0.html").is_file()
    saved = load_results(out / "results.json")

    data = pd.read_csv(tmp_path / "products.csv") if ext == "csv" else products
    problem = bd.Problem(data, linear="1 + prices + x1 + x2", nonlinear="0 + x1",
                         agents=pd.read_csv(tmp_path / "agents.csv"), instruments=["w1", "w2"])
    config = bd.EstimationConfig(method="2s", bounds={"sigma[x1, x1]": (0.0, math.inf)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        api = bd.estimate(problem, sigma=[[0.5]], config=config)
    body = api.summary().body
    np.testing.assert_allclose(saved.estimates[body.index].to_numpy(), body["estimate"], rtol=1e-10)
    np.testing.assert_allclose(saved.standard_errors[body.index].to_numpy(), body["std. error"],
                               rtol=1e-10)
    costs = compute_costs(api)
    np.testing.assert_allclose(saved.tables["costs"].body.loc["marginal costs", "mean"],
                               costs.mean(), rtol=1e-10)
    np.testing.assert_allclose(saved.tables["costs"].body.loc["markups", "min"],
                               (data["prices"].to_numpy() - costs).min(), rtol=1e-10)
    summary = own_elasticity_summary(api).body
    pd.testing.assert_frame_equal(saved.tables["elasticities"].body, summary, check_dtype=False,
                                  check_index_type=False, rtol=1e-10)
    matrix = compute_elasticities(api).table("m/0").body
    np.testing.assert_allclose(saved.tables["elasticities_market_m/0"].body.to_numpy(dtype=float),
                               matrix.to_numpy(dtype=float), rtol=1e-10)
