"""Shared preparation for instrument builders: sort by market, read characteristics, name columns.

Every builder takes the user's product DataFrame in any row order and returns a DataFrame with
the same index and row order. Internally rows are stably sorted by market (``MarketIndex``) so
that markets are contiguous; results are put back with ``order``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from blpdemand._types import FloatArray, IntArray
from blpdemand.data.formulation import INTERCEPT, DesignMatrix, build_matrix
from blpdemand.data.markets import MarketIndex, sort_by_market
from blpdemand.data.validation import require_columns, require_finite, require_nonempty
from blpdemand.errors import SpecificationError

Characteristics = str | Sequence[str]


@dataclass(frozen=True, slots=True)
class SortedProducts:
    """Product rows sorted (stably) by market.

    Attributes
    ----------
    frame : the user's columns with reserved names applied, rows sorted by market.
    markets : MarketIndex of the sorted rows.
    order : (N,) original position of each sorted row.
    index : the user's index, in the user's row order.
    """

    frame: pd.DataFrame
    markets: MarketIndex
    order: IntArray
    index: pd.Index

    @property
    def N(self) -> int:
        return len(self.frame)

    def codes(self, column: str) -> IntArray:
        """(N,) integer codes of a column (sorted rows)."""
        return np.asarray(pd.factorize(self.frame[column], sort=True)[0], dtype=np.int64)

    def to_frame(self, values: FloatArray, names: Sequence[str]) -> pd.DataFrame:
        """(N, K) values in sorted order -> DataFrame in the user's row order and index."""
        values = np.asarray(values, dtype=np.float64)
        values = values[:, None] if values.ndim == 1 else values
        out = np.empty_like(values)
        out[self.order] = values
        return pd.DataFrame(out, index=self.index, columns=unique_names(list(names)))


def prepare(products: pd.DataFrame, *, columns: Mapping[str, str] | None = None,
            require: Sequence[str] = ("market_ids",), what: str = "product data") -> SortedProducts:
    """Apply the reserved-name mapping, check required columns and sort rows by market."""
    require_columns(products, [], what=what)
    require_nonempty(products, what=what)
    frame = products.reset_index(drop=True)
    from blpdemand.data.products import RESERVED
    from blpdemand.data.validation import check_options

    check_options(dict(columns or {}), RESERVED, what="reserved column name(s) in columns=")
    for reserved, user in dict(columns or {}).items():
        require_columns(frame, [user], what=what)
        if reserved != user:
            if reserved in frame.columns:
                frame = frame.drop(columns=[reserved])
            frame = frame.rename(columns={user: reserved})
    require_columns(frame, require, what=what)
    for column in require:
        if frame[column].isna().any():
            row = int(np.flatnonzero(frame[column].isna().to_numpy())[0])
            from blpdemand.errors import DataError

            raise DataError(f"column '{column}' of {what} has missing values (first at row {row})")
    sorted_frame, markets, order = sort_by_market(frame, "market_ids")
    return SortedProducts(frame=sorted_frame, markets=markets, order=order, index=products.index)


def read_characteristics(spec: Characteristics | None, frame: pd.DataFrame, *,
                         intercept: bool | None, what: str = "characteristics",
                         allow_empty: bool = False) -> DesignMatrix:
    """Characteristics as a formula (``"1 + hpwt + air"``) or a list of column names.

    In a list, ``"1"`` is the constant column. ``intercept=False`` drops the constant.
    ``allow_empty`` returns an (N, 0) matrix for None, ``""``, ``"0"``, ``[]`` or a constant
    that ``intercept=False`` removes, instead of raising.
    """
    if allow_empty:
        blank = spec is None or (isinstance(spec, str) and spec.strip() in ("", "0"))
        blank = blank or (not isinstance(spec, str) and np.iterable(spec) and len(list(spec)) == 0)
        if blank:
            return DesignMatrix(values=np.zeros((len(frame), 0)), names=())
    if spec is None:
        raise SpecificationError(f"{what}=None: give a formula string ('1 + hpwt + air') or a "
                                 "list of column names")
    if isinstance(spec, str):
        matrix = build_matrix(spec, frame, intercept=intercept, what=f"{what} formula")
    else:
        if not np.iterable(spec) or isinstance(spec, (bytes, dict)):
            raise SpecificationError(f"{what}={spec!r} is not understood; give a formula string "
                                     "('1 + hpwt + air') or a list of column names")
        names = [str(s) for s in spec]
        if not names:
            raise SpecificationError(f"{what}: give at least one characteristic")
        data = [c for c in names if c != INTERCEPT]
        require_columns(frame, data, what="product data")
        require_finite(frame, data, market_column="market_ids")
        columns = [np.ones(len(frame)) if c == INTERCEPT else frame[c].to_numpy(dtype=np.float64)
                   for c in names]
        matrix = DesignMatrix(values=np.column_stack(columns).astype(np.float64),
                              names=tuple(names))
        if intercept is False and INTERCEPT in names:
            keep = [k for k, n in enumerate(names) if n != INTERCEPT]
            matrix = DesignMatrix(values=matrix.values[:, keep],
                                  names=tuple(names[k] for k in keep))
    if matrix.K == 0 and not allow_empty:
        raise SpecificationError(f"{what} {spec!r} has no columns left")
    if len(set(matrix.names)) != matrix.K:
        raise SpecificationError(f"{what} {spec!r} repeats a characteristic")
    return matrix


def group_codes(*keys: np.ndarray) -> IntArray:
    """One code 0..G-1 per distinct combination of non-negative integer key arrays (N,)."""
    combined = np.zeros(len(keys[0]), dtype=np.int64)
    for key in keys:
        key = np.asarray(key, dtype=np.int64)
        combined = combined * (int(key.max(initial=0)) + 1) + key
        combined = np.unique(combined, return_inverse=True)[1].astype(np.int64).ravel()
    return combined


def clean(name: str) -> str:
    """A column-name-friendly version of a characteristic name: ``log(hpwt)`` -> ``log_hpwt``."""
    if name == INTERCEPT:
        return "1"
    out = re.sub(r"[^0-9A-Za-z_]+", "_", name).strip("_")
    return out or "x"


def unique_names(names: list[str]) -> list[str]:
    """Make names unique by suffixing repeats with ``_2``, ``_3``..."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        if name in seen:
            seen[name] += 1
            out.append(f"{name}_{seen[name]}")
        else:
            seen[name] = 1
            out.append(name)
    return out
