"""Contract: shares whose outside share or own value is rounding, not data, raise a DataError
naming the market (and product), instead of a silently different estimate or an error that
blames X2.

Reference: the Nevo (2000) cereal data with one market or one share changed by hand (issue 16,
items 4 and 9); the untouched data's logit alpha is -30.10 (the estimate it must not drift from).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.data.validation import MIN_OUTSIDE_SHARE
from blpdemand.errors import DataError

INSTRUMENTS = [f"demand_instruments{k}" for k in range(20)]


def _with_outside_share(products: pd.DataFrame, market: str, outside: float) -> pd.DataFrame:
    """Rescale one market's inside shares so that they sum to 1 - outside (up to rounding)."""
    out = products.copy()
    rows = out["market_ids"] == market
    out.loc[rows, "shares"] *= (1.0 - outside) / out.loc[rows, "shares"].sum()
    return out


def _logit(products: pd.DataFrame) -> bd.LogitResults:
    return bd.estimate_logit(products, linear="prices", instruments=INSTRUMENTS,
                             absorb="C(product_ids)")


def test_outside_share_at_rounding_level(nevo_products: pd.DataFrame) -> None:
    products = _with_outside_share(nevo_products, "C01Q1", 4e-16)
    with pytest.raises(DataError, match="'C01Q1'"):
        _logit(products)
    with pytest.raises(DataError, match="'C01Q1'"):
        bd.Problem(products, linear="prices", instruments=INSTRUMENTS)


def test_outside_share_above_threshold_is_data(nevo_products: pd.DataFrame) -> None:
    """A small but resolvable outside share (1e4 times the threshold) is accepted and moves
    only its own market's delta: alpha stays a finite estimate."""
    products = _with_outside_share(nevo_products, "C01Q1", 1e4 * MIN_OUTSIDE_SHARE)
    alpha = float(_logit(products).params["prices"])
    assert np.isfinite(alpha)


@pytest.mark.parametrize("share", [5e-324, 1e-310])
def test_subnormal_share_is_blamed_on_the_share(nevo_products: pd.DataFrame,
                                                share: float) -> None:
    products = nevo_products.copy()
    products.loc[5, "shares"] = share
    product = str(products.loc[5, "product_ids"])
    with pytest.raises(DataError, match=f"'{product}'.*'C01Q1'|'C01Q1'.*'{product}'"):
        bd.Problem(products, linear="prices", nonlinear="1 + prices",
                   instruments=INSTRUMENTS, agents=bd.Integration("halton", 10, rng=0))


def test_smallest_normal_share_is_accepted(nevo_products: pd.DataFrame) -> None:
    products = nevo_products.copy()
    products.loc[5, "shares"] = float(np.finfo(np.float64).tiny)
    problem = bd.Problem(products, linear="prices", instruments=INSTRUMENTS)
    assert np.all(np.isfinite(problem.products.logit_delta))
