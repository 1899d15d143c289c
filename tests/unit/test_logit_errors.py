"""Bad input to estimate_logit gets a clear error naming the culprit (column, market, product)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from blpdemand.errors import DataError, SpecificationError
from blpdemand.model.simulation import simulate
from blpdemand.results.logit import estimate_logit


@pytest.fixture()
def products() -> pd.DataFrame:
    return simulate(markets=6, products=4, rng=2).products


def _fit(data: pd.DataFrame, **kwargs):
    options = {"linear": "prices + x1 + x2", "instruments": ["w1", "w2"]}
    options.update(kwargs)
    return estimate_logit(data, **options)


def test_missing_column(products: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="shares"):
        _fit(products.drop(columns="shares"))
    with pytest.raises(DataError, match="sugar"):
        _fit(products, linear="prices + sugar")
    with pytest.raises(DataError, match="w9"):
        _fit(products, instruments=["w9"])


def test_nan(products: pd.DataFrame) -> None:
    products.loc[5, "prices"] = np.nan
    with pytest.raises(DataError, match="'prices'.*NaN"):
        _fit(products)


def test_shares_outside_unit_interval(products: pd.DataFrame) -> None:
    products.loc[3, "shares"] = 0.0
    with pytest.raises(DataError, match=r"\(0, 1\)"):
        _fit(products)


def test_market_shares_sum_to_one(products: pd.DataFrame) -> None:
    products.loc[products.market_ids == 4, "shares"] = 0.3
    with pytest.raises(DataError, match="market 4 sum to 1.2"):
        _fit(products)


def test_duplicate_product(products: pd.DataFrame) -> None:
    products.loc[products.index[1], "product_ids"] = products.loc[products.index[0], "product_ids"]
    with pytest.raises(DataError, match="product 0 appears 2 times in market 0"):
        _fit(products)


def test_too_few_instruments(products: pd.DataFrame) -> None:
    with pytest.raises(SpecificationError, match="too few instruments"):
        _fit(products, endogenous=("prices", "x1"), instruments=["w1"])
    with pytest.raises(SpecificationError, match="instruments"):
        _fit(products, instruments=None)


def test_collinear_regressor_named(products: pd.DataFrame) -> None:
    products["x3"] = 2.0 * products["x1"]
    with pytest.raises(SpecificationError, match="'x3'"):
        _fit(products, linear="prices + x1 + x3")


def test_bad_options(products: pd.DataFrame) -> None:
    with pytest.raises(SpecificationError, match="method='liml'"):
        _fit(products, method="liml")
    with pytest.raises(SpecificationError, match="covariance='hc3'"):
        _fit(products, covariance="hc3")
    with pytest.raises(SpecificationError, match="clusters"):
        _fit(products, covariance="clustered")
    with pytest.raises(DataError, match="firm"):
        _fit(products, covariance="clustered", clusters="firm")
