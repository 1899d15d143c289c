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


# --- Direct loop over markets and products (reference for the whole cars data) ---------------
#
# The course notebook (bschjerning/EconometricsB, lectures/15_blp/1_blp.ipynb) builds no
# differentiation instruments (its one excluded instrument is RXR), so no printed course number
# isolates them. The reference here is the documented formula, evaluated pair by pair: for each
# year, each characteristic is divided by its within-year SD, then for each product j the sums
# over every product k of that year (j included) are taken directly, O(J^2) per year, while the
# library uses centered segment sums and bisection over sorted runs without any pair.

def _loop_reference(cars: pd.DataFrame, ddof: int) -> dict[str, np.ndarray]:
    """Course-convention instruments for hp and log(weight) by a loop over years and products."""
    values = np.column_stack([cars["hp"].to_numpy(float), np.log(cars["weight"].to_numpy(float))])
    firms = cars["parent"].to_numpy()
    names = ("hp", "log_weight")
    out = {key: np.zeros(len(cars)) for key in (
        [f"local_{side}_{x}" for side in ("all", "own", "rival") for x in names]
        + [f"quad_all_{x}" for x in names]
        + [f"local_all_{a}_by_{b}" for a in names for b in names]
        + ["quad_all_hp_by_log_weight"])}
    for year in np.unique(cars["year"]):
        rows = np.flatnonzero(cars["year"].to_numpy() == year)
        x = values[rows]
        J = len(rows)
        scaled = np.zeros_like(x)
        for l in range(x.shape[1]):
            mean = sum(x[:, l]) / J
            sd = math.sqrt(sum((v - mean) ** 2 for v in x[:, l]) / (J - ddof))
            scaled[:, l] = x[:, l] / sd if sd > 0 else 0.0
        for j_local, j in enumerate(rows):
            same_firm = firms[rows] == firms[j]
            d = scaled - scaled[j_local]  # (J, 2): w_k - w_j for every k, j included (zero row)
            close = np.abs(d) < 1
            for l, name in enumerate(names):
                out[f"local_all_{name}"][j] = close[:, l].sum()
                out[f"local_own_{name}"][j] = (close[:, l] & same_firm).sum()
                out[f"local_rival_{name}"][j] = (close[:, l] & ~same_firm).sum()
                out[f"quad_all_{name}"][j] = (d[:, l] ** 2).sum()
                for m, other in enumerate(names):
                    # interaction: sum over close k of (w_jm - w_km) = -(sum over close k of d_m)
                    out[f"local_all_{name}_by_{other}"][j] = -d[close[:, l], m].sum()
            out["quad_all_hp_by_log_weight"][j] = (d[:, 0] * d[:, 1]).sum()
    return out


@pytest.mark.parametrize("ddof", [1, 0])
def test_course_convention_matches_direct_loop_on_all_cars(cars: pd.DataFrame, ddof: int) -> None:
    # Reference: _loop_reference above, all 9,694 products in 39 years. Counts are integers and
    # must agree exactly: the closest pair to the threshold, ||w_k - w_j| - 1|, is 2.4e-8
    # (ddof=0) and 4.6e-7 (ddof=1) in these data, far above rounding, so x / sd versus
    # x * (1 / sd) cannot flip a comparison. Sums of squares and interaction sums: the library's
    # centered segment sums and prefix sums round differently from the pairwise loop; the largest
    # difference measured is 3e-14 of the column's largest magnitude, so rtol 1e-12 with atol
    # 1e-12 times that magnitude (interaction sums can cancel to near zero) leaves a 30x margin.
    reference = _loop_reference(cars, ddof)
    frame = cars.rename(columns={"year": "market_ids", "parent": "firm_ids"})
    frame = frame.sample(frac=1.0, random_state=11)  # any row order
    built = pd.concat([
        bd.build_differentiation_instruments(frame, "hp + log(weight)", convention="course",
                                             ddof=ddof, version="local", split=split,
                                             interact=interact, prefix="")
        for split, interact in ((False, False), (False, True), (True, False))] + [
        bd.build_differentiation_instruments(frame, "hp + log(weight)", convention="course",
                                             ddof=ddof, version="quadratic", interact=True,
                                             prefix="")], axis=1).loc[cars.index]
    built.columns = [c.replace("course_", "", 1) for c in built.columns]
    for key, expected in reference.items():
        got = built[key].to_numpy()
        if key.startswith("local") and "_by_" not in key:
            assert np.array_equal(got, expected), key
        else:
            scale = float(np.max(np.abs(expected)))
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * scale, err_msg=key)
    # own + rival = pooled, and j itself sits in its own-firm count
    assert (reference["local_own_hp"] >= 1).all()
    assert np.array_equal(reference["local_own_hp"] + reference["local_rival_hp"],
                          reference["local_all_hp"])


def test_course_convention_uses_within_year_sd_not_overall(cars: pd.DataFrame) -> None:
    # Hand computation: scaling by the SD of hp over ALL years instead of within the year gives
    # a different count for the amc concord (row 1, 1980, 86 hp); the library follows the
    # within-year SD of the docstring. Pandas' std (ddof=1) of each group is the reference SD.
    frame = cars.rename(columns={"year": "market_ids"})
    local = bd.build_differentiation_instruments(frame, ["hp"], convention="course")
    hp80 = cars.loc[cars["year"] == 1980, "hp"]
    within = int((np.abs(hp80 - 86) < hp80.std()).sum())
    overall = int((np.abs(hp80 - 86) < cars["hp"].std()).sum())
    assert within != overall
    assert local.loc[1, "gh_course_local_all_hp"] == within
