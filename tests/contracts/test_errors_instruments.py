"""Contract: the instrument builders name every bad input and do not depend on row order.

Reference: each case breaks one thing by hand (the column, row, market or option written in the
test); the assertion is the exact error class and the culprit's name. Row order: the same rows
shuffled give the same instrument on every row, exactly (the builders sort stably by market).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import DataError, SpecificationError
from blpdemand.model.simulation import simulate


@pytest.fixture()
def products() -> pd.DataFrame:
    return simulate(markets=5, products=4, rng=31).products


@pytest.fixture()
def agents() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame({"market_ids": np.repeat(np.arange(5), 10), "weights": 0.1,
                         "income": rng.normal(size=50)})


def _nan(frame: pd.DataFrame, column: str, row: int = 3) -> pd.DataFrame:
    out = frame.copy()
    out[column] = out[column].astype(np.float64)
    out.loc[out.index[row], column] = np.nan
    return out


BUILDERS = {
    "blp": lambda d: bd.build_blp_instruments(d, "1 + x1"),
    "blp_list": lambda d: bd.build_blp_instruments(d, ["1", "x1"]),
    "local": lambda d: bd.build_differentiation_instruments(d, "x1 + x2"),
    "quadratic": lambda d: bd.build_differentiation_instruments(d, "x1 + x2", version="quadratic",
                                                                interact=True),
    "course": lambda d: bd.build_differentiation_instruments(d, "x1 + x2", convention="course"),
    "hausman": lambda d: bd.build_hausman_instruments(d, "prices"),
    "cost": lambda d: bd.build_cost_shifters(d, ["w1", "w2"]),
}


# ---------------------------------------------------------------- missing columns
@pytest.mark.parametrize("builder, column", [
    ("blp", "firm_ids"), ("blp", "market_ids"), ("local", "firm_ids"), ("course", "market_ids"),
    ("hausman", "product_ids"), ("hausman", "prices"), ("cost", "w1"), ("blp", "x1"),
    ("blp_list", "x1"),
])
def test_missing_column(products: pd.DataFrame, builder: str, column: str) -> None:
    with pytest.raises(DataError, match=f"'{column}'"):
        BUILDERS[builder](products.drop(columns=column))


# ---------------------------------------------------------------- NaN / inf
@pytest.mark.parametrize("builder, column", [
    ("blp", "x1"), ("blp_list", "x1"), ("local", "x2"), ("quadratic", "x1"), ("course", "x2"),
    ("hausman", "prices"), ("cost", "w2"), ("blp", "firm_ids"), ("blp", "market_ids"),
    ("hausman", "product_ids"),
])
def test_nan_in_used_column(products: pd.DataFrame, builder: str, column: str) -> None:
    with pytest.raises(DataError, match=f"'{column}'"):
        BUILDERS[builder](_nan(products, column))


@pytest.mark.parametrize("builder, column", [("blp_list", "x1"), ("hausman", "prices"),
                                             ("cost", "w1")])
def test_inf_in_used_column(products: pd.DataFrame, builder: str, column: str) -> None:
    data = products.assign(**{column: np.where(np.arange(len(products)) == 6, np.inf,
                                               products[column])})
    with pytest.raises(DataError, match=f"'{column}'.*row 6"):
        BUILDERS[builder](data)


@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_empty_frame(products: pd.DataFrame, builder: str) -> None:
    with pytest.raises(DataError, match="empty"):
        BUILDERS[builder](products.iloc[:0])


# ---------------------------------------------------------------- options
@pytest.mark.parametrize("call, name", [
    (lambda d: bd.build_differentiation_instruments(d, "x1", version="cubic"), "version='cubic'"),
    (lambda d: bd.build_differentiation_instruments(d, "x1", convention="pyblp"), "convention='pyblp'"),
    (lambda d: bd.build_differentiation_instruments(d, "x1", ddof=2), "ddof=2"),
    (lambda d: bd.build_hausman_instruments(d, on_single="drop"), "on_single='drop'"),
    (lambda d: bd.build_differentiation_instruments(d, "1"), "no columns"),
    (lambda d: bd.build_blp_instruments(d, []), "at least one"),
    (lambda d: bd.build_blp_instruments(d, ["x1", "x1"]), "repeats"),
    (lambda d: bd.build_cost_shifters(d, []), "at least one"),
    (lambda d: bd.build_blp_instruments(d, "1", columns={"firms": "firm_ids"}), "firms"),
])
def test_bad_option(products: pd.DataFrame, call: object, name: str) -> None:
    with pytest.raises(SpecificationError, match=name):
        call(products)  # type: ignore[operator]


def test_unknown_option_name(products: pd.DataFrame) -> None:
    with pytest.raises(TypeError, match="'versoin'"):
        bd.build_differentiation_instruments(products, "x1", versoin="local")  # type: ignore[call-arg]


def test_constant_cost_shifter(products: pd.DataFrame) -> None:
    with pytest.raises(SpecificationError, match=r"\['w3'\].*constant"):
        bd.build_cost_shifters(products.assign(w3=1.0), ["w1", "w3"])


# ---------------------------------------------------------------- hausman: single market, duplicates
def test_hausman_single_market_names_products(products: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="no other market.*0 in market 0"):
        bd.build_hausman_instruments(products[products["market_ids"] == 0])


def test_hausman_duplicate_product(products: pd.DataFrame) -> None:
    data = products.copy()
    data.loc[data.index[5], "product_ids"] = data.loc[data.index[4], "product_ids"]
    with pytest.raises(DataError, match="product 0 appears 2 times in market 1"):
        bd.build_hausman_instruments(data)


def test_hausman_nan_policy(products: pd.DataFrame) -> None:
    # a product sold in one market only: NaN there with on_single='nan', the mean elsewhere
    data = products[~((products["product_ids"] == 2) & (products["market_ids"] > 0))]
    out = bd.build_hausman_instruments(data, on_single="nan")["hausman_prices"]
    lonely = (data["product_ids"] == 2).to_numpy()
    assert np.isnan(out[lonely]).all() and np.isfinite(out[~lonely]).all()


# ---------------------------------------------------------------- demographic instruments
def test_demographic_nan(products: pd.DataFrame, agents: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="'income'"):
        bd.build_demographic_instruments(products, _nan(agents, "income"), "x1", "income")


def test_demographic_market_without_agents(products: pd.DataFrame, agents: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"\b2\b.*no agents"):
        bd.build_demographic_instruments(products, agents[agents["market_ids"] != 2], "x1", "income")


def test_demographic_missing_column(products: pd.DataFrame, agents: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="'age'"):
        bd.build_demographic_instruments(products, agents, "x1", "age")


def test_demographic_nonpositive_weights(products: pd.DataFrame, agents: pd.DataFrame) -> None:
    # Negative weights are allowed (sparse grids crossed with census draws); a market whose
    # weights sum to zero or less is named.
    with pytest.raises(DataError, match=r"market\(s\) \[0, 1, 2, 3, 4\] sum to a non-positive"):
        bd.build_demographic_instruments(products, agents.assign(weights=0.0), "x1", "income")
    bad = agents.copy()
    bad.loc[bad.index[20:30], "weights"] = -0.1  # market 2's agents: total -1
    with pytest.raises(DataError, match=r"market\(s\) \[2\] sum to a non-positive total \(-1\)"):
        bd.build_demographic_instruments(products, bad, "x1", "income")


def test_fitted_prices_nan(products: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="'w1'"):
        bd.fit_prices(_nan(products, "w1"), "x1 + x2", ["w1", "w2"])
    with pytest.raises(DataError, match="'prices'"):
        bd.fit_prices(_nan(products, "prices"), "x1 + x2", ["w1", "w2"])


def test_fitted_prices_collinear_regressors_warn_and_keep_p_hat(products: pd.DataFrame) -> None:
    # Reference: the fit without the redundant column w3 = w1 - 2 w2 (same span, same p_hat).
    from blpdemand.errors import CollinearityWarning

    redundant = products.assign(w3=products["w1"] - 2.0 * products["w2"])
    with pytest.warns(CollinearityWarning, match=r"\['w3'\]"):
        first = bd.fit_prices(redundant, "x1 + x2", ["w1", "w2", "w3"])
    reference = bd.fit_prices(products, "x1 + x2", ["w1", "w2"])
    assert np.max(np.abs(first.p_hat - reference.p_hat)) < 1e-10


# ---------------------------------------------------------------- valid edge cases
@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_row_order_does_not_matter(products: pd.DataFrame, builder: str) -> None:
    # shuffled rows (index kept): every row's instruments are bit-identical to the sorted input
    shuffled = products.sample(frac=1.0, random_state=7)
    a = BUILDERS[builder](products)
    b = BUILDERS[builder](shuffled)
    pd.testing.assert_frame_equal(b.loc[products.index], a, check_exact=False, rtol=1e-12)
    assert list(b.index) == list(shuffled.index)


@pytest.mark.parametrize("builder", ["blp", "local", "quadratic", "course", "hausman"])
def test_string_market_ids(products: pd.DataFrame, builder: str) -> None:
    # the same markets labelled "m0".."m4": the same instruments row by row
    labelled = products.assign(market_ids="m" + products["market_ids"].astype(str))
    pd.testing.assert_frame_equal(BUILDERS[builder](labelled), BUILDERS[builder](products),
                                  check_exact=False, rtol=1e-12)


def test_single_product_markets() -> None:
    # one product per market: no other products, so BLP sums and differentiation counts are 0
    data = simulate(markets=5, products=1, firms=1, rng=2).products
    blp = bd.build_blp_instruments(data, "1 + x1")
    assert (blp.to_numpy() == 0).all()
    local = bd.build_differentiation_instruments(data, "x1")
    assert np.isfinite(local.to_numpy()).all()
