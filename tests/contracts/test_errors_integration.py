"""Contract: ``bd.Integration`` and the agents it builds name every bad option and input.

Reference: each case breaks one thing by hand (the option, column or market written in the
test); the assertion is the exact error class and the culprit's name in the message.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import DataError, SpecificationError
from blpdemand.model.simulation import simulate

I = bd.Integration


@pytest.fixture(scope="module")
def products() -> pd.DataFrame:
    return simulate(markets=3, products=3, rng=41).products


@pytest.fixture()
def census() -> pd.DataFrame:
    return pd.DataFrame({"market_ids": np.repeat(np.arange(3), 5), "income": np.arange(15.0)})


def _problem(products: pd.DataFrame, agents: object, demographics: str | None = "income") -> bd.Problem:
    return bd.Problem(products, linear="prices + x1", nonlinear="0 + x1", agents=agents,
                      demographics=demographics, instruments=["w1", "w2"])


@pytest.mark.parametrize("kwargs, name", [
    ({"kind": "sobel", "size": 10}, "kind='sobel'"),
    ({"kind": "sobol", "size": 0}, "size=0"),
    ({"kind": "sobol", "size": 10.5}, "size=10.5"),
    ({"kind": "sobol", "size": True}, "size=True"),
    ({"kind": "sobol", "size": 10, "rng": -1}, "rng=-1"),
    ({"kind": "sobol", "size": 10, "rng": "a"}, "rng='a'"),
    ({"kind": "sobol", "size": 10, "pairing": "zip"}, "pairing='zip'"),
    ({"kind": "product", "size": 3, "per_market": True}, "per_market.*'product'"),
    ({"kind": "sparse_grid", "size": 2, "per_market": True}, "per_market.*'sparse_grid'"),
])
def test_invalid_options(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(SpecificationError, match=name):
        I(**kwargs)  # type: ignore[arg-type]


def test_unknown_option_name() -> None:
    with pytest.raises(TypeError, match="'seed'"):
        I("sobol", 10, seed=1)  # type: ignore[call-arg]


def test_demographics_data_not_a_frame(census: pd.DataFrame) -> None:
    with pytest.raises(SpecificationError, match="DataFrame.*ndarray"):
        I("sobol", 10, demographics_data=census.to_numpy())  # type: ignore[arg-type]


def test_demographics_data_without_market_ids(census: pd.DataFrame) -> None:
    with pytest.raises(SpecificationError, match="'market_ids'"):
        I("sobol", 10, demographics_data=census.drop(columns="market_ids"))


@pytest.mark.parametrize("call, name", [
    (lambda: I("sobol", 4, rng=0).nodes_weights(-1), "dimensions=-1"),
    (lambda: I("sobol", 4, rng=0, per_market=True).nodes_weights(2), "market="),
    (lambda: I("sobol", 4, rng=0).refined(0), "factor 0"),
    (lambda: I("product", 50).nodes_weights(6), "50 points in 6 dimensions"),
])
def test_bad_calls(call: object, name: str) -> None:
    with pytest.raises(SpecificationError, match=name):
        call()  # type: ignore[operator]


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nonfinite_demographics(products: pd.DataFrame, census: pd.DataFrame, value: float) -> None:
    census.loc[7, "income"] = value
    with pytest.raises(DataError, match="'income'"):
        _problem(products, I("sobol", 4, rng=0, demographics_data=census))


def test_market_without_demographics(products: pd.DataFrame, census: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"market\(s\) \[1\]"):
        _problem(products, I("sobol", 4, rng=0, demographics_data=census[census["market_ids"] != 1]))


def test_missing_demographic_column(products: pd.DataFrame, census: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="'age'"):
        _problem(products, I("sobol", 4, rng=0, demographics_data=census), demographics="age")


def test_demographics_without_data(products: pd.DataFrame) -> None:
    with pytest.raises(SpecificationError, match="demographics_data"):
        _problem(products, I("sobol", 4, rng=0))


def test_pairing_needs_enough_rows(products: pd.DataFrame, census: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="market 0 has 5 rows and 8 nodes"):
        _problem(products, I("sobol", 8, rng=0, demographics_data=census, pairing="pair"))


@pytest.mark.parametrize("weights, pattern", [(-1.0, "must be positive.*market 0"),
                                              (np.nan, "'weights'.*NaN")])
def test_bad_census_weights(products: pd.DataFrame, census: pd.DataFrame, weights: float,
                            pattern: str) -> None:
    census["weights"] = 1.0
    census.loc[2, "weights"] = weights
    with pytest.raises(DataError, match=pattern):
        _problem(products, I("sobol", 4, rng=0, demographics_data=census))


@pytest.mark.parametrize("kind, size", [("monte_carlo", 7), ("sobol", 8), ("halton", 5),
                                        ("lhs", 6), ("product", 3), ("sparse_grid", 2)])
def test_every_rule_builds_finite_agents(products: pd.DataFrame, kind: str, size: int) -> None:
    # every rule gives finite nodes and weights that sum to one per market (the rule's contract)
    problem = _problem(products, I(kind, size, rng=0), demographics=None)
    agents = problem.agents
    assert agents is not None
    assert np.isfinite(agents.nodes).all() and np.isfinite(agents.weights).all()
    np.testing.assert_allclose(agents.markets.segment_sum(agents.weights), 1.0, rtol=1e-12)


def test_string_market_ids(products: pd.DataFrame, census: pd.DataFrame) -> None:
    # string market ids in products and census: the same agents as integer ids
    a = _problem(products, I("halton", 4, rng=0, demographics_data=census))
    label = lambda f: f.assign(market_ids="m" + f["market_ids"].astype(str))
    b = _problem(label(products), I("halton", 4, rng=0, demographics_data=label(census)))
    assert a.agents is not None and b.agents is not None
    np.testing.assert_array_equal(a.agents.nodes, b.agents.nodes)
    np.testing.assert_array_equal(a.agents.demographics, b.agents.demographics)
