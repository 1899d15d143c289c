"""Course convention of differentiation instruments on the cars data, checked by hand.

Reference: a hand computation written out in plain Python for a few cars products: the
within-year standard deviation (pandas' std, ddof=1), then for product j the count of products
k in the same year (j itself included) with |x_k - x_j| / sd < 1, and the sum of squared scaled
differences. Tolerance: counts exact, sums 1e-12 relative.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import SpecificationError


def _hand(values: list[float], j: int, ddof: int = 1) -> tuple[int, float]:
    """Count within one SD (self included) and sum of squared scaled differences, by loops."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - ddof))
    count = 0
    squares = 0.0
    for v in values:
        if abs(v - values[j]) / sd < 1:
            count += 1
        squares += ((v - values[j]) / sd) ** 2
    return count, squares


@pytest.fixture(scope="module")
def course(cars: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = cars.rename(columns={"year": "market_ids"}).sample(frac=1.0, random_state=3)
    local = bd.build_differentiation_instruments(frame, "hp + log(weight)", convention="course")
    quad = bd.build_differentiation_instruments(frame, "hp + log(weight)", convention="course",
                                                version="quadratic")
    return local, quad


@pytest.mark.parametrize("row", [0, 1, 2, 150, 4000, 9693])
def test_course_counts_match_hand_computation(cars: pd.DataFrame, course, row: int) -> None:  # type: ignore[no-untyped-def]
    # Hand computation over the product's year, for hp and log(weight).
    local, quad = course
    year = cars.loc[row, "year"]
    market = cars.loc[cars["year"] == year]
    j = list(market.index).index(row)
    for column, values in (("hp", market["hp"].tolist()),
                           ("log_weight", [math.log(w) for w in market["weight"]])):
        count, squares = _hand(values, j)
        assert local.loc[row, f"gh_course_local_all_{column}"] == count
        assert quad.loc[row, f"gh_course_quad_all_{column}"] == pytest.approx(squares, rel=1e-12)


def test_first_cars_products_by_hand(cars: pd.DataFrame, course) -> None:  # type: ignore[no-untyped-def]
    # Written out for 1980 (165 cars, hp SD 32.879 by pandas): the alfa romeo veloce has
    # 280 hp, more than one SD from every other car, so it counts only itself; the amc concord
    # (86 hp) counts the cars with 53.2 < hp < 118.8.
    local, _ = course
    market = cars.loc[cars["year"] == 1980, "hp"]
    sd = market.std()
    assert sd == pytest.approx(32.8791573407125, rel=1e-12)
    assert local.loc[0, "gh_course_local_all_hp"] == 1
    expected = int(((market > 86 - sd) & (market < 86 + sd)).sum())
    assert local.loc[1, "gh_course_local_all_hp"] == expected


def test_course_ddof_zero_and_firm_split(cars: pd.DataFrame) -> None:
    # ddof=0 (numpy's std) by hand; with split=True the own and rival counts add up to the
    # pooled count (the product itself sits in the own-firm count).
    frame = cars.rename(columns={"year": "market_ids", "parent": "firm_ids"})
    pooled = bd.build_differentiation_instruments(frame, ["hp"], convention="course", ddof=0)
    split = bd.build_differentiation_instruments(frame, ["hp"], convention="course", ddof=0,
                                                 split=True)
    market = cars.loc[cars["year"] == 2018]
    row = int(market.index[10])
    count, _ = _hand(market["hp"].tolist(), 10, ddof=0)
    assert pooled.loc[row, "gh_course_local_all_hp"] == count
    total = split["gh_course_local_own_hp"] + split["gh_course_local_rival_hp"]
    assert np.array_equal(total.to_numpy(), pooled["gh_course_local_all_hp"].to_numpy())
    assert (split["gh_course_local_own_hp"] >= 1).all()


def test_constant_characteristic_has_no_spread() -> None:
    # Closed form: a characteristic constant within a market has zero scaled differences, so
    # every product counts all J products and the quadratic sum is 0.
    d = pd.DataFrame({"market_ids": [1, 1, 1, 2, 2], "x": [2.0, 2.0, 2.0, 1.0, 3.0]})
    local = bd.build_differentiation_instruments(d, ["x"], convention="course")
    quad = bd.build_differentiation_instruments(d, ["x"], convention="course", version="quadratic")
    assert local["gh_course_local_all_x"].tolist() == [3.0, 3.0, 3.0, 1.0, 1.0]
    # market 2: sd (ddof=1) = sqrt(2), scaled difference 2 / sqrt(2), squared = 2
    assert quad["gh_course_quad_all_x"].tolist() == pytest.approx([0, 0, 0, 2.0, 2.0])


def test_unknown_options_name_valid_values() -> None:
    d = pd.DataFrame({"market_ids": [1, 1], "firm_ids": [1, 2], "x": [0.0, 1.0]})
    with pytest.raises(SpecificationError, match=r"version='cubic'.*'local', 'quadratic'"):
        bd.build_differentiation_instruments(d, ["x"], version="cubic")
    with pytest.raises(SpecificationError, match=r"convention='teaching'.*'standard', 'course'"):
        bd.build_differentiation_instruments(d, ["x"], convention="teaching")
