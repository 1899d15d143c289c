"""Contract: irregular inputs (odd dtypes, indexes, duplicate names, mis-typed arguments) either
give the right numbers or raise OUR error naming the culprit, never a bare numpy/pandas error.

References: error cases break one thing by hand (the column, market or parameter written in the
test) and assert the error class and the culprit's name in the message. Accepted cases are
checked against logit 2SLS computed here by hand with numpy on the clean data,
beta = (X'P_Z X)^-1 X'P_Z y with y = log s_jt - log s_0t (tolerance 1e-8), or against the same
call on the regular input (exact equality).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import BLPDemandWarning, DataError, SpecificationError
from blpdemand.model.simulation import simulate

LINEAR = "prices + x1 + x2"
NAMES = ["1", "prices", "x1", "x2"]


@pytest.fixture(scope="module")
def sim() -> bd.SimulatedMarkets:
    return simulate(markets=6, products=4, sigma={"x1": 1.0}, draws=20, rng=21)


@pytest.fixture()
def products(sim: bd.SimulatedMarkets) -> pd.DataFrame:
    return sim.products.copy()


@pytest.fixture()
def agents(sim: bd.SimulatedMarkets) -> pd.DataFrame:
    assert sim.agents is not None
    return sim.agents.copy()


def _fit(data: pd.DataFrame, **kwargs: object) -> bd.LogitResults:
    options: dict[str, object] = {"linear": LINEAR, "instruments": ["w1", "w2"]}
    options.update(kwargs)
    with warnings.catch_warnings():  # first-stage F may dip below 10 on these 24 rows
        warnings.simplefilter("ignore", BLPDemandWarning)
        return bd.estimate_logit(data, **options)  # type: ignore[arg-type]


def _problem(products: pd.DataFrame, agents: object, **kwargs: object) -> bd.Problem:
    options: dict[str, object] = {"linear": "1 + " + LINEAR, "nonlinear": "0 + x1",
                                  "instruments": ["w1", "w2"], "agents": agents}
    options.update(kwargs)
    return bd.Problem(products, **options)  # type: ignore[arg-type]


def _hand_2sls(data: pd.DataFrame, dummies: bool = False) -> np.ndarray:
    """Logit 2SLS by hand: intercept (or market dummies), prices, x1, x2; Z adds w1, w2."""
    s = data["shares"].to_numpy(dtype=float)
    markets = data["market_ids"].to_numpy()
    inside = pd.Series(s).groupby(markets).transform("sum").to_numpy()
    y = np.log(s) - np.log(1.0 - inside)
    if dummies:
        base = pd.get_dummies(pd.Series(markets)).to_numpy(dtype=float)
    else:
        base = np.ones((len(data), 1))
    x = data[["prices", "x1", "x2"]].to_numpy(dtype=float)
    X = np.column_stack([base, x])
    Z = np.column_stack([base, x[:, 1:], data[["w1", "w2"]].to_numpy(dtype=float)])
    PX = Z @ np.linalg.solve(Z.T @ Z, Z.T @ X)
    beta = np.linalg.solve(PX.T @ X, PX.T @ y)
    return np.asarray(beta[-3:] if dummies else beta)


# ---------------------------------------------------------------- accepted, right numbers
def test_nullable_and_boolean_dtypes_give_hand_2sls(products: pd.DataFrame) -> None:
    # Float64 (pandas nullable, no NA) columns and a boolean characteristic: hand 2SLS on the
    # float64 copy, 1e-8.
    products = products.assign(x2=products["x2"] > products["x2"].median())
    odd = products.assign(shares=products["shares"].astype("Float64"),
                          prices=products["prices"].astype("Float64"),
                          x1=products["x1"].astype("Float64"),
                          market_ids=products["market_ids"].astype("Int64"))
    expected = _hand_2sls(products.assign(x2=products["x2"].astype(float)))
    np.testing.assert_allclose(_fit(odd).params.to_numpy(), expected, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("reindex", ["duplicate", "multi", "datetime_ids"])
def test_odd_indexes_and_market_ids_give_hand_2sls(products: pd.DataFrame, reindex: str) -> None:
    # A duplicate index, a MultiIndex and datetime market ids change nothing: hand 2SLS, 1e-8.
    expected = _hand_2sls(products)
    if reindex == "duplicate":
        odd = products.set_axis(np.zeros(len(products), dtype=int))
    elif reindex == "multi":
        odd = products.set_index(["market_ids", "product_ids"], drop=False)
    else:
        odd = products.assign(market_ids=pd.Timestamp("2001-01-01")
                              + pd.to_timedelta(products["market_ids"], unit="D"))
    np.testing.assert_allclose(_fit(odd).params.to_numpy(), expected, rtol=1e-8, atol=1e-10)


def test_series_instruments_and_string_endogenous(products: pd.DataFrame) -> None:
    # instruments as Series (one or a list) and endogenous='prices' as a plain string were
    # IndexError / a per-character endogenous list; now the hand 2SLS, 1e-8.
    expected = _hand_2sls(products)
    shuffled = products.sample(frac=1.0, random_state=1)
    fit = _fit(shuffled, instruments=[shuffled["w1"], shuffled["w2"]], endogenous="prices")
    np.testing.assert_allclose(fit.params.to_numpy(), expected, rtol=1e-8, atol=1e-10)
    assert tuple(fit.names) == tuple(NAMES)
    single = bd.Problem(products, linear=LINEAR, instruments=products["w1"])
    assert single.ZD.names[-1] == "w1"


def test_absorb_list_with_c_and_market_of_identical_products(products: pd.DataFrame) -> None:
    # absorb=['C(market_ids)'] (was 'not in the data'), with every product of market 0 sharing
    # x1: x1 still varies across markets, so the fit is the hand 2SLS with dummies, 1e-8.
    products.loc[products["market_ids"] == 0, "x1"] = 1.5
    fit = _fit(products, absorb=["C(market_ids)"])
    np.testing.assert_allclose(fit.params.to_numpy(), _hand_2sls(products, dummies=True),
                               rtol=1e-8, atol=1e-10)


def test_agent_markets_without_products_are_dropped(products: pd.DataFrame,
                                                    agents: pd.DataFrame) -> None:
    # Extra agent rows in a market with no products: dropped, the agents equal the clean ones
    # exactly.
    extra = pd.concat([agents, agents[agents["market_ids"] == 0].assign(market_ids=99)])
    clean, odd = _problem(products, agents), _problem(products, extra)
    assert odd.agents is not None and clean.agents is not None
    np.testing.assert_array_equal(odd.agents.nodes, clean.agents.nodes)
    np.testing.assert_array_equal(odd.agents.weights, clean.agents.weights)


# ---------------------------------------------------------------- product data
def test_numbers_stored_as_text_in_a_formula(products: pd.DataFrame) -> None:
    # was silently one dummy per value, then a misleading rank error on the instruments
    text = products.assign(x1=products["x1"].astype(str))
    with pytest.raises(DataError, match=r"'x1' holds numbers stored as text.*pd.to_numeric"):
        _fit(text)


@pytest.mark.parametrize("column", ["x1", "shares", "market_ids", "w1"])
def test_duplicate_column_names(products: pd.DataFrame, column: str) -> None:
    doubled = pd.concat([products, products[[column]]], axis=1)
    with pytest.raises(DataError, match=rf"duplicate column name\(s\) \['{column}'\]"):
        _fit(doubled)


@pytest.mark.parametrize("column", ["x1", "shares", "prices", "w1"])
def test_nullable_missing_value(products: pd.DataFrame, column: str) -> None:
    values = products[column].astype("Float64")
    values.iloc[5] = pd.NA
    with pytest.raises(DataError, match=f"'{column}'"):
        _fit(products.assign(**{column: values}))


def test_nullable_missing_market_id(products: pd.DataFrame) -> None:
    ids = products["market_ids"].astype("Int64")
    ids.iloc[2] = pd.NA
    with pytest.raises(DataError, match="'market_ids' has missing values"):
        _fit(products.assign(market_ids=ids))


def test_level_present_in_one_market_under_market_effects(products: pd.DataFrame) -> None:
    grouped = products.assign(g=np.where(products["market_ids"] == 0, "a", "b"))
    with pytest.raises(SpecificationError, match=r"C\(g\)\[T.b\].*absorbed fixed effects"):
        _fit(grouped, linear=LINEAR + " + C(g)", absorb="C(market_ids)")


def test_absorb_of_wrong_type(products: pd.DataFrame) -> None:
    with pytest.raises(SpecificationError, match="absorb=3"):
        _fit(products, absorb=3)


# ---------------------------------------------------------------- instruments
@pytest.mark.parametrize("instruments, error, pattern", [
    ([1, 2], SpecificationError, "instrument 1 .int."),
    (np.ones((24, 2, 1)), DataError, r"shape \(24, 2, 1\)"),
    (np.full((24, 1), "a"), DataError, "not numeric"),
])
def test_instrument_arrays_of_wrong_kind(products: pd.DataFrame, instruments: object,
                                         error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        _fit(products, instruments=instruments)


def test_instrument_frame_with_text_column(products: pd.DataFrame) -> None:
    frame = products[["w1"]].assign(s="a")
    with pytest.raises(DataError, match=r"\['w1', 's'\] are not all numeric"):
        _fit(products, instruments=frame)


def test_instrument_frame_in_another_row_order(products: pd.DataFrame) -> None:
    # read by position, a frame carrying the products' labels in another order paired the
    # wrong rows silently
    shuffled = products.sample(frac=1.0, random_state=2)
    with pytest.raises(DataError, match=r"index labels in another order.*reindex"):
        _fit(shuffled, instruments=products[["w1", "w2"]])
    with pytest.raises(DataError, match="index labels"):
        _fit(shuffled, instruments=[products["w1"], products["w2"]])


# ---------------------------------------------------------------- agents and parameters
@pytest.mark.parametrize("column", ["weights", "market_ids"])
def test_duplicate_agent_columns(products: pd.DataFrame, agents: pd.DataFrame, column: str) -> None:
    with pytest.raises(DataError, match=rf"agent data has duplicate column name\(s\) \['{column}'\]"):
        _problem(products, pd.concat([agents, agents[[column]]], axis=1))


def test_missing_agent_market_id(products: pd.DataFrame, agents: pd.DataFrame) -> None:
    # rows with a NaN market were silently dropped
    agents["market_ids"] = agents["market_ids"].astype(float)
    agents.loc[agents.index[7], "market_ids"] = np.nan
    with pytest.raises(DataError, match=r"'market_ids' of agent data has missing values .*row 7"):
        _problem(products, agents)


def test_agent_market_ids_of_another_type(products: pd.DataFrame, agents: pd.DataFrame) -> None:
    text = agents.assign(market_ids=agents["market_ids"].astype(str))
    with pytest.raises(DataError, match=r"agent ids look like '0', product ids like 0.*same type"):
        _problem(products, text)


@pytest.fixture(scope="module")
def problem(sim: bd.SimulatedMarkets) -> bd.Problem:
    return bd.Problem(sim.products, linear=sim.linear, nonlinear=sim.nonlinear,
                      agents=sim.agents, instruments=list(sim.instruments))


@pytest.mark.parametrize("sigma, pattern", [(["a"], "sigma starting values are not numbers"),
                                            ({"x1": 1.0}, "sigma must be a vector or matrix")])
def test_sigma_not_numbers(problem: bd.Problem, sigma: object, pattern: str) -> None:
    with pytest.raises(SpecificationError, match=pattern):
        bd.evaluate(problem, sigma=sigma)


@pytest.mark.parametrize("bound", [3.0, (0.0, 1.0, 2.0), ("a", 1.0)])
def test_bounds_not_pairs(bound: object) -> None:
    with pytest.raises(SpecificationError, match=r"bounds for 'sigma\[x1, x1\]' must be a \(low, high\)"):
        bd.EstimationConfig(bounds={"sigma[x1, x1]": bound})  # type: ignore[dict-item]


# ---------------------------------------------------------------- post-estimation
@pytest.fixture(scope="module")
def results(sim: bd.SimulatedMarkets) -> bd.LogitResults:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BLPDemandWarning)
        return bd.estimate_logit(sim.products, linear=sim.linear, instruments=list(sim.instruments))


def test_post_estimation_name_not_a_column(results: bd.LogitResults) -> None:
    with pytest.raises(SpecificationError, match="'sugarr'"):
        bd.compute_elasticities(results, "sugarr")
    with pytest.raises(SpecificationError, match="name=123"):
        bd.compute_elasticities(results, 123)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs, pattern", [
    ({"unit_tax": np.nan}, "unit_tax has NaN"),
    ({"costs": ["a"] * 24}, "costs must be numbers"),
])
def test_counterfactual_inputs_not_finite_numbers(results: bd.LogitResults,
                                                  kwargs: dict[str, object], pattern: str) -> None:
    # a NaN scalar tax gave NaN prices silently; text costs a bare ValueError
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BLPDemandWarning)
        with pytest.raises(DataError, match=pattern):
            bd.compute_prices(results, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- instrument builders
@pytest.mark.parametrize("build, column", [
    (lambda data: bd.build_blp_instruments(data, ["x1"]), "x1"),
    (lambda data: bd.fit_prices(data, ["x1", "x2"], ["w1", "w2"]), "prices"),
    (lambda data: bd.build_cost_shifters(data, "w1"), "w1"),
])
def test_builders_with_duplicate_columns(products: pd.DataFrame, build: object, column: str) -> None:
    # were bare AttributeError ('DataFrame' object has no attribute 'dtype') or a formulaic message
    doubled = pd.concat([products, products[[column]]], axis=1)
    with pytest.raises(DataError, match=f"duplicate column.*'{column}'|'{column}'.*duplicate column"):
        build(doubled)  # type: ignore[operator]


def test_builder_characteristics_of_wrong_type(products: pd.DataFrame) -> None:
    with pytest.raises(SpecificationError, match="characteristics=3"):
        bd.build_blp_instruments(products, 3)  # type: ignore[arg-type]
    # any iterable of names is still read as a list (a pandas Index here): same as the list
    as_index = bd.build_blp_instruments(products, pd.Index(["x1", "x2"]))
    pd.testing.assert_frame_equal(as_index, bd.build_blp_instruments(products, ["x1", "x2"]))


# ---------------------------------------------------------------- arguments of the wrong kind
def test_estimate_arguments_of_the_wrong_kind(problem: bd.Problem, products: pd.DataFrame) -> None:
    # were AttributeError ('dict' object has no attribute 'start', 'DataFrame' ... 'layout')
    with pytest.raises(SpecificationError, match="config must be a bd.EstimationConfig, got dict"):
        bd.estimate(problem, sigma=[0.5], config={"hessian": False})  # type: ignore[arg-type]
    with pytest.raises(SpecificationError, match="need a bd.Problem, got DataFrame"):
        bd.evaluate(products, sigma=[0.5])  # type: ignore[arg-type]


def test_columns_not_a_mapping_and_integration_class(products: pd.DataFrame) -> None:
    with pytest.raises(SpecificationError, match="columns= must map reserved names"):
        _fit(products, columns=["shares"])
    with pytest.raises(SpecificationError, match="the class Integration .call it."):
        _problem(products, bd.Integration)


@pytest.mark.parametrize("kappa, error, pattern", [
    (3, SpecificationError, "kappa must be a"),
    ({0: 0.5}, SpecificationError, "kappa key 0 must be a .firm, firm. pair"),
    ({(0, 99): 0.5}, DataError, r"kappa names firm\(s\) \[99\]"),
    ({(0, 1): np.nan}, DataError, r"kappa weight for \(0, 1\) is nan"),
])
def test_partial_ownership_of_the_wrong_kind(results: bd.LogitResults, kappa: object,
                                             error: type[Exception], pattern: str) -> None:
    # were AttributeError/TypeError, or silently ignored (unknown firm) / NaN prices (NaN weight)
    with pytest.raises(error, match=pattern):
        bd.compute_markups(results, kappa=kappa)  # type: ignore[arg-type]


@pytest.mark.filterwarnings("ignore::blpdemand.errors.EconomicWarning")  # kappa: some costs < 0
def test_partial_ownership_accepts_numpy_keys(results: bd.LogitResults) -> None:
    # numpy firm ids and weights are the same kappa as Python ones: equal markups exactly
    plain = bd.compute_markups(results, kappa={(0, 1): 0.5})
    numpy = bd.compute_markups(results, kappa={(np.int64(0), np.int64(1)): np.float64(0.5)})
    np.testing.assert_array_equal(plain, numpy)
    assert not np.array_equal(plain, bd.compute_markups(results))


@pytest.mark.parametrize("column", ["market_ids", "product_ids"])
def test_ids_that_differ_only_in_type(products: pd.DataFrame, column: str) -> None:
    # 1 and '1' in one column silently split market 1 (or made product 1 two products)
    ids = products[column].astype(object)
    ids.iloc[int(np.flatnonzero(products[column].to_numpy() == 1)[0])] = "1"
    with pytest.raises(DataError, match=rf"'{column}'.*differ only in type \('1', 1\)"):
        _fit(products.assign(**{column: ids}))


def test_object_ids_of_one_type_are_fine(products: pd.DataFrame) -> None:
    # tuples as market ids (object dtype, one type): the hand 2SLS, 1e-8
    odd = products.assign(market_ids=[(int(m), "q") for m in products["market_ids"]])
    np.testing.assert_allclose(_fit(odd).params.to_numpy(), _hand_2sls(products), rtol=1e-8,
                               atol=1e-10)


def test_census_draw_without_a_market(products: pd.DataFrame) -> None:
    # a census row with a NaN market was silently dropped
    rng = np.random.default_rng(0)
    census = pd.DataFrame({"market_ids": np.repeat(products["market_ids"].unique(), 30)
                           .astype(float), "income": rng.normal(size=180)})
    census.loc[4, "market_ids"] = np.nan
    with pytest.raises(DataError, match=r"'market_ids' has 1 missing value.*row 4"):
        bd.Integration("halton", size=10, rng=0, demographics_data=census)


def test_per_product_series_in_another_row_order(sim: bd.SimulatedMarkets) -> None:
    # costs, taxes and firm ids are read by position: a Series carrying the product labels in
    # another order paired the wrong rows silently. Aligned Series give the array's result
    # exactly.
    shuffled = sim.products.sample(frac=1.0, random_state=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BLPDemandWarning)
        fit = bd.estimate_logit(shuffled, linear=sim.linear, instruments=list(sim.instruments))
        costs = pd.Series(bd.compute_costs(fit), index=shuffled.index)
        with pytest.raises(DataError, match="costs has the product data's index labels"):
            bd.compute_prices(fit, costs=costs.sort_index())
        with pytest.raises(DataError, match="unit_tax has the product data's index labels"):
            bd.compute_prices(fit, unit_tax=sim.products["x1"])
        with pytest.raises(DataError, match="firm_ids has the product data's index labels"):
            bd.compute_markups(fit, firm_ids=shuffled["firm_ids"].sort_index())
        np.testing.assert_array_equal(bd.compute_markups(fit, firm_ids=shuffled["firm_ids"]),
                                      bd.compute_markups(fit))
        np.testing.assert_array_equal(bd.compute_prices(fit, costs=costs).prices,
                                      bd.compute_prices(fit, costs=costs.to_numpy()).prices)
