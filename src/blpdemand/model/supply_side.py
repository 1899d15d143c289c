"""The supply side of a problem, validated once: X3, Z_S, costs, conduct and ownership.

f(c_jt) = x3_jt' gamma + omega_jt with c = p - eta(theta) (``model.supply``); the supply
moments are E[z_S omega] = 0 with Z_S the X3 columns (exogenous cost shifters) and the
excluded supply instruments (Berry, Levinsohn and Pakes 1995).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blpdemand._types import FloatArray
from blpdemand.data.absorb import FixedEffects, absorb_fixed_effects
from blpdemand.data.formulation import DesignMatrix, build_matrix, check_rank, parse_absorb
from blpdemand.data.products import ProductData
from blpdemand.data.validation import check_magnitude
from blpdemand.errors import DataError, SpecificationError
from blpdemand.model.covariance_restrictions import CovarianceRestrictions

Kappa = Mapping[tuple[object, object], float]
CONDUCTS = ("bertrand", "monopoly", "perfect")
COSTS = ("linear", "log")


@dataclass(frozen=True, eq=False)
class SupplySide:
    """The validated supply side of a Problem (rows sorted by market, as the products).

    Attributes
    ----------
    X3 : (N, K3) cost characteristics; ZS : (N, MS) supply instruments (X3, then excluded).
    costs : "linear" (f(c) = c) or "log" (f(c) = log c).
    conduct : "bertrand", "monopoly" or "perfect"; kappa : partial ownership or None.
    bounds : (lo, hi) clipping of marginal costs (either None), or None.
    firm_ids : (N,) owners (Bertrand) or None; prices : (N,); price_column : prices' column
    in X2 (the ownership matrices are built from these by ``model.supply.conduct_ownership``)
    formula : the X3 formula as given.
    fixed_effects : absorbed supply fixed effects (``absorb_supply``) or None; X3_tilde,
        ZS_tilde : X3 and Z_S with them partialled out (the arrays themselves without), rows
        outside ``selected`` set to zero.
    selected : (N,) bool, the rows of the markets with supply moments (``supply_markets``), or
        None for all: elsewhere no costs are computed and z_S omega = 0.
    covariance : covariance restrictions E[(xi omega - m) z_C] = 0 (MacKay and Miller 2023;
        ``model.covariance_restrictions``) or None.
    """

    X3: DesignMatrix
    ZS: DesignMatrix
    costs: str
    conduct: str
    kappa: dict[tuple[object, object], float] | None
    bounds: tuple[float | None, float | None] | None
    firm_ids: np.ndarray | None = field(repr=False)
    prices: FloatArray = field(repr=False)
    price_column: int
    formula: str
    fixed_effects: FixedEffects | None = field(default=None, repr=False)
    X3_tilde: FloatArray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)
    ZS_tilde: FloatArray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)
    selected: np.ndarray | None = field(default=None, repr=False)
    covariance: CovarianceRestrictions | None = field(default=None, repr=False)

    @property
    def K3(self) -> int:
        return self.X3.K

    @property
    def MS(self) -> int:
        return self.ZS.K

    def residualize(self, values: FloatArray) -> FloatArray:
        """Partial out the absorbed supply fixed effects (identity without them)."""
        return self.fixed_effects.residualize(values) if self.fixed_effects else values


def build_supply(data: ProductData, formula: str, excluded: DesignMatrix, *, X1: DesignMatrix,
                 X2: DesignMatrix, costs: str = "linear", conduct: Any = "bertrand",
                 bounds: Any = None, absorb: Any = None, markets: Any = None) -> SupplySide:
    """Validate the supply arguments of ``Problem`` and build X3, Z_S and the ownership.

    ``conduct`` is "bertrand" (ownership from the ``firm_ids`` column), "monopoly", "perfect",
    or a {(firm, firm): weight} dict of partial ownership (Bertrand with kappa). ``markets``
    (ids) keeps the supply moments to those markets (external cost information often covers
    only some).
    """
    if costs not in COSTS:
        raise SpecificationError(f"costs={costs!r}; use one of {list(COSTS)}")
    kappa: dict[tuple[object, object], float] | None = None
    if isinstance(conduct, Mapping):
        kappa, conduct = {tuple(k): float(v) for k, v in conduct.items()}, "bertrand"
    if conduct not in CONDUCTS:
        raise SpecificationError(f"conduct={conduct!r}; use one of {list(CONDUCTS)} or a "
                                 "{(firm, firm): weight} dict of partial ownership")
    if "prices" in X1.names:
        raise SpecificationError(
            "with a supply side the price coefficient must come from the nonlinear formula: "
            "'prices' is in the linear formula (X1), whose coefficients are concentrated out "
            "and cannot enter the markups; move 'prices' to nonlinear= and drop it from "
            "linear=: its mean coefficient is then Pi on a constant demographic (agents['one'] "
            "= 1, demographics='0 + one', pi[prices, one] = alpha), or a Pi on income as in BLP")
    if "prices" not in X2.names:
        raise SpecificationError(
            f"a supply side needs 'prices' in the nonlinear formula (X2 {list(X2.names)}): "
            "markups depend on the price coefficients")
    fe_columns = parse_absorb(absorb, data.frame)
    X3 = build_matrix(formula, data.frame, intercept=False if fe_columns else None,
                      what="supply formula")
    if any("prices" in name for name in X3.names):
        raise SpecificationError(f"the supply formula's columns {list(X3.names)} contain prices;"
                                 " costs are c = p - eta, so prices cannot be a cost shifter")
    ZS = DesignMatrix(values=np.column_stack([X3.values, excluded.values]),
                      names=X3.names + excluded.names)
    for matrix, what in ((X3, "supply formula"), (ZS, "supply instruments")):
        check_magnitude(matrix.values, matrix.names, what=what)
    selected = _selected(data, markets)
    if selected is not None and fe_columns:
        raise SpecificationError("absorb_supply with supply_markets is not supported yet: "
                                 "give the supply fixed effects as X3 columns (C(...) in the "
                                 "supply formula) or drop supply_markets")
    fixed_effects = absorb_fixed_effects(data.frame, fe_columns)
    X3_tilde, ZS_tilde = X3.values, ZS.values
    if selected is not None:
        X3_tilde = X3.values * selected[:, None]
        ZS_tilde = ZS.values * selected[:, None]
    if fixed_effects is not None:
        X3_tilde = fixed_effects.residualize(X3.values, names=X3.names)
        ZS_tilde = fixed_effects.residualize(ZS.values, names=ZS.names)
    check_rank(X3_tilde, X3.names, what="X3 (cost characteristics)")
    check_rank(ZS_tilde, ZS.names, what="ZS (supply instruments)")
    firm_ids = None
    if conduct == "bertrand":
        if not data.has("firm_ids"):
            raise DataError("conduct 'bertrand' needs a 'firm_ids' column in the product data "
                            "(the owner of each product); add it or use conduct='monopoly'")
        firm_ids = data.array("firm_ids")
        if np.any(_missing(firm_ids)):
            raise DataError("product data column 'firm_ids' has missing values; every product "
                            "needs an owner under Bertrand conduct")
        if kappa:
            known = set(firm_ids.tolist())
            unknown = sorted({f for pair in kappa for f in pair if f not in known}, key=str)
            if unknown:
                raise DataError(f"conduct (kappa) names firm(s) {unknown} not in 'firm_ids'")
    return SupplySide(X3=X3, ZS=ZS, costs=costs, conduct=conduct, kappa=kappa,
                      bounds=_bounds(bounds), firm_ids=firm_ids,
                      prices=X2.values[:, X2.names.index("prices")].astype(np.float64),
                      price_column=X2.names.index("prices"), formula=formula,
                      fixed_effects=fixed_effects, X3_tilde=np.ascontiguousarray(X3_tilde),
                      ZS_tilde=np.ascontiguousarray(ZS_tilde), selected=selected)


def _selected(data: ProductData, markets: Any) -> np.ndarray | None:
    """(N,) rows of the ``markets`` with supply moments, None for all; DataError naming ids
    that are not markets of the data."""
    if markets is None:
        return None
    ids = [markets] if isinstance(markets, (str, int, np.integer)) else list(markets)
    if not ids:
        raise SpecificationError("supply_markets is empty; give market ids or None for all")
    known = data.markets.ids
    unknown = [m for m in ids if not np.any(known == m)]
    if unknown:
        raise DataError(f"supply_markets names market(s) {unknown[:10]} that are not in the "
                        "product data's market_ids")
    chosen = np.isin(np.arange(data.markets.T), [data.markets.position(m) for m in ids])
    return np.asarray(data.markets.expand(chosen), dtype=bool)


def _missing(values: np.ndarray) -> np.ndarray:
    import pandas as pd

    return np.asarray(pd.isna(values))


def _bounds(bounds: Any) -> tuple[float | None, float | None] | None:
    """(lo, hi) with None for an open side; SpecificationError unless lo < hi."""
    if bounds is None:
        return None
    try:
        lo, hi = bounds
        out = (None if lo is None else float(lo), None if hi is None else float(hi))
    except (TypeError, ValueError):
        raise SpecificationError(f"costs_bounds={bounds!r} must be a (lo, hi) pair of numbers "
                                 "or None, e.g. (0.001, None)") from None
    if out[0] is not None and out[1] is not None and not out[0] < out[1]:
        raise SpecificationError(f"costs_bounds={bounds!r}: the lower bound must be below the "
                                 "upper one")
    if any(v is not None and not np.isfinite(v) for v in out):
        raise SpecificationError(f"costs_bounds={bounds!r} must be finite (or None)")
    return out
