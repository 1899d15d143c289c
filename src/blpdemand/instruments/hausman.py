"""Hausman (1996) instruments: the same product's price (or any column) in other markets.

    z_jt = mean_{s in O(j, t)} x_js,   O(j, t) = markets s != t where product j is sold,

optionally only markets in the same period (``within="quarter"``: same value of that column)
and/or only markets of other regions (``across="city_ids"``: a different value). Valid when
demand shocks are independent across those markets while cost shocks are common.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from blpdemand._types import IntArray
from blpdemand.data.validation import check_unique_products, require_columns, require_finite
from blpdemand.errors import DataError, SpecificationError
from blpdemand.instruments._prepare import clean, group_codes, prepare

ON_SINGLE = ("raise", "nan")


def build_hausman_instruments(products: pd.DataFrame, column: str | Sequence[str] = "prices", *,
                              within: str | None = None, across: str | None = None,
                              on_single: str = "raise", prefix: str = "hausman_",
                              columns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Mean of ``column`` for the same product in the other markets.

    z_jt = (sum_{s in O} x_js) / |O| with O the other markets selling j (Hausman 1996;
    Nevo 2001 uses the same brand's price in other cities of the same quarter).

    Parameters
    ----------
    products : DataFrame with ``market_ids`` and ``product_ids``, any row order.
    column : column(s) to average, prices by default.
    within : only markets with the same value of this column (e.g. the period).
    across : only markets with a different value of this column (e.g. the region).
    on_single : "raise" (DataError naming the products with no other market) or "nan".
    prefix : output names are ``{prefix}{column}``.
    columns : map from reserved name to the user's column.

    Returns
    -------
    DataFrame (N, len(column)) with the input's index and row order.

    Examples
    --------
    >>> d = pd.DataFrame({"market_ids": [1, 1, 2, 2], "product_ids": ["a", "b", "a", "b"],
    ...                   "prices": [1.0, 2.0, 3.0, 5.0]})
    >>> build_hausman_instruments(d)["hausman_prices"].tolist()
    [3.0, 5.0, 1.0, 2.0]
    """
    if on_single not in ON_SINGLE:
        raise SpecificationError(f"on_single={on_single!r} is unknown; valid: {list(ON_SINGLE)}")
    names = [column] if isinstance(column, str) else [str(c) for c in column]
    extra = [c for c in (within, across) if c is not None]
    # within/across are required like the ids: a missing value would get code -1 and could
    # silently join another product's pool in group_codes
    data = prepare(products, columns=columns, require=("market_ids", "product_ids", *extra))
    frame = data.frame
    require_columns(frame, names + extra, what="product data")
    require_finite(frame, names, market_column="market_ids")
    check_unique_products(frame, "market_ids", "product_ids")
    x = frame[names].to_numpy(dtype=np.float64)
    product = data.codes("product_ids")
    period = data.codes(within) if within is not None else np.zeros_like(product)
    pool = group_codes(product, period)
    total, count = _sums(pool, x)
    if across is not None:
        cell = group_codes(product, period, data.codes(across))
        same_total, same_count = _sums(cell, x)
        total, count = total - same_total, count - same_count
    else:
        total, count = total - x, count - 1
    single = count == 0
    if single.any() and on_single == "raise":
        rows = np.flatnonzero(single)
        where = " in the same " + repr(within) if within is not None else ""
        where += f" with another {across!r}" if across is not None else ""
        examples = [f"{_plain(frame['product_ids'].iloc[r])!r} in market "
                    f"{_plain(frame['market_ids'].iloc[r])!r}" for r in rows[:3]]
        raise DataError(
            f"{rows.size} product(s) are sold in no other market{where}, so they have no Hausman "
            f"instrument: {', '.join(examples)}; pass on_single='nan' and drop those rows, or "
            "widen the pool of markets")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(single[:, None], np.nan, total / np.maximum(count, 1)[:, None])
    return data.to_frame(mean, [prefix + clean(n) for n in names])


def _plain(value: object) -> object:
    """numpy scalars as Python values, for readable messages."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _sums(codes: IntArray, x: np.ndarray) -> tuple[np.ndarray, IntArray]:
    """Per-row group totals (N, L) and group counts (N,)."""
    groups = int(codes.max()) + 1
    totals = np.zeros((groups, x.shape[1]))
    np.add.at(totals, codes, x)
    counts = np.bincount(codes, minlength=groups)
    return totals[codes], counts[codes]
