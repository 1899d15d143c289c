"""BLP (1995) instruments: characteristics of the firm's other products and of rivals' products.

For characteristic x of product j of firm f in market t, as sums (BLP 1995) or as averages
(the lecture's "average characteristics of other products"),

    z_own_jt   = sum_{k in J_ft, k != j} x_kt,      z_rival_jt = sum_{k not in J_ft} x_kt,
    zbar_own_jt = z_own_jt / (J_ft - 1),            zbar_rival_jt = z_rival_jt / (J_t - J_ft).

With the constant column these are the counts of the firm's other products and of rivals'
products (counts under both statistics: the mean of a constant is 1). Computed with segment
sums over (market, firm) and market: O(N), no pairs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
import pandas as pd

from blpdemand.data.formulation import INTERCEPT
from blpdemand.data.validation import check_choice
from blpdemand.instruments._prepare import (
    Characteristics,
    clean,
    group_codes,
    prepare,
    read_characteristics,
)

Statistic = Literal["sum", "mean"]
STATISTICS: tuple[Statistic, ...] = ("sum", "mean")


def build_blp_instruments(products: pd.DataFrame, characteristics: Characteristics = "1", *,
                          statistic: Statistic = "sum", prefix: str = "blp_",
                          columns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Sums (or means) of characteristics over the firm's other products and rivals' products.

    z_own_jt = sum_{k in J_ft \\ {j}} x_kt and z_rival_jt = sum_{k notin J_ft} x_kt
    (Berry, Levinsohn and Pakes 1995, section 5.1); with ``statistic="mean"`` these are divided
    by the number of products summed, J_ft - 1 and J_t - J_ft.

    Parameters
    ----------
    products : DataFrame with ``market_ids`` and ``firm_ids`` (rename with ``columns=``), any
        row order.
    characteristics : formula (``"1 + hpwt + air"``; the intercept gives counts) or names.
    statistic : ``"sum"`` (BLP, PyBLP) or ``"mean"``. The mean over an empty set (a firm's
        only product in the market, or a market with a single firm) is defined as 0, the value
        of the empty sum; the count column (the intercept, a count under both statistics)
        tells these rows apart.
    prefix : prefix of the output columns ``{prefix}own_{x}`` and ``{prefix}rival_{x}``; the
        constant is named ``count``.
    columns : map from reserved name to the user's column, e.g. ``{"firm_ids": "parent"}``.

    Returns
    -------
    DataFrame (N, 2K) with the input's index and row order: all own columns, then all rival
    columns (the order of ``pyblp.build_blp_instruments``).

    Examples
    --------
    >>> d = pd.DataFrame({"market_ids": [1, 1, 1], "firm_ids": [1, 1, 2], "x": [1.0, 2.0, 4.0]})
    >>> build_blp_instruments(d, "1 + x")["blp_rival_x"].tolist()
    [4.0, 4.0, 3.0]
    >>> build_blp_instruments(d, "x", statistic="mean")["blp_rival_x"].tolist()
    [4.0, 4.0, 1.5]
    """
    check_choice(statistic, STATISTICS, name="statistic")
    data = prepare(products, columns=columns, require=("market_ids", "firm_ids"))
    X = read_characteristics(characteristics, data.frame, intercept=None)
    market = data.markets.codes
    pair = group_codes(market, data.codes("firm_ids"))
    firm_totals = np.zeros((int(pair.max()) + 1, X.K))
    np.add.at(firm_totals, pair, X.values)
    own = firm_totals[pair] - X.values
    market_totals = data.markets.segment_sum(X.values)
    rival = data.markets.expand(market_totals) - X.values - own
    if statistic == "mean":
        firm_size = np.bincount(pair).astype(np.float64)[pair]
        market_size = data.markets.expand(data.markets.sizes.astype(np.float64))
        constant = np.array([n == INTERCEPT for n in X.names])
        own = np.where(constant, own, _mean(own, firm_size - 1.0))
        rival = np.where(constant, rival, _mean(rival, market_size - firm_size))
    labels = ["count" if n == INTERCEPT else clean(n) for n in X.names]
    names = [f"{prefix}own_{n}" for n in labels] + [f"{prefix}rival_{n}" for n in labels]
    return data.to_frame(np.column_stack([own, rival]), names)


def _mean(total: np.ndarray, count: np.ndarray) -> np.ndarray:
    """(N, K) totals / (N,) counts, 0 where the count is 0 (the empty sum)."""
    safe = np.where(count > 0, count, 1.0)
    out: np.ndarray = np.where(count[:, None] > 0, total / safe[:, None], 0.0)
    return out
