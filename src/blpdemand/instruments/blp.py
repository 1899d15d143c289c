"""BLP (1995) "sums of characteristics" instruments: other products of the firm, rivals' products.

For characteristic x of product j of firm f in market t,

    z_own_jt   = sum_{k in J_ft, k != j} x_kt,      z_rival_jt = sum_{k not in J_ft} x_kt.

With the constant column these are the counts of the firm's other products and of rivals'
products. Computed with segment sums over (market, firm) and market: O(N), no pairs.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from blpdemand.data.formulation import INTERCEPT
from blpdemand.instruments._prepare import (
    Characteristics,
    clean,
    group_codes,
    prepare,
    read_characteristics,
)


def build_blp_instruments(products: pd.DataFrame, characteristics: Characteristics = "1", *,
                          prefix: str = "blp_", columns: Mapping[str, str] | None = None
                          ) -> pd.DataFrame:
    """Sums of characteristics over the firm's other products and over rivals' products.

    z_own_jt = sum_{k in J_ft \\ {j}} x_kt and z_rival_jt = sum_{k notin J_ft} x_kt
    (Berry, Levinsohn and Pakes 1995, section 5.1).

    Parameters
    ----------
    products : DataFrame with ``market_ids`` and ``firm_ids`` (rename with ``columns=``), any
        row order.
    characteristics : formula (``"1 + hpwt + air"``; the intercept gives counts) or names.
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
    """
    data = prepare(products, columns=columns, require=("market_ids", "firm_ids"))
    X = read_characteristics(characteristics, data.frame, intercept=None)
    market = data.markets.codes
    pair = group_codes(market, data.codes("firm_ids"))
    firm_totals = np.zeros((int(pair.max()) + 1, X.K))
    np.add.at(firm_totals, pair, X.values)
    own = firm_totals[pair] - X.values
    market_totals = data.markets.segment_sum(X.values)
    rival = data.markets.expand(market_totals) - X.values - own
    labels = ["count" if n == INTERCEPT else clean(n) for n in X.names]
    names = [f"{prefix}own_{n}" for n in labels] + [f"{prefix}rival_{n}" for n in labels]
    return data.to_frame(np.column_stack([own, rival]), names)
