"""One level of nests: within-nest shares, nested-logit shares and their price derivatives.

Products j of market t fall into nests g (the outside good alone in its own). With mean
utilities V_j and nesting parameters 0 <= rho_g < 1 (Berry 1994; Cardell 1997),

    s_{j|g} = exp(V_j / (1 - rho_g)) / D_g,   D_g = sum_{k in g} exp(V_k / (1 - rho_g)),
    s_g = D_g^(1 - rho_g) / (1 + sum_h D_h^(1 - rho_h)),   s_j = s_{j|g} s_g,

which invert to the linear estimating equation log(s_j / s_0) = V_j + rho_g log s_{j|g}. With
d V_j / d p_j = alpha,

    ds_j/dp_k = alpha s_j [1{j=k} / (1 - rho_g) - rho_g / (1 - rho_g) s_{k|g} 1{g(k)=g} - s_k]

(the within-nest share is k's: s_j s_{k|g} = s_k s_{j|g}, so the matrix is symmetric for a
common rho).

Rows are in the problem's sorted order (by market); per-market functions take one market.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from blpdemand._types import AnyArray, FloatArray, IntArray
from blpdemand.data.products import ProductData, load_products
from blpdemand.data.validation import check_choice, check_id_values, require_columns
from blpdemand.errors import DataError, SpecificationError, UnusedNestingWarning

RhoKind = Literal["common", "per_nest"]
RHO_KINDS: tuple[RhoKind, ...] = ("common", "per_nest")
NESTING_COLUMN = "nesting_ids"  # the reserved name PyBLP reads nests from


@dataclass(frozen=True, slots=True)
class Nests:
    """Nest membership of the products (sorted rows) and the names of the nesting parameters.

    Attributes
    ----------
    column : the product-data column holding each product's nest.
    labels : (H,) nest labels (sorted); codes : (N,) each row's nest, 0..H-1.
    cells : (N,) code of each row's (market, nest) cell.
    names : X1 names of the nesting parameters: ("rho",) or ("rho[g]" for each label g).
    """

    column: str
    labels: AnyArray
    codes: IntArray
    cells: IntArray
    names: tuple[str, ...]

    @property
    def per_nest(self) -> bool:
        return self.names != ("rho",)

    def rho(self, beta: FloatArray, x1_names: tuple[str, ...]) -> FloatArray:
        """(N,) each row's rho_g from the linear parameters ``beta`` over ``x1_names``."""
        values = np.array([float(beta[x1_names.index(n)]) for n in self.names])
        out: FloatArray = values[self.codes] if self.per_nest else np.full(self.codes.size,
                                                                              values[0])
        return out

    def rho_by_nest(self, beta: FloatArray, x1_names: tuple[str, ...]) -> FloatArray:
        """(H,) rho_g of each nest (all equal for a common rho)."""
        values = np.array([float(beta[x1_names.index(n)]) for n in self.names])
        out: FloatArray = values if self.per_nest else np.full(self.labels.size, values[0])
        return out


def read_nests(data: ProductData, column: str, *, rho: RhoKind = "common") -> Nests:
    """Nest membership from the product-data column ``column`` (sorted rows of ``data``)."""
    check_choice(rho, RHO_KINDS, name="rho")
    require_columns(data.frame, [column], what="product data (nesting)")
    ids = data.array(column)
    if pd.isna(ids).any():
        row = int(np.flatnonzero(pd.isna(ids))[0])
        raise DataError(f"nesting column '{column}' has missing values (sorted row {row}); give "
                        "every product a nest")
    check_id_values(ids, what=f"nesting column '{column}'")
    codes, labels = pd.factorize(ids, sort=True)
    codes = np.asarray(codes, dtype=np.int64)
    cells = np.unique(data.markets.codes * (len(labels) + 1) + codes,
                      return_inverse=True)[1].astype(np.int64).ravel()
    if rho == "common":
        names: tuple[str, ...] = ("rho",)
    else:
        names = tuple(f"rho[{label}]" for label in labels)
        if any("`" in n for n in names):
            raise DataError(f"nest labels of '{column}' may not contain backticks")
    return Nests(column=column, labels=np.asarray(labels), codes=codes, cells=cells, names=names)


def within_shares(shares: FloatArray, cells: IntArray) -> FloatArray:
    """(N,) s_{j|g} = s_j / sum_{k in g(j), same market} s_k."""
    totals = np.bincount(cells, weights=shares)
    out: FloatArray = shares / totals[cells]
    return out


def nesting_regressors(nests: Nests, shares: FloatArray) -> FloatArray:
    """(N, 1) log s_{j|g}, or (N, H) log s_{j|g} 1{g(j) = h} for one rho per nest."""
    log_within = np.log(within_shares(shares, nests.cells))
    if not nests.per_nest:
        return log_within[:, None]
    out: FloatArray = np.zeros((shares.size, nests.labels.size))
    out[np.arange(shares.size), nests.codes] = log_within
    return out


def with_nesting_columns(products: pd.DataFrame, column: str, *, rho: RhoKind = "common",
                         columns: Mapping[str, str] | None = None
                         ) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """A copy of ``products`` (user order) with the log within-nest share column(s) added,
    named as the nesting parameters ("rho" or "rho[g]"), and those names."""
    require_columns(products, [column], what="product data (nesting)")
    data = load_products(products, columns=columns)
    nests = read_nests(data, column, rho=rho)
    clash = [n for n in nests.names if n in products.columns]
    if clash:
        raise SpecificationError(f"product data already have column(s) {clash}, the names of the "
                                 "nesting parameters; rename them")
    values = data.unsort(nesting_regressors(nests, data.shares))
    frame = products.copy()
    for k, name in enumerate(nests.names):
        frame[name] = values[:, k]
    return frame, nests.names


def warn_unused_nesting(products: pd.DataFrame, *, stacklevel: int = 3) -> None:
    """UnusedNestingWarning when the data have a 'nesting_ids' column that nothing reads."""
    if NESTING_COLUMN in getattr(products, "columns", ()):  # not a frame: refused downstream
        warnings.warn(
            f"product data have a '{NESTING_COLUMN}' column but no nesting was asked for, so "
            f"the model is a plain logit; pass nesting='{NESTING_COLUMN}' for the nested logit, "
            "or drop the column", UnusedNestingWarning, stacklevel=stacklevel)


def nested_shares(V: FloatArray, nests: IntArray, rho: FloatArray) -> FloatArray:
    """(J,) nested-logit shares of one market from mean utilities V (J,), nest codes (J,) and
    each product's rho (J,), overflow-safe (log-sum-exp within nests and across)."""
    scaled = V / (1.0 - rho)
    labels, codes = np.unique(nests, return_inverse=True)
    top = np.full(labels.size, -np.inf)
    np.maximum.at(top, codes, scaled)
    log_D = top + np.log(np.bincount(codes, weights=np.exp(scaled - top[codes])))
    rho_g = np.zeros(labels.size)
    rho_g[codes] = rho
    inclusive = (1.0 - rho_g) * log_D  # log D_g^(1 - rho_g)
    shift = max(float(inclusive.max()), 0.0)
    log_denominator = shift + np.log(np.exp(-shift) + np.exp(inclusive - shift).sum())
    out: FloatArray = np.exp(scaled - log_D[codes] + inclusive[codes] - log_denominator)
    return out


def nested_share_jacobian(shares: FloatArray, nests: IntArray, rho: FloatArray,
                          alpha: float) -> FloatArray:
    """(J, J) ds_j/dp_k of one market (Berry 1994, Cardell 1997):
    alpha s_j [1{j=k} / (1 - rho_g) - rho_g / (1 - rho_g) s_{k|g} 1{same nest} - s_k].

    Parameters
    ----------
    shares : (J,) s_j; nests : (J,) nest codes; rho : (J,) each product's rho_g;
    alpha : the price coefficient (negative).
    """
    within = within_shares(shares, np.unique(nests, return_inverse=True)[1].ravel())
    same = nests[:, None] == nests[None, :]
    inner = (np.diag(1.0 / (1.0 - rho)) - (rho / (1.0 - rho))[:, None] * within[None, :] * same
             - shares[None, :])
    out: FloatArray = alpha * shares[:, None] * inner
    return out
