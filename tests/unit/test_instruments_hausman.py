"""Hausman instruments against a direct pandas computation on the Nevo data.

Reference: pandas group-by sums (same product, same quarter) minus the own row, and an explicit
self-join for the "other cities" variant. Tolerance: 1e-12 absolute (prices are about 0.1).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import DataError, SpecificationError


def test_same_product_other_markets_equals_groupby(nevo_products: pd.DataFrame) -> None:
    # Reference: (sum over the product's rows - own price) / (count - 1) by pandas groupby.
    d = nevo_products.sample(frac=1.0, random_state=1)
    ours = bd.build_hausman_instruments(d)
    g = d.groupby("product_ids")["prices"]
    ref = (g.transform("sum") - d["prices"]) / (g.transform("count") - 1)
    assert ours.index.equals(d.index)
    assert np.max(np.abs(ours["hausman_prices"] - ref)) < 1e-12


def test_within_quarter_equals_groupby(nevo_products: pd.DataFrame) -> None:
    # Reference: Nevo (2001)'s instrument, other cities in the same quarter, by groupby.
    d = nevo_products.sample(frac=1.0, random_state=2)
    ours = bd.build_hausman_instruments(d, ["prices", "sugar"], within="quarter")
    for column in ("prices", "sugar"):
        g = d.groupby(["product_ids", "quarter"])[column]
        ref = (g.transform("sum") - d[column]) / (g.transform("count") - 1)
        assert np.max(np.abs(ours[f"hausman_{column}"] - ref)) < 1e-12


def test_across_cities_equals_self_join(nevo_products: pd.DataFrame) -> None:
    # Reference: a self-join on product and quarter keeping rows of a different city, averaged.
    d = nevo_products.reset_index(drop=True)
    ours = bd.build_hausman_instruments(d, within="quarter", across="city_ids")
    left = d[["product_ids", "quarter", "city_ids"]].reset_index()
    right = d[["product_ids", "quarter", "city_ids", "prices"]]
    pairs = left.merge(right, on=["product_ids", "quarter"], suffixes=("", "_other"))
    pairs = pairs[pairs["city_ids"] != pairs["city_ids_other"]]
    ref = pairs.groupby("index")["prices"].mean().reindex(d.index)
    assert np.max(np.abs(ours["hausman_prices"] - ref)) < 1e-12


def test_single_market_product_policy() -> None:
    # Product "c" is sold in market 1 only: raise naming it, or NaN on request.
    d = pd.DataFrame({"market_ids": [1, 1, 1, 2, 2], "product_ids": ["a", "b", "c", "a", "b"],
                      "prices": [1.0, 2.0, 3.0, 5.0, 7.0]})
    with pytest.raises(DataError, match=r"'c' in market 1.*on_single='nan'"):
        bd.build_hausman_instruments(d)
    out = bd.build_hausman_instruments(d, on_single="nan")["hausman_prices"]
    assert out.iloc[:2].tolist() == [5.0, 7.0] and np.isnan(out.iloc[2])
    with pytest.raises(SpecificationError, match=r"on_single='drop'.*'raise', 'nan'"):
        bd.build_hausman_instruments(d, on_single="drop")


def test_errors_name_the_column() -> None:
    d = pd.DataFrame({"market_ids": [1, 2], "product_ids": ["a", "a"], "prices": [1.0, np.nan]})
    with pytest.raises(DataError, match="'prices'.*NaN"):
        bd.build_hausman_instruments(d)
    with pytest.raises(DataError, match=r"no column\(s\) \['region'\]"):
        bd.build_hausman_instruments(d.fillna(2.0), across="region")
    duplicated = pd.DataFrame({"market_ids": [1, 1], "product_ids": ["a", "a"],
                               "prices": [1.0, 2.0]})
    with pytest.raises(DataError, match="'a'"):
        bd.build_hausman_instruments(duplicated)
