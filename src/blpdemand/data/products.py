"""Product data: one row per (market, product), validated once and sorted by market.

Reserved column names follow the field's convention: ``market_ids``, ``product_ids``,
``firm_ids``, ``shares``, ``prices``. Any other name can be mapped with ``columns=``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from blpdemand._types import FloatArray, IntArray
from blpdemand.data.markets import MarketIndex, sort_by_market
from blpdemand.data.validation import (
    check_aligned,
    check_id_values,
    check_options,
    check_shares,
    check_unique_products,
    require_columns,
    require_finite,
    require_nonempty,
    require_unique_names,
)

RESERVED = ("market_ids", "product_ids", "firm_ids", "shares", "prices")


@dataclass(frozen=True, slots=True)
class ProductData:
    """Validated product data sorted by market.

    Attributes
    ----------
    frame : the user's columns, rows sorted (stably) by market, reserved names applied.
    markets : the MarketIndex of the sorted rows.
    order : (N,) original row position of each sorted row (``user[order[k]] == sorted[k]``).
    shares : (N,) observed market shares s_jt.
    """

    frame: pd.DataFrame
    markets: MarketIndex
    order: IntArray
    shares: FloatArray = field(repr=False)
    index: pd.Index | None = field(default=None, repr=False)

    def check_aligned(self, values: object, *, what: str) -> None:
        """Per-product values are read by position: refuse a Series/DataFrame whose index holds
        the user's product labels in another order (it would pair the wrong rows)."""
        if self.index is not None and isinstance(values, (pd.Series, pd.DataFrame)):
            check_aligned(values.index, self.index, what=what)

    @property
    def N(self) -> int:
        return len(self.frame)

    @property
    def log_outside_shares(self) -> FloatArray:
        """(N,) log s_0t expanded to products, s_0t = 1 - sum_j s_jt."""
        outside = 1.0 - self.markets.segment_sum(self.shares)
        return np.log(self.markets.expand(outside))

    @property
    def logit_delta(self) -> FloatArray:
        """(N,) Berry (1994) inversion delta_jt = log s_jt - log s_0t."""
        return np.log(self.shares) - self.log_outside_shares

    def has(self, column: str) -> bool:
        return column in self.frame.columns

    def array(self, column: str) -> np.ndarray:
        """One column as a numpy array (sorted order)."""
        return np.asarray(self.frame[column].to_numpy())

    def unsort(self, values: np.ndarray) -> np.ndarray:
        """Put per-row values (sorted order) back in the user's row order."""
        values = np.asarray(values)
        out = np.empty_like(values)
        out[self.order] = values
        return out

    def sort(self, values: np.ndarray) -> np.ndarray:
        """Put per-row values given in the user's row order into sorted order."""
        return np.asarray(values)[self.order]


def load_products(data: pd.DataFrame, *, columns: Mapping[str, str] | None = None,
                  require: tuple[str, ...] = ("market_ids", "shares")) -> ProductData:
    """Validate product data and sort it by market.

    Parameters
    ----------
    data : DataFrame with one row per (market, product).
    columns : map from reserved name to the user's column, e.g. ``{"market_ids": "year"}``.
    require : reserved names that must be present (after mapping).

    Examples
    --------
    >>> import pandas as pd
    >>> d = load_products(pd.DataFrame({"market_ids": [1, 1], "shares": [0.2, 0.3]}))
    >>> round(float(d.logit_delta[0]), 4)
    -0.9163
    """
    require_columns(data, [], what="product data")
    require_unique_names(data, what="product data")
    require_nonempty(data, what="product data")
    if columns is not None and not isinstance(columns, Mapping):
        from blpdemand.errors import SpecificationError

        raise SpecificationError(f"columns= must map reserved names to your columns, e.g. "
                                 f"{{'market_ids': 'year'}}; got {type(columns).__name__}")
    columns = dict(columns or {})
    check_options(columns, RESERVED, what="reserved column name(s) in columns=")
    frame = data.copy()
    for reserved, user in columns.items():
        require_columns(frame, [user], what="product data")
        if reserved != user:
            if reserved in frame.columns:
                frame = frame.drop(columns=[reserved])
            # Copy, not rename: the user's name stays usable in formulas and absorb.
            frame[reserved] = frame[user]
    require_columns(frame, require, what="product data")
    if frame["market_ids"].isna().any():
        raise_row = int(np.flatnonzero(frame["market_ids"].isna().to_numpy())[0])
        from blpdemand.errors import DataError

        raise DataError(f"column 'market_ids' has missing values (first at row {raise_row})")
    for ids in ("market_ids", "product_ids", "firm_ids"):
        if ids in frame.columns:
            check_id_values(frame[ids].to_numpy(),
                            what=f"column '{columns.get(ids, ids)}' of product data")
    numeric = [c for c in ("shares", "prices") if c in frame.columns]
    require_finite(frame, numeric, market_column="market_ids")
    frame, markets, order = sort_by_market(frame, "market_ids")
    shares = frame["shares"].to_numpy(dtype=np.float64)
    products = frame["product_ids"].to_numpy() if "product_ids" in frame.columns else None
    check_shares(shares, frame["market_ids"].to_numpy(), product_ids=products)
    if "product_ids" in frame.columns:
        check_unique_products(frame, "market_ids", "product_ids")
    return ProductData(frame=frame, markets=markets, order=order, shares=shares, index=data.index)
