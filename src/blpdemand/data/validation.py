"""Checks run once when data come in. Each error names the column, market or product at fault."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from blpdemand.errors import DataError, MissingColumnError, SpecificationError


def require_columns(frame: pd.DataFrame, columns: Iterable[str], *,
                    what: str = "product data") -> None:
    """Raise MissingColumnError (a DataError and a SpecificationError) naming every required
    column that is missing."""
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{what} must be a pandas DataFrame, got {type(frame).__name__}")
    columns = list(columns)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        available = ", ".join(map(str, list(frame.columns)[:20]))
        raise MissingColumnError(
            f"{what} has no column(s) {missing}; available columns: {available}. "
            "Rename the column or map it with the corresponding argument."
        )
    doubled = [c for c in columns if isinstance(frame[c], pd.DataFrame)]
    if doubled:
        raise DataError(f"{what} has duplicate column name(s) {doubled}; rename or drop the copies")


def require_unique_names(frame: pd.DataFrame, *, what: str = "product data") -> None:
    """Raise DataError naming column names that occur more than once (``frame[name]`` would be a
    DataFrame, not a column)."""
    duplicated = frame.columns[frame.columns.duplicated()]
    if len(duplicated):
        raise DataError(f"{what} has duplicate column name(s) {sorted(map(str, set(duplicated)))}; "
                        "rename or drop the copies")


def require_nonempty(frame: pd.DataFrame, *, what: str = "product data") -> None:
    """Raise DataError on an empty frame."""
    if len(frame) == 0:
        raise DataError(f"{what} is empty: at least one market with one product is needed")


def require_finite(frame: pd.DataFrame, columns: Sequence[str], *, what: str = "product data",
                   market_column: str | None = None) -> None:
    """Raise DataError naming the first column with NaN/inf and where it occurs."""
    require_columns(frame, columns, what=what)
    for column in columns:
        values = frame[column]
        if not pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            raise DataError(
                f"column '{column}' of {what} must be numeric, found dtype {values.dtype}"
            )
        array = values.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(array)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            where = f"row {row}"
            if market_column is not None:
                where += f" (market {_label(frame[market_column].iloc[row])})"
            raise DataError(
                f"column '{column}' of {what} has {int(bad.sum())} NaN/inf value(s), first at "
                f"{where}; drop or impute those rows before estimation"
            )


#: largest |value| accepted in a design matrix: squared sums of larger values overflow float64.
MAX_MAGNITUDE = 1e100


def check_magnitude(values: np.ndarray, names: Sequence[str], *, what: str) -> None:
    """Raise DataError naming the first column with |values| > MAX_MAGNITUDE (rescale it)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return
    large = np.abs(values.reshape(values.shape[0], -1)) > MAX_MAGNITUDE
    if large.any():
        k = int(np.flatnonzero(large.any(axis=0))[0])
        raise DataError(
            f"{what} column '{names[k]}' has values up to "
            f"{float(np.max(np.abs(values[:, k]))):.3g}; "
            f"values above {MAX_MAGNITUDE:g} overflow sums of squares: rescale the column "
            "(e.g. prices in thousands)")


#: smallest outside share s_0t = 1 - sum_j s_jt accepted. The sum carries a rounding error of a
#: few J eps (about 1e-14 for J = 100 products), so below 1e-10 s_0t, and with it log s_0t in
#: every delta of the market, is rounding rather than data (an outside share of 4e-16 in one
#: market moved Nevo's logit alpha from -30.1 to about -23). A true outside share that small
#: means the market size is wrong.
MIN_OUTSIDE_SHARE = 1e-10

#: smallest share accepted: the smallest normal float64 (about 2.2e-308). Below it a share has
#: lost significant digits and 1 / s_jt (in d delta / d theta) overflows.
MIN_SHARE = float(np.finfo(np.float64).tiny)


def check_shares(shares: np.ndarray, market_ids: np.ndarray, *, column: str = "shares",
                 product_ids: np.ndarray | None = None) -> None:
    """Shares must lie in [MIN_SHARE, 1) and leave an outside share of at least
    MIN_OUTSIDE_SHARE in every market."""
    shares = np.asarray(shares, dtype=np.float64)
    bad = (shares <= 0) | (shares >= 1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"column '{column}' must lie strictly in (0, 1); found {_label(shares[row])} in market "
            f"{_label(market_ids[row])} ({int(bad.sum())} bad value(s)); "
            "zero shares cannot be inverted, "
            "drop them or aggregate"
        )
    tiny = shares < MIN_SHARE
    if tiny.any():
        row = int(np.flatnonzero(tiny)[0])
        product = "" if product_ids is None else f"product {_label(product_ids[row])} in "
        raise DataError(
            f"column '{column}' has {shares[row]:.3g} for {product}market "
            f"{_label(market_ids[row])} ({int(tiny.sum())} such value(s)), below the smallest "
            f"normal float {MIN_SHARE:.3g}: it has lost its significant digits and 1/share "
            "overflows; check the share, or drop the product")
    codes, uniques = pd.factorize(market_ids, sort=True)
    totals = np.bincount(codes, weights=shares)
    over = totals >= 1
    if over.any():
        t = int(np.flatnonzero(over)[0])
        raise DataError(
            f"shares in market {_label(uniques[t])} sum to {totals[t]:.4f}; "
            "the outside share must be "
            "positive; check the market size used to compute shares"
        )
    small = 1.0 - totals < MIN_OUTSIDE_SHARE
    if small.any():
        t = int(np.flatnonzero(small)[0])
        raise DataError(
            f"shares in market {_label(uniques[t])} sum to {float(totals[t])!r} (outside share "
            f"{1.0 - totals[t]:.3g}, {int(small.sum())} such market(s)); an outside share below "
            f"{MIN_OUTSIDE_SHARE:g} is rounding, not data, and would decide every delta of the "
            "market: check the market size used to compute shares"
        )


def check_unique_products(frame: pd.DataFrame, market_column: str, product_column: str) -> None:
    """A product may appear at most once per market."""
    duplicated = frame.duplicated([market_column, product_column], keep=False)
    if duplicated.any():
        first = frame.loc[duplicated]
        product, market = first[product_column].iloc[0], first[market_column].iloc[0]
        raise DataError(
            f"product {_label(product)} appears {int(duplicated.sum())} times in market "
            f"{_label(market)} (column '{product_column}'); each (market, product) pair must "
            "be unique"
        )


def check_id_values(values: object, *, what: str) -> None:
    """Refuse ids (N,) or (N, L) that differ only in type (1 and '1'): factorizing them would
    silently split one market, product, firm or cluster in two. ``what`` names the column."""
    array = np.asarray(values)
    if array.dtype != object:
        return
    for k in range(1 if array.ndim < 2 else array.shape[1]):
        column = array.ravel() if array.ndim < 2 else array[:, k]
        unique = pd.unique(column)
        as_text = pd.Series([str(v) for v in unique])
        clash = as_text[as_text.duplicated(keep=False)]
        if len(clash):
            shown = [_label(v) for v, t in zip(unique, as_text) if t == clash.iloc[0]]
            raise DataError(f"{what} holds ids that differ only in type ({', '.join(shown)}), "
                            "which would count as different ids; convert it to one type "
                            "(e.g. .astype(str))")


def check_aligned(given: pd.Index, products: pd.Index, *, what: str) -> None:
    """Refuse values indexed by the products' (unique) labels in a different order."""
    if (given.equals(products) or not given.is_unique or not products.is_unique
            or len(given) != len(products)):
        return
    if given.sort_values().equals(products.sort_values()):
        raise DataError(f"{what} has the product data's index labels in another order, but it is "
                        "read by position: align it with .reindex(products.index), or pass "
                        ".to_numpy() if its rows already follow the product rows")


def check_options(given: Iterable[str], valid: Iterable[str], *, what: str) -> None:
    """Unknown option names raise and list the valid ones."""
    valid = list(valid)
    unknown = [k for k in given if k not in valid]
    if unknown:
        raise SpecificationError(f"unknown {what} {unknown}; valid: {sorted(valid)}")


def check_choice(value: str, valid: Iterable[str], *, name: str) -> None:
    """A Literal-typed option must be one of its values."""
    valid = list(valid)
    if value not in valid:
        raise SpecificationError(f"{name}={value!r} is not valid; choose one of {valid}")


def _label(value: object) -> str:
    """repr of an id as the user wrote it (numpy scalars shown as plain Python values)."""
    return repr(value.item() if isinstance(value, np.generic) else value)
