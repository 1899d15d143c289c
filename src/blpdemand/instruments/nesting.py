"""Instruments for the log within-nest share of the nested logit: nest sizes and nest sums.

For product j in nest g of market t, with G_gt the products of nest g in market t,

    count_jt = |G_gt|,      z_other_jt = sum_{k in G_gt, k != j} x_kt,

the number of products in the nest (the instrument of PyBLP's nested logit tutorial) and BLP
sums of characteristics over the other products of the nest (Berry 1994; Berry, Levinsohn and
Pakes 1995; Verboven 1996). Segment sums over (market, nest) cells: O(N), no pairs.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from blpdemand.data.validation import require_columns
from blpdemand.errors import DataError
from blpdemand.instruments._prepare import (
    Characteristics,
    clean,
    group_codes,
    prepare,
    read_characteristics,
)


def build_nesting_instruments(products: pd.DataFrame,
                              characteristics: Characteristics | None = None, *,
                              nesting: str = "nesting_ids", prefix: str = "nest_",
                              columns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Products per nest and sums of characteristics over the nest's other products.

    count_jt = |G_gt| and z_other_jt = sum_{k in G_gt \\ {j}} x_kt, G_gt the products of j's
    nest g in market t (Berry 1994; Verboven 1996).

    Parameters
    ----------
    products : DataFrame with ``market_ids`` and the ``nesting`` column, any row order.
    characteristics : formula (``"sugar + mushy"``) or names; None for the count only. The
        constant is dropped (its sum is the count minus one).
    nesting : the column of nest ids.
    prefix : prefix of the output columns ``{prefix}count`` and ``{prefix}other_{x}``.
    columns : map from reserved name to the user's column, e.g. ``{"market_ids": "year"}``.

    Returns
    -------
    DataFrame (N, 1 + K) with the input's index and row order.

    Examples
    --------
    >>> d = pd.DataFrame({"market_ids": [1, 1, 1], "nesting_ids": [0, 0, 1], "x": [1.0, 2.0, 4.0]})
    >>> build_nesting_instruments(d, "x")["nest_other_x"].tolist()
    [2.0, 1.0, 0.0]
    """
    require_columns(products, [nesting], what="product data (nesting)")
    data = prepare(products, columns=columns)
    nests = data.frame[nesting]
    if nests.isna().any():
        raise DataError(f"nesting column '{nesting}' has missing values; give every product a nest")
    cells = group_codes(data.markets.codes, data.codes(nesting))
    count = np.bincount(cells).astype(np.float64)[cells]
    X = read_characteristics(characteristics, data.frame, intercept=False, allow_empty=True)
    totals = np.zeros((int(cells.max()) + 1, X.K))
    np.add.at(totals, cells, X.values)
    other = totals[cells] - X.values
    names = [f"{prefix}count"] + [f"{prefix}other_{clean(n)}" for n in X.names]
    return data.to_frame(np.column_stack([count, other]), names)
