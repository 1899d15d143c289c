"""Contract: every bad input to ``Problem`` (products, agents, demographics, Sigma/Pi layout)
raises OUR error type naming the culprit.

Reference: each case breaks one thing by hand (the column, row, market or parameter written in
the test); the assertion is the exact error class and the culprit's name in the message.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import DataError, IntegrationWarning, SpecificationError
from blpdemand.model.simulation import simulate


@pytest.fixture(scope="module")
def sim() -> bd.SimulatedMarkets:
    return simulate(markets=6, products=4, sigma={"x1": 1.0}, draws=20, rng=21)


@pytest.fixture()
def products(sim: bd.SimulatedMarkets) -> pd.DataFrame:
    return sim.products.copy()


@pytest.fixture()
def agents(sim: bd.SimulatedMarkets) -> pd.DataFrame:
    assert sim.agents is not None
    rng = np.random.default_rng(0)
    return sim.agents.assign(income=rng.normal(size=len(sim.agents)),
                             age=rng.uniform(20, 70, size=len(sim.agents)))


def _problem(products: pd.DataFrame, agents: object, **kwargs: object) -> bd.Problem:
    options: dict[str, object] = {"linear": "1 + prices + x1 + x2", "nonlinear": "0 + x1",
                                  "instruments": ["w1", "w2"], "agents": agents}
    options.update(kwargs)
    return bd.Problem(products, **options)  # type: ignore[arg-type]


def _with(frame: pd.DataFrame, row: int, column: str, value: object) -> pd.DataFrame:
    out = frame.copy()
    out[column] = out[column].astype(np.float64)
    out.loc[out.index[row], column] = value
    return out


# ---------------------------------------------------------------- product data
@pytest.mark.parametrize("formula, name", [("0 + x1 + size", "size"), ("0 + log(weight)", "weight")])
def test_missing_nonlinear_column(products: pd.DataFrame, agents: pd.DataFrame, formula: str,
                                  name: str) -> None:
    with pytest.raises(DataError, match=name):
        _problem(products, agents, nonlinear=formula)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nonfinite_nonlinear_characteristic(products: pd.DataFrame, agents: pd.DataFrame,
                                            value: float) -> None:
    products["x3"] = products["x1"] ** 2
    with pytest.raises(DataError, match="'x3'"):
        _problem(_with(products, 7, "x3", value), agents, nonlinear="0 + x1 + x3")


def test_empty_products(products: pd.DataFrame, agents: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="product data is empty"):
        _problem(products.iloc[:0], agents)


# ---------------------------------------------------------------- agent data
@pytest.mark.parametrize("column", ["market_ids", "weights"])
def test_missing_agent_column(products: pd.DataFrame, agents: pd.DataFrame, column: str) -> None:
    with pytest.raises(DataError, match=f"agent data.*'{column}'"):
        _problem(products, agents.drop(columns=column))


@pytest.mark.parametrize("column", ["weights", "nodes0"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nonfinite_agent_column(products: pd.DataFrame, agents: pd.DataFrame, column: str,
                                value: float) -> None:
    market = agents["market_ids"].iloc[33]
    with pytest.raises(DataError, match=f"'{column}' of agent data.*market {market}"):
        _problem(products, _with(agents, 33, column, value))


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nonfinite_demographic(products: pd.DataFrame, agents: pd.DataFrame, value: float) -> None:
    with pytest.raises(DataError, match="'income'"):
        _problem(products, _with(agents, 12, "income", value), demographics="income")


def test_missing_demographic(products: pd.DataFrame, agents: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="'education'"):
        _problem(products, agents, demographics="income + education")


def test_empty_agents(products: pd.DataFrame, agents: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="agent data is empty"):
        _problem(products, agents.iloc[:0])


def test_market_without_agents(products: pd.DataFrame, agents: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="market.*\\b4\\b.*no agents"):
        _problem(products, agents[agents["market_ids"] != 4])


def test_string_market_ids_without_agents(products: pd.DataFrame, agents: pd.DataFrame) -> None:
    # products labelled "m0".., agents 0..: no product market has agents, named as written
    labelled = products.assign(market_ids="m" + products["market_ids"].astype(str))
    with pytest.raises(DataError, match="'m0'.*no agents"):
        _problem(labelled, agents)
    # the same labels on both sides work
    problem = _problem(labelled, agents.assign(market_ids="m" + agents["market_ids"].astype(str)))
    assert problem.T == 6


@pytest.mark.parametrize("weight", [0.0, -0.05])
def test_nonpositive_weight(products: pd.DataFrame, agents: pd.DataFrame, weight: float) -> None:
    market = agents["market_ids"].iloc[45]
    with pytest.raises(DataError, match=f"weights must be positive.*market {market}"):
        _problem(products, _with(agents, 45, "weights", weight))


def test_weights_not_summing_to_one_warn(products: pd.DataFrame, agents: pd.DataFrame) -> None:
    scaled = agents.copy()
    scaled.loc[scaled["market_ids"] == 2, "weights"] *= 1.5
    with pytest.warns(IntegrationWarning, match=r"1 of 6 market\(s\) \(2: 1\.5"):
        _problem(products, scaled)


def test_agents_without_nonlinear(products: pd.DataFrame, agents: pd.DataFrame) -> None:
    with pytest.raises(SpecificationError, match="nonlinear"):
        _problem(products, agents, nonlinear=None)


def test_nonlinear_without_agents(products: pd.DataFrame) -> None:
    with pytest.raises(SpecificationError, match="agents"):
        _problem(products, None)


def test_agents_of_wrong_type(products: pd.DataFrame, agents: pd.DataFrame) -> None:
    with pytest.raises(SpecificationError, match="ndarray"):
        _problem(products, agents.to_numpy())


def test_too_few_node_columns(products: pd.DataFrame, agents: pd.DataFrame) -> None:
    problem = _problem(products, agents, nonlinear="1 + x1")
    layout, _ = problem.layout(sigma=[1.0, 1.0])
    with pytest.raises(DataError, match=r"1 node columns.*\['1', 'x1'\]"):
        problem.nodes_for(layout)


def test_integration_demographics_without_data(products: pd.DataFrame) -> None:
    with pytest.raises(SpecificationError, match="demographics_data"):
        _problem(products, bd.Integration("halton", 10, rng=0), demographics="income")


# ---------------------------------------------------------------- Sigma and Pi layout
def test_pi_of_wrong_dimension(products: pd.DataFrame, agents: pd.DataFrame) -> None:
    problem = _problem(products, agents, demographics="income + age")
    with pytest.raises(SpecificationError, match=r"pi must be \(1, 2\).*\['income', 'age'\].*\(1, 3\)"):
        problem.layout(sigma=[1.0], pi=[[1.0, 0.5, 0.2]])
    with pytest.raises(SpecificationError, match=r"pi must be \(1, 2\).*\(2, 2\)"):
        problem.layout(sigma=[1.0], pi=np.ones((2, 2)))


def test_demographics_without_pi(products: pd.DataFrame, agents: pd.DataFrame) -> None:
    problem = _problem(products, agents, demographics="income")
    with pytest.raises(SpecificationError, match="pi="):
        problem.layout(sigma=[1.0])


def test_pi_without_demographics(products: pd.DataFrame, agents: pd.DataFrame) -> None:
    problem = _problem(products, agents)
    with pytest.raises(SpecificationError, match=r"pi must be \(1, 0\)"):
        problem.layout(sigma=[1.0], pi=[[0.5]])


@pytest.mark.parametrize("sigma, pattern", [
    ([1.0, 2.0], r"sigma has 2 elements.*\['x1'\]"),
    (np.ones((2, 3)), r"sigma must be \(1, 1\)"),
    ([np.nan], "sigma starting values contain NaN"),
    ([np.inf], "sigma starting values contain NaN/inf"),
])
def test_sigma_shape_and_values(products: pd.DataFrame, agents: pd.DataFrame, sigma: object,
                                pattern: str) -> None:
    problem = _problem(products, agents)
    with pytest.raises(SpecificationError, match=pattern):
        problem.layout(sigma=sigma)


def test_sigma_upper_triangle(products: pd.DataFrame, agents: pd.DataFrame) -> None:
    problem = _problem(products, bd.Integration("halton", 10, rng=0), nonlinear="1 + x1")
    with pytest.raises(SpecificationError, match="lower triangular"):
        problem.layout(sigma=[[1.0, 0.5], [0.0, 1.0]])


# ---------------------------------------------------------------- valid edge cases
def test_single_product_market_with_agents(products: pd.DataFrame, agents: pd.DataFrame) -> None:
    data = products[~((products["market_ids"] == 3) & (products["product_ids"] > 0))]
    problem = _problem(data, agents)
    assert problem.products.markets.sizes.tolist() == [4, 4, 4, 1, 4, 4]
    assert problem.agents is not None and problem.agents.markets.T == 6


def test_extra_agent_markets_are_dropped(products: pd.DataFrame, agents: pd.DataFrame) -> None:
    extra = pd.concat([agents, agents[agents["market_ids"] == 0].assign(market_ids=99)])
    problem = _problem(products, extra)
    assert problem.agents is not None
    assert problem.agents.I == len(agents)


def test_shuffled_agents_give_the_same_agent_data(products: pd.DataFrame,
                                                 agents: pd.DataFrame) -> None:
    # agent rows in any order: the same nodes and weights per market (stable within a market).
    a = _problem(products, agents)
    shuffled = agents.sample(frac=1.0, random_state=3)
    b = _problem(products.sample(frac=1.0, random_state=4), shuffled.sort_values(
        "market_ids", kind="stable"))
    assert a.agents is not None and b.agents is not None
    for t in range(a.T):
        rows_a = a.agents.markets.slice(t)
        rows_b = b.agents.markets.slice(t)
        np.testing.assert_array_equal(np.sort(a.agents.nodes[rows_a, 0]),
                                      np.sort(b.agents.nodes[rows_b, 0]))


# ---------------------------------------------------------------- options
def test_unknown_reserved_column_mapping(products: pd.DataFrame, agents: pd.DataFrame) -> None:
    with pytest.raises(SpecificationError, match="'markets'"):
        _problem(products, agents, columns={"markets": "market_ids"})


def test_unknown_option_name(products: pd.DataFrame, agents: pd.DataFrame) -> None:
    # Python rejects an unknown keyword: it is never silently ignored
    with pytest.raises(TypeError, match="'instrument'"):
        _problem(products, agents, instrument=["w1"])


def test_endogenous_not_in_x1(products: pd.DataFrame, agents: pd.DataFrame) -> None:
    with pytest.raises(SpecificationError, match=r"\['size'\]"):
        _problem(products, agents, endogenous=("prices", "size"))


def test_fewer_moments_than_linear_parameters(products: pd.DataFrame, agents: pd.DataFrame) -> None:
    with pytest.raises(SpecificationError, match="too few instruments"):
        _problem(products, agents, instruments=None)
