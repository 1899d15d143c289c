"""Contract: bad DATA given to the command line ends with exit status 2 and ONE line on stderr
naming the culprit (column, market, product), never a traceback or an "internal error"; row
order of the CSV does not change results.json.

(Bad specification files are covered in test_cli_errors.py; this file breaks the data.)
Reference: each case breaks one thing in the CSV by hand; the row-order case compares two runs
of the same data (1e-10).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from blpdemand.cli import main
from blpdemand.model.simulation import simulate
from blpdemand.results.io import load_results

LOGIT = """
[data]
products = "{products}"

[model]
linear = "prices + x1 + x2"

[instruments]
columns = ["w1", "w2"]
"""

BLP = """
[data]
products = "{products}"
agents = "{agents}"

[model]
linear = "1 + prices + x1 + x2"
nonlinear = "0 + x1"

[instruments]
columns = ["w1", "w2"]

[parameters]
sigma = [[0.5]]

[estimation]
hessian = false
"""


@pytest.fixture(scope="module")
def sim() -> object:
    return simulate(markets=10, products=4, sigma={"x1": 1.0}, draws=20, rng=11)


def _run(tmp_path: Path, capsys: pytest.CaptureFixture[str], products: pd.DataFrame,
         agents: pd.DataFrame | None = None, command: str = "logit") -> tuple[int, str, Path]:
    products.to_csv(tmp_path / "products.csv", index=False)
    if agents is not None:
        agents.to_csv(tmp_path / "agents.csv", index=False)
    text = (LOGIT if command == "logit" else BLP).format(products=tmp_path / "products.csv",
                                                         agents=tmp_path / "agents.csv")
    (tmp_path / "spec.toml").write_text(text)
    out = tmp_path / "out"
    code = main([command, str(tmp_path / "spec.toml"), "--output", str(out), "--quiet"])
    captured = capsys.readouterr()
    return code, captured.err, out


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning")]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    return lines[0]


def _set(frame: pd.DataFrame, row: int, column: str, value: object) -> pd.DataFrame:
    out = frame.copy()
    out[column] = out[column].astype(np.float64)
    out.loc[out.index[row], column] = value
    return out


@pytest.mark.parametrize("command", ["logit", "estimate"])
@pytest.mark.parametrize("case, pattern", [
    ("missing_shares", "'shares'"),
    ("nan_prices", "'prices'.*NaN"),
    ("inf_instrument", "'w2'.*NaN/inf"),
    ("zero_share", r"'shares'.*\(0, 1\).*market 3"),
    ("full_market", "market 5 sum to 1.2"),
    ("duplicate", "product 1 appears 2 times in market 0"),
    ("empty", "empty"),
    ("collinear", "'w2'"),
])
def test_bad_products(tmp_path: Path, capsys: pytest.CaptureFixture[str], sim: object,
                      command: str, case: str, pattern: str) -> None:
    products = sim.products.drop(columns="xi")  # type: ignore[attr-defined]
    if case == "missing_shares":
        products = products.drop(columns="shares")
    elif case == "nan_prices":
        products = _set(products, 7, "prices", np.nan)
    elif case == "inf_instrument":
        products = _set(products, 7, "w2", np.inf)
    elif case == "zero_share":
        products = _set(products, 13, "shares", 0.0)
    elif case == "full_market":
        products.loc[products["market_ids"] == 5, "shares"] = 0.3
    elif case == "duplicate":
        products.loc[products.index[2], "product_ids"] = 1
    elif case == "empty":
        products = products.iloc[:0]
    elif case == "collinear":
        products["w2"] = 3.0 * products["w1"]
    code, err, _ = _run(tmp_path, capsys, products, sim.agents, command)  # type: ignore[attr-defined]
    line = _one_line(err)
    assert code == 2, err
    assert re.search(pattern, line), line


@pytest.mark.parametrize("case, pattern", [
    ("no_agents", r"market\(s\) 4 have products but no agents"),
    ("nan_node", "'nodes0' of agent data.*market"),
    ("zero_weight", "weights must be positive"),
])
def test_bad_agents(tmp_path: Path, capsys: pytest.CaptureFixture[str], sim: object, case: str,
                    pattern: str) -> None:
    agents = sim.agents  # type: ignore[attr-defined]
    if case == "no_agents":
        agents = agents[agents["market_ids"] != 4]
    elif case == "nan_node":
        agents = _set(agents, 30, "nodes0", np.nan)
    elif case == "zero_weight":
        agents = _set(agents, 30, "weights", 0.0)
    code, err, _ = _run(tmp_path, capsys, sim.products, agents, "estimate")  # type: ignore[attr-defined]
    line = _one_line(err)
    assert code == 2 and re.search(pattern, line), line


def test_weights_not_summing_to_one_are_reported(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 sim: object) -> None:
    # a warning, not an error: the run finishes and the warning names the market
    agents = sim.agents.copy()  # type: ignore[attr-defined]
    agents.loc[agents["market_ids"] == 2, "weights"] *= 2.0
    code, err, out = _run(tmp_path, capsys, sim.products, agents, "estimate")  # type: ignore[attr-defined]
    assert code == 0, err
    assert "do not sum to one" in err and "2: 2" in err
    saved = json.dumps(load_results(out / "results.json").to_json())
    assert "do not sum to one" in saved


@pytest.mark.parametrize("command", ["logit", "estimate"])
def test_row_order_and_string_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  sim: object, command: str) -> None:
    products = sim.products  # type: ignore[attr-defined]
    agents = sim.agents  # type: ignore[attr-defined]
    (tmp_path / "a").mkdir()
    code, err, out = _run(tmp_path / "a", capsys, products, agents, command)
    assert code == 0, err
    shuffled = products.sample(frac=1.0, random_state=4)
    shuffled = shuffled.assign(market_ids="m" + shuffled["market_ids"].astype(str))
    relabelled = agents.assign(market_ids="m" + agents["market_ids"].astype(str))
    (tmp_path / "b").mkdir()
    code_b, err_b, out_b = _run(tmp_path / "b", capsys, shuffled, relabelled, command)
    assert code_b == 0, err_b
    a = load_results(out / "results.json").estimates
    b = load_results(out_b / "results.json").estimates
    np.testing.assert_allclose(b.to_numpy(), a.to_numpy(), rtol=1e-10, atol=1e-12)
