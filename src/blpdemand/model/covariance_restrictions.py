"""Covariance restrictions (MacKay and Miller 2023): the demand and cost shocks are uncorrelated.

With a supply side, the moments E[(xi_jt omega_jt - m) z_C,jt] = 0 hold for covariance
instruments z_C (default the constant alone: E[xi omega] = m) and a known mean m (default 0;
other values for sensitivity analysis). Since omega = f(p - eta(alpha)) - x3' gamma moves with
the price coefficient, these moments identify it without an excluded price instrument.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blpdemand.data.formulation import DesignMatrix, check_rank
from blpdemand.data.products import ProductData
from blpdemand.data.validation import check_magnitude, require_columns
from blpdemand.errors import DataError, SpecificationError

CONSTANT = "1"


@dataclass(frozen=True, eq=False)
class CovarianceRestrictions:
    """Validated covariance restrictions: Z_C (N, M_C) in the products' sorted rows, mean m.

    columns : the covariance instruments as given ("1" the constant).
    """

    ZC: DesignMatrix = field(repr=False)
    mean: float
    columns: tuple[str, ...]

    @property
    def MC(self) -> int:
        return self.ZC.K


def build_covariance_restrictions(data: ProductData, restrictions: Any,
                                  mean: Any = 0.0) -> CovarianceRestrictions:
    """``covariance_restrictions=True`` (z_C = 1: E[xi omega] = m) or a list of product-data
    columns, "1" for the constant (``["1", "z1"]``); DataError naming a missing column."""
    if restrictions is True:
        columns: tuple[str, ...] = (CONSTANT,)
    elif isinstance(restrictions, str):
        columns = (restrictions,)
    elif isinstance(restrictions, Sequence) and restrictions and all(
            isinstance(c, str) for c in restrictions):
        columns = tuple(restrictions)
    else:
        raise SpecificationError(
            f"covariance_restrictions={restrictions!r}; give True (E[xi omega] = 0) or a list "
            "of product-data columns as covariance instruments, '1' for the constant, e.g. "
            "['1', 'x1']")
    if len(set(columns)) != len(columns):
        raise SpecificationError(f"covariance_restrictions {list(columns)} repeat a column")
    require_columns(data.frame, [c for c in columns if c != CONSTANT],
                    what="product data (covariance_restrictions instruments)")
    try:
        m = float(mean)
    except (TypeError, ValueError):
        raise SpecificationError(f"covariance_moments_mean={mean!r} must be a number") from None
    if not np.isfinite(m) or isinstance(mean, bool):
        raise SpecificationError(f"covariance_moments_mean={mean!r} must be a finite number")
    values = np.empty((data.N, len(columns)))
    for k, c in enumerate(columns):
        if c == CONSTANT:
            values[:, k] = 1.0
            continue
        try:
            values[:, k] = np.asarray(data.frame[c], dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f"covariance instrument column {c!r} is not numeric") from None
        if not np.all(np.isfinite(values[:, k])):
            raise DataError(f"covariance instrument column {c!r} has missing or non-finite "
                            "values; drop or impute those rows")
    ZC = DesignMatrix(values=values, names=columns)
    check_magnitude(ZC.values, ZC.names, what="covariance instruments")
    check_rank(ZC.values, ZC.names, what="Z_C (covariance instruments)")
    return CovarianceRestrictions(ZC=ZC, mean=m, columns=columns)


def restrictions_spec(value: Any) -> bool | list[str] | None:
    """The JSON form of the argument (saved results rebuild the problem from it)."""
    if value is None or value is False:
        return None
    if value is True:
        return True
    return [value] if isinstance(value, str) else list(value)
