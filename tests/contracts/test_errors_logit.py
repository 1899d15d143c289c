"""Contract: every bad input to ``estimate_logit`` raises OUR error type naming the culprit.

Reference: each case breaks one thing by hand (the column, row, market or product written in
the test); the assertion is the exact error class and the culprit's name in the message.
Valid edge cases (one market, single-product markets, string ids, shuffled rows) are checked
against the untouched fit: equal to 1e-10 (row order) or the same closed-form inversion.
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
    return simulate(markets=10, products=4, rng=11).products


def _fit(data: pd.DataFrame, **kwargs: object) -> bd.LogitResults:
    options: dict[str, object] = {"linear": "prices + x1 + x2", "instruments": ["w1", "w2"]}
    options.update(kwargs)
    return bd.estimate_logit(data, **options)  # type: ignore[arg-type]


def _set(frame: pd.DataFrame, row: int, column: str, value: object) -> pd.DataFrame:
    out = frame.copy()
    if column in out and out[column].dtype.kind in "iu" and not isinstance(value, int):
        out[column] = out[column].astype(object if isinstance(value, str) else np.float64)
    out.loc[out.index[row], column] = value
    return out


# ---------------------------------------------------------------- missing columns
@pytest.mark.parametrize("column", ["market_ids", "shares"])
def test_missing_reserved_column(products: pd.DataFrame, column: str) -> None:
    with pytest.raises(DataError, match=f"'{column}'"):
        _fit(products.drop(columns=column))


@pytest.mark.parametrize("kwargs, name", [
    ({"linear": "prices + sugar"}, "sugar"),
    ({"instruments": ["w1", "w9"]}, "w9"),
    ({"absorb": "C(brand)"}, "brand"),
    ({"covariance": "clustered", "clusters": "city"}, "city"),
])
def test_missing_named_column(products: pd.DataFrame, kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(DataError, match=name):
        _fit(products, **kwargs)


def test_prices_missing_when_linear_uses_them(products: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="prices"):
        _fit(products.drop(columns="prices"))


# ---------------------------------------------------------------- NaN / inf in used columns
@pytest.mark.parametrize("column", ["shares", "prices", "x1", "x2", "w1", "w2"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nonfinite_in_used_column(products: pd.DataFrame, column: str, value: float) -> None:
    with pytest.raises(DataError, match=f"'{column}'"):
        _fit(_set(products, 5, column, value))


def test_nan_in_market_ids(products: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="'market_ids'.*row 3"):
        _fit(_set(products, 3, "market_ids", np.nan))


def test_nan_in_absorbed_group(products: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="'firm_ids'"):
        _fit(_set(products, 2, "firm_ids", np.nan), absorb="C(firm_ids)")


def test_nan_in_instrument_frame_and_array(products: pd.DataFrame) -> None:
    frame = _set(products, 4, "w2", np.nan)[["w1", "w2"]]
    with pytest.raises(DataError, match="'w2'"):
        _fit(products, instruments=frame)
    with pytest.raises(DataError, match="instrument array.*NaN"):
        _fit(products, instruments=frame.to_numpy())


def test_nan_in_clusters(products: pd.DataFrame) -> None:
    data = products.assign(city=np.where(np.arange(len(products)) == 5, np.nan, 1.0))
    with pytest.raises(DataError, match="cluster"):
        _fit(data, covariance="clustered", clusters="city")


def test_log_of_nonpositive(products: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"log\(x1\)"):
        _fit(products, linear="prices + log(x1)")


def test_non_numeric_shares(products: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="'shares'.*numeric"):
        _fit(products.assign(shares="a"))


def test_absurd_magnitude_is_named(products: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="'prices'.*rescale"):
        _fit(products.assign(prices=products["prices"] * 1e200))


# ---------------------------------------------------------------- shares
@pytest.mark.parametrize("value", [0.0, -0.01, 1.0, 1.5])
def test_share_outside_unit_interval(products: pd.DataFrame, value: float) -> None:
    market = products["market_ids"].iloc[9]
    with pytest.raises(DataError, match=rf"'shares'.*\(0, 1\).*market {market}\b"):
        _fit(_set(products, 9, "shares", value))


def test_inside_shares_sum_to_one(products: pd.DataFrame) -> None:
    data = products.copy()
    data.loc[data["market_ids"] == 3, "shares"] = 0.25  # four products: sum exactly 1
    with pytest.raises(DataError, match="market 3 sum to 1.0000"):
        _fit(data)
    data.loc[data["market_ids"] == 3, "shares"] = 0.3
    with pytest.raises(DataError, match="market 3 sum to 1.2"):
        _fit(data)


# ---------------------------------------------------------------- duplicates, empty, shape
def test_duplicate_market_product(products: pd.DataFrame) -> None:
    data = products.copy()
    data.loc[data.index[6], "product_ids"] = data.loc[data.index[5], "product_ids"]
    market, product = data["market_ids"].iloc[5], data["product_ids"].iloc[5]
    with pytest.raises(DataError, match=f"product {product} appears 2 times in market {market}"):
        _fit(data)


@pytest.mark.parametrize("data", [pd.DataFrame(), pd.DataFrame({"market_ids": [], "shares": []})])
def test_empty_frame(data: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="empty"):
        _fit(data, linear="1", instruments=None, method="ols")


def test_not_a_dataframe(products: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="DataFrame.*ndarray"):
        _fit(products.to_numpy())


def test_instrument_frame_with_wrong_rows(products: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="39 rows.*40"):
        _fit(products, instruments=products[["w1", "w2"]].iloc[:-1])


# ---------------------------------------------------------------- identification
def test_fewer_moments_than_parameters(products: pd.DataFrame) -> None:
    with pytest.raises(SpecificationError, match="too few instruments.*'x1'"):
        _fit(products, endogenous=("prices", "x1"), instruments=["w1"])


def test_no_instruments_for_iv(products: pd.DataFrame) -> None:
    with pytest.raises(SpecificationError, match="instruments.*'prices'"):
        _fit(products, instruments=None)


def test_collinear_x1(products: pd.DataFrame) -> None:
    with pytest.raises(SpecificationError, match="'x3'"):
        _fit(products.assign(x3=products["x1"] - 2 * products["x2"]), linear="prices + x1 + x2 + x3")


def test_x1_collinear_with_absorbed_effects(products: pd.DataFrame) -> None:
    data = products.assign(size=products["market_ids"] * 2.0)
    with pytest.raises(SpecificationError, match="'size'"):
        _fit(data, linear="prices + x1 + size", absorb="C(market_ids)")


def test_collinear_instruments(products: pd.DataFrame) -> None:
    data = products.assign(w3=products["w1"] + 3 * products["w2"])
    with pytest.raises(SpecificationError, match="'w3'"):
        _fit(data, instruments=["w1", "w2", "w3"])


def test_zero_instrument(products: pd.DataFrame) -> None:
    with pytest.raises(SpecificationError, match="'w0'.*all zero"):
        _fit(products.assign(w0=0.0), instruments=["w1", "w0"])


def test_instrument_given_twice(products: pd.DataFrame) -> None:
    with pytest.raises(SpecificationError, match="'w1'.*more than once"):
        _fit(products, instruments=["w1", "w1"])


# ---------------------------------------------------------------- options
@pytest.mark.parametrize("kwargs, name", [
    ({"method": "liml"}, "method='liml'"),
    ({"covariance": "HC0"}, "covariance='HC0'"),
    ({"covariance": "clustered"}, "clusters"),
    ({"columns": {"markets": "market_ids"}}, "'markets'"),
    ({"endogenous": ("price",)}, "'price'"),
    ({"absorb": "log(x1)"}, r"log\(x1\)"),
    ({"linear": ""}, "linear formula"),
    ({"linear": 3}, "linear formula"),
    ({"linear": "prices +"}, r"prices \+"),
])
def test_unknown_option_values_raise(products: pd.DataFrame, kwargs: dict[str, object],
                                     name: str) -> None:
    with pytest.raises(SpecificationError, match=name):
        _fit(products, **kwargs)


def test_unknown_option_name_raises(products: pd.DataFrame) -> None:
    # Python itself rejects an unknown keyword; it is never silently ignored.
    with pytest.raises(TypeError, match="'bogus'"):
        _fit(products, bogus=1)


# ---------------------------------------------------------------- valid edge cases
def test_single_market() -> None:
    # one market of 30 products: the Berry inversion is closed form, the fit must be finite.
    data = simulate(markets=1, products=30, rng=3).products
    result = _fit(data)
    assert np.all(np.isfinite(result.params)) and np.all(np.isfinite(result.bse))
    assert result.problem.T == 1


def test_single_product_markets() -> None:
    # every market has one product: delta = log s - log(1 - s), checked by hand below.
    data = simulate(markets=40, products=1, firms=1, rng=3).products
    result = _fit(data, linear="prices + x1")
    expected = np.log(data["shares"]) - np.log1p(-data["shares"])
    np.testing.assert_allclose(result.delta, expected, rtol=1e-13)  # the user's row order


def test_one_product_market_among_others(products: pd.DataFrame) -> None:
    data = products[~((products["market_ids"] == 2) & (products["product_ids"] > 0))]
    result = _fit(data)
    assert result.problem.products.markets.sizes.tolist() == [4, 4, 1] + [4] * 7
    assert np.all(np.isfinite(result.params))


def test_string_and_integer_market_ids_agree(products: pd.DataFrame) -> None:
    # the same markets labelled 0..5 or "m0".."m5" (a different sort order): equal to 1e-10.
    strings = products.assign(market_ids="m" + products["market_ids"].astype(str))
    a, b = _fit(products), _fit(strings)
    np.testing.assert_allclose(b.params, a.params, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.bse, a.bse, rtol=1e-10, atol=1e-12)


def test_error_names_string_market(products: pd.DataFrame) -> None:
    strings = products.assign(market_ids="m" + products["market_ids"].astype(str))
    strings.loc[strings["market_ids"] == "m4", "shares"] = 0.3
    with pytest.raises(DataError, match="market 'm4' sum"):
        _fit(strings)


@pytest.mark.parametrize("method", ["ols", "2sls", "2s-gmm"])
def test_row_order_does_not_matter(products: pd.DataFrame, method: str) -> None:
    # shuffled rows: the same estimates to 1e-10, standard errors too.
    shuffled = products.sample(frac=1.0, random_state=5)
    a, b = _fit(products, method=method), _fit(shuffled, method=method)
    np.testing.assert_allclose(b.params, a.params, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.bse, a.bse, rtol=1e-10, atol=1e-12)
    # per-row outputs come back in the user's (shuffled) row order
    np.testing.assert_allclose(
        pd.Series(b.own_price_elasticities(), index=shuffled.index).loc[products.index],
        a.own_price_elasticities(), rtol=1e-10)


def test_tiny_shares_stay_finite(products: pd.DataFrame) -> None:
    # shares of 1e-300 are valid: log s is about -690, the fit is finite.
    result = _fit(products.assign(shares=products["shares"] * 1e-300))
    assert np.all(np.isfinite(result.params)) and np.all(np.isfinite(result.bse))
