"""Instruments as the lecture writes them: BLP averages, and fitted prices from instruments only.

References: (1) averages of other products' characteristics computed here with pandas groupby
(sum over the firm or the market, minus the product itself, divided by the number of others),
independent of the library's segment sums; exact up to rounding, 1e-12 relative. (2) fitted
prices against numpy ``lstsq`` on the same regressors (dummy columns for absorbed effects);
tolerance 1e-10 relative to the price scale (a well-conditioned least-squares problem).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import SpecificationError

CHARS = ["hp", "weight"]


@pytest.fixture(scope="module")
def shuffled(cars: pd.DataFrame) -> pd.DataFrame:
    frame = cars.rename(columns={"year": "market_ids", "parent": "firm_ids"})
    return frame.sample(frac=1.0, random_state=7)


def _groupby_means(frame: pd.DataFrame, x: str) -> tuple[pd.Series, pd.Series]:
    """Mean of x over the firm's other products and over rivals' products (0 if none)."""
    firm = frame.groupby(["market_ids", "firm_ids"])[x]
    market = frame.groupby("market_ids")[x]
    own_sum = firm.transform("sum") - frame[x]
    own_n = firm.transform("size") - 1
    rival_sum = market.transform("sum") - firm.transform("sum")
    rival_n = market.transform("size") - firm.transform("size")
    own = (own_sum / own_n.where(own_n > 0)).fillna(0.0)
    rival = (rival_sum / rival_n.where(rival_n > 0)).fillna(0.0)
    return own, rival


def test_blp_means_equal_groupby(shuffled: pd.DataFrame) -> None:
    z = bd.build_blp_instruments(shuffled, ["1", *CHARS], statistic="mean")
    assert z.index.equals(shuffled.index)
    for x in CHARS:
        own, rival = _groupby_means(shuffled, x)
        np.testing.assert_allclose(z[f"blp_own_{x}"], own, rtol=1e-12, atol=0)
        np.testing.assert_allclose(z[f"blp_rival_{x}"], rival, rtol=1e-12, atol=0)
    # The constant stays a count under both statistics (its mean would be 1).
    sums = bd.build_blp_instruments(shuffled, ["1", *CHARS])
    firm_n = shuffled.groupby(["market_ids", "firm_ids"])["hp"].transform("size")
    np.testing.assert_array_equal(z["blp_own_count"], firm_n - 1)
    np.testing.assert_array_equal(z["blp_own_count"], sums["blp_own_count"])
    np.testing.assert_array_equal(z["blp_rival_count"], sums["blp_rival_count"])
    # Rows with no other product of the firm: the mean of the empty set is 0 by definition.
    alone = (firm_n == 1).to_numpy()
    assert alone.any() and (z.loc[alone, "blp_own_hp"] == 0).all()


def test_blp_means_times_counts_are_the_sums(shuffled: pd.DataFrame) -> None:
    # Reference: the identity mean * count = sum, on the library's own sums (exact, 1e-12).
    sums = bd.build_blp_instruments(shuffled, ["1", *CHARS])
    means = bd.build_blp_instruments(shuffled, ["1", *CHARS], statistic="mean")
    for side in ("own", "rival"):
        for x in CHARS:
            np.testing.assert_allclose(means[f"blp_{side}_{x}"] * means[f"blp_{side}_count"],
                                       sums[f"blp_{side}_{x}"], rtol=1e-12, atol=1e-9)


def test_blp_statistic_is_checked(shuffled: pd.DataFrame) -> None:
    with pytest.raises(SpecificationError, match="median"):
        bd.build_blp_instruments(shuffled, "hp", statistic="median")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def prices_data() -> pd.DataFrame:
    rng = np.random.default_rng(17)
    n = 300
    frame = pd.DataFrame({"w": rng.normal(size=n), "v": rng.gamma(2.0, size=n),
                          "g": rng.integers(0, 7, size=n), "h": rng.integers(0, 5, size=n)})
    frame["prices"] = (1.0 + 0.5 * frame["w"] - 0.3 * frame["v"] + 0.2 * frame["g"]
                       + rng.normal(scale=0.4, size=n))
    return frame.set_index(pd.Index(rng.permutation(n) + 1000))


@pytest.mark.parametrize("exogenous", [None, "", "0", []])
def test_fit_prices_on_cost_shifters_only(prices_data: pd.DataFrame, exogenous: object) -> None:
    # Reference: numpy lstsq of prices on [w, v] (no constant: none was asked for).
    W = prices_data[["w", "v"]].to_numpy()
    p = prices_data["prices"].to_numpy()
    b = np.linalg.lstsq(W, p, rcond=None)[0]
    fit = bd.fit_prices(prices_data, exogenous, ["w", "v"])  # type: ignore[arg-type]
    np.testing.assert_allclose(fit.coefficients, b, rtol=1e-10)
    np.testing.assert_allclose(fit.p_hat, W @ b, rtol=0, atol=1e-10 * np.abs(p).max())
    assert fit.names == ("w", "v") and fit.p_hat.index.equals(prices_data.index)
    e = p - W @ b  # no constant: uncentered R^2, in [0, 1]
    assert fit.r_squared == pytest.approx(1 - (e @ e) / (p @ p), rel=1e-12)


def test_fit_prices_keyword_only_instruments_with_effects(prices_data: pd.DataFrame) -> None:
    # Reference: lstsq with explicit dummies for g and h (the effects span the constant).
    d = prices_data
    D = np.column_stack([d[["w", "v"]].to_numpy(), pd.get_dummies(d["g"]).to_numpy(float),
                         pd.get_dummies(d["h"]).to_numpy(float)[:, 1:]])
    p = d["prices"].to_numpy()
    b = np.linalg.lstsq(D, p, rcond=None)[0]
    for exogenous in (None, "1"):
        fit = bd.fit_prices(d, exogenous, cost_shifters="w + v", absorb="C(g) + C(h)")
        np.testing.assert_allclose(fit.coefficients, b[:2], rtol=1e-8)
        np.testing.assert_allclose(fit.p_hat, D @ b, rtol=0, atol=1e-8 * np.abs(p).max())


def test_fit_prices_without_any_regressor_is_named(prices_data: pd.DataFrame) -> None:
    with pytest.raises(SpecificationError, match="no regressors"):
        bd.fit_prices(prices_data, "1", absorb="C(g)")
    with pytest.raises(SpecificationError, match="no regressors"):
        bd.fit_prices(prices_data)
