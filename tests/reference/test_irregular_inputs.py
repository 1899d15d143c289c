"""Instrument builders, integration rules and the Salanie-Wolak approximation on irregular inputs.

Earlier bugs hid behind regular test data (balanced, sorted, symmetric). Here every input is
irregular: shuffled rows with a non-default string index, string market/firm/product ids,
markets with one product, a market owned by one firm, single-product firms, constant and tied
characteristics, unbalanced panels, unequal agent counts and weights, absorbed effects.
References: PyBLP 1.3.0 live, brute-force loops over rows written here, closed-form moments of
N(0, I), a hand-written nonlinear 2SLS (scipy least_squares), and full BLP for small sigma.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import DataError
from blpdemand.instruments.demographic import (
    build_demographic_instruments,
    build_salanie_wolak_terms,
)
from blpdemand.instruments.differentiation import build_differentiation_instruments
from blpdemand.instruments.fitted_prices import fit_prices
from blpdemand.instruments.hausman import build_hausman_instruments

pyblp = pytest.importorskip("pyblp")
pyblp.options.verbose = False


# ----------------------------------------------------------------------------- instruments
def _irregular_products(seed: int = 3) -> pd.DataFrame:
    """Markets 'zeta' (one product), 'alpha' (four products, one firm), 'mid' (a single-product
    firm F3 among multi-product firms), 'beta' (two products, two firms); x continuous, c
    constant, y integer with ties; rows shuffled, string index."""
    rng = np.random.default_rng(seed)
    firms = {"zeta": ["F1"], "alpha": ["F2"] * 4, "mid": ["F1", "F1", "F3", "F2", "F2", "F2"],
             "beta": ["F2", "F1"]}
    rows = [(m, f) for m, fs in firms.items() for f in fs]
    frame = pd.DataFrame(rows, columns=["market_ids", "firm_ids"])
    frame["x"] = rng.normal(size=len(frame))
    frame["c"] = 2.0
    frame["y"] = rng.integers(0, 3, len(frame)).astype(float)
    frame = frame.sample(frac=1.0, random_state=1)
    frame.index = [f"row{i}" for i in range(len(frame))][::-1]
    return frame


def test_blp_instruments_equal_pyblp_on_irregular_markets() -> None:
    # Reference: pyblp.build_blp_instruments on the same shuffled frame (PyBLP keeps row order).
    # Tolerance 1e-12 absolute: sums of at most 6 values of order 1.
    frame = _irregular_products()
    ours = bd.build_blp_instruments(frame, "1 + x + c + y")
    assert ours.index.equals(frame.index)
    with np.errstate(all="ignore"):
        ref = pyblp.build_blp_instruments(pyblp.Formulation("1 + x + c + y"), frame)
    np.testing.assert_allclose(ours.to_numpy(), ref, rtol=0, atol=1e-12)
    # the one-product market has no other products at all; the one-firm market no rivals
    zeta = ours.loc[(frame["market_ids"] == "zeta").to_numpy()]
    assert np.all(zeta.to_numpy() == 0.0)
    alpha = ours.loc[(frame["market_ids"] == "alpha").to_numpy()]
    assert np.all(alpha["blp_rival_count"] == 0.0) and np.all(alpha["blp_own_count"] == 3.0)


@pytest.mark.parametrize("version", ["local", "quadratic"])
@pytest.mark.parametrize("interact", [False, True])
def test_differentiation_instruments_equal_pyblp_on_irregular_markets(version: str,
                                                                      interact: bool) -> None:
    # Reference: pyblp.build_differentiation_instruments (same SD of pairwise differences, pooled
    # over markets; the constant column c gives SD 0 and all-zero columns on both sides).
    # Tolerance 1e-12 absolute: counts are exact, quadratic sums are O(10) with a few roundings.
    frame = _irregular_products()
    ours = build_differentiation_instruments(frame, "x + c + y", version=version,
                                             interact=interact)
    with np.errstate(all="ignore"):
        ref = pyblp.build_differentiation_instruments(pyblp.Formulation("0 + x + c + y"), frame,
                                                      version=version, interact=interact)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours.to_numpy(), ref, rtol=0, atol=1e-12)


def _unbalanced_panel(seed: int = 5) -> pd.DataFrame:
    """Three cities x two quarters; each market sells a random 1..5 of products a..g."""
    rng = np.random.default_rng(seed)
    rows = []
    for city in ("c1", "c2", "c3"):
        for quarter in ("q1", "q2"):
            for product in rng.choice(list("abcdefg"), size=rng.integers(1, 6), replace=False):
                rows.append((f"{city}-{quarter}", city, quarter, product))
    frame = pd.DataFrame(rows, columns=["market_ids", "city", "quarter", "product_ids"])
    frame["prices"] = rng.normal(size=len(frame))
    frame = frame.sample(frac=1.0, random_state=2)
    frame.index = [f"r{i}" for i in range(len(frame))]
    return frame


@pytest.mark.parametrize("within, across", [(None, None), ("quarter", None), (None, "city"),
                                            ("quarter", "city")])
def test_hausman_on_unbalanced_panel_equals_row_loop(within: str | None,
                                                     across: str | None) -> None:
    # Reference: for each row, the mean price of the same product in the other markets of the
    # pool, by a pandas filter; NaN where the pool is empty. Tolerance 1e-14 (means of <= 5).
    frame = _unbalanced_panel()
    ours = build_hausman_instruments(frame, within=within, across=across, on_single="nan")
    assert ours.index.equals(frame.index)
    ref = []
    for _, row in frame.iterrows():
        pool = frame[(frame["product_ids"] == row["product_ids"])
                     & (frame["market_ids"] != row["market_ids"])]
        if within is not None:
            pool = pool[pool[within] == row[within]]
        if across is not None:
            pool = pool[pool[across] != row[across]]
        ref.append(pool["prices"].mean() if len(pool) else np.nan)
    np.testing.assert_allclose(ours["hausman_prices"].to_numpy(), ref, rtol=0, atol=1e-14)


def test_hausman_missing_period_is_an_error_not_another_products_pool() -> None:
    # Bug found here: a missing 'quarter' got factor code -1, which collided in the combined
    # (product, quarter) code with another product's last quarter, so product 'a' in quarter 2
    # got product 'b''s price 100 as its Hausman instrument. Missing within/across values are
    # now a DataError naming the column and the row, like missing ids.
    frame = pd.DataFrame({"market_ids": [1, 2, 3, 4], "product_ids": ["a", "a", "b", "b"],
                          "quarter": [1.0, 2.0, np.nan, 1.0], "city": ["x", "y", None, "x"],
                          "prices": [1.0, 2.0, 100.0, 8.0]})
    with pytest.raises(DataError, match=r"'quarter'.*row 2"):
        build_hausman_instruments(frame, within="quarter", on_single="nan")
    with pytest.raises(DataError, match=r"'city'.*row 2"):
        build_hausman_instruments(frame, across="city", on_single="nan")
    # complete data: 'a' in quarter 2 has no other market in quarter 2 -> NaN, never 100
    complete = frame.assign(quarter=[1.0, 2.0, 2.0, 1.0])
    out = build_hausman_instruments(complete, within="quarter", on_single="nan")["hausman_prices"]
    assert np.isnan(out.iloc[1]) and np.isnan(out.iloc[2])


def _weighted_agents(markets: list[str], seed: int = 11) -> pd.DataFrame:
    """1..6 agents per market with unequal weights (not normalized), shuffled, offset index,
    plus an agent in a market without products (must be ignored)."""
    rng = np.random.default_rng(seed)
    rows = [(m, rng.uniform(0.1, 3.0), rng.normal()) for m in markets
            for _ in range(rng.integers(1, 7))]
    rows.append(("no-products", 1.0, 100.0))
    agents = pd.DataFrame(rows, columns=["market_ids", "weights", "income"])
    agents = agents.sample(frac=1.0, random_state=3)
    agents.index = agents.index + 1000
    return agents


def test_demographic_and_salanie_wolak_terms_with_unequal_weighted_agents() -> None:
    # Reference: per row, np.average of the market's agents with their weights (mean and
    # population variance), e_t = sum_k s_k x_k by a pandas filter. Tolerance 1e-12.
    rng = np.random.default_rng(7)
    products = _unbalanced_panel().assign(x=lambda f: rng.normal(size=len(f)),
                                          shares=lambda f: rng.uniform(0.01, 0.1, len(f)))
    agents = _weighted_agents(sorted(products["market_ids"].unique()))
    demo = build_demographic_instruments(products, agents, ["x"], ["income"])
    terms = build_salanie_wolak_terms(products, ["1", "x"], agents, ["income"])
    assert demo.index.equals(products.index) and terms.index.equals(products.index)
    ref_demo, ref_terms = [], []
    for _, row in products.iterrows():
        a = agents[agents["market_ids"] == row["market_ids"]]
        mean = np.average(a["income"], weights=a["weights"])
        var = np.average((a["income"] - mean) ** 2, weights=a["weights"])
        market = products[products["market_ids"] == row["market_ids"]]
        d1 = 0.5 - market["shares"].sum()
        dx = (row["x"] / 2 - (market["shares"] * market["x"]).sum()) * row["x"]
        ref_demo.append(mean * row["x"])
        ref_terms.append([d1, dx, var * d1, var * dx])
    np.testing.assert_allclose(demo.iloc[:, 0].to_numpy(), ref_demo, rtol=0, atol=1e-12)
    assert list(terms.columns) == ["sw_1", "sw_x", "sw_var_income_x_1", "sw_var_income_x_x"]
    np.testing.assert_allclose(terms.to_numpy(), ref_terms, rtol=0, atol=1e-12)


def test_fitted_prices_with_absorbed_effects_on_shuffled_rows() -> None:
    # Reference: OLS with explicit city and quarter dummies (numpy lstsq) on the same rows;
    # p_hat includes the absorbed effects. Tolerance 1e-10 (two-way demeaning iterates).
    rng = np.random.default_rng(9)
    products = _unbalanced_panel()
    products = products.assign(x=rng.normal(size=len(products)), w=rng.normal(size=len(products)))
    products["prices"] = products["x"] + products["w"] + rng.normal(size=len(products))
    first = fit_prices(products, ["x"], ["w"], absorb="C(city) + C(quarter)")
    dummies = pd.get_dummies(products[["city", "quarter"]], drop_first=True).astype(float)
    Z = np.column_stack([np.ones(len(products)), products[["x", "w"]], dummies])
    b = np.linalg.lstsq(Z, products["prices"].to_numpy(), rcond=None)[0]
    assert first.p_hat.index.equals(products.index)
    np.testing.assert_allclose(first.p_hat.to_numpy(), Z @ b, rtol=0, atol=1e-10)
    np.testing.assert_allclose(first.coefficients, b[1:3], rtol=0, atol=1e-10)
