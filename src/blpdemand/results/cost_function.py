"""Post-estimation with the estimated cost function f(c_jt) = x3_jt' gamma + omega_jt.

A joint demand-supply estimate gives, for every product, its structural marginal cost
c = p - eta (the Bertrand first-order conditions at the observed prices, the estimated
conduct), the fitted cost f^{-1}(x3' gamma) (absorbed supply effects included) and the cost
unobservable omega = f(c) - x3' gamma, with f the identity (``costs="linear"``) or the log.
Counterfactuals that move cost shifters hold gamma and each product's omega fixed:

    c'_jt = f^{-1}(x3'_jt gamma + omega_jt),

the cost a merger, tax or entry simulation then takes (``compute_prices(results, costs=c')``);
an entrant has no observed price, so its cost is f^{-1}(x3_j' gamma + omega_j) with omega_j = 0
(its expected cost given x3) unless one is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd

from blpdemand._types import FloatArray
from blpdemand.errors import DataError, SpecificationError
from blpdemand.model.supply import transform_costs
from blpdemand.model.supply_side import SupplySide
from blpdemand.results.entry import formula_rows


def _supply(results: Any) -> SupplySide:
    """The supply side of joint estimation results (a named error otherwise)."""
    problem = getattr(results, "problem", None)
    supply = getattr(problem, "supply", None)
    if supply is None or getattr(results, "marginal_costs", None) is None:
        raise SpecificationError(
            "the estimated cost function needs joint demand-supply results: estimate a Problem "
            "with supply='1 + ...' (its cost shifters); compute_costs(results) gives the costs "
            "implied by demand alone")
    checked: SupplySide = supply
    return checked


def _inverse(values: FloatArray, costs: str) -> FloatArray:
    """f^{-1}: the identity for linear costs, exp for log costs."""
    return np.exp(values) if costs == "log" else values


def _fitted_index(results: Any, supply: SupplySide) -> FloatArray:
    """(N,) x3' gamma plus the absorbed supply effects, user row order: X3 gamma when nothing
    is absorbed, else f(c) - omega (NaN in markets without supply moments)."""
    products = results.problem.products
    if supply.fixed_effects is None:
        index: FloatArray = products.unsort(supply.X3.values @ results.gamma)
        return index
    # y = f(c) as estimation formed it (c clipped by costs_bounds)
    y, _, _ = transform_costs(np.asarray(results.marginal_costs, dtype=np.float64), supply.costs,
                              supply.bounds)
    absorbed: FloatArray = y - np.asarray(results.omega, dtype=np.float64)
    return absorbed


def fitted_costs(results: Any) -> FloatArray:
    """(N,) fitted marginal costs f^{-1}(x3' gamma) (omega = 0), user row order."""
    supply = _supply(results)
    return _inverse(_fitted_index(results, supply), supply.costs)


def counterfactual_costs(results: Any, characteristics: pd.DataFrame | Mapping[str, Any]
                         | None = None, *, omega: Literal["fixed", "zero"] = "fixed"
                         ) -> FloatArray:
    """(N,) marginal costs c' = f^{-1}(x3' gamma + omega) after the cost shifters change.

    Parameters
    ----------
    characteristics : new values of the columns the supply formula uses, as a DataFrame or a
        {column: (N,) values} mapping in the data's row order (other columns keep their
        values); None keeps them all (then ``omega="fixed"`` gives the structural costs).
    omega : "fixed" holds each product's estimated omega (and gamma); "zero" sets omega = 0
        (fitted costs at the new shifters).

    Pass the result to ``compute_prices(results, costs=...)`` (or a merger) to hold the cost
    function fixed in a counterfactual.
    """
    supply = _supply(results)
    if omega not in ("fixed", "zero"):
        raise SpecificationError(f"omega={omega!r}; use 'fixed' (each product's estimated "
                                 "omega) or 'zero' (fitted costs)")
    index = _fitted_index(results, supply)
    if characteristics is not None:
        index = index + _shifted(results, supply, characteristics) @ results.gamma
    if omega == "fixed":  # NaN in markets without supply moments (no omega there)
        index = index + results.omega
    return _inverse(index, supply.costs)


def _shifted(results: Any, supply: SupplySide, changed: pd.DataFrame | Mapping[str, Any]
             ) -> FloatArray:
    """(N, K3) x3'' - x3 (user row order): the supply formula on the data with ``changed``
    columns replaced."""
    problem = results.problem
    products = problem.products
    frame = products.frame.copy()
    new = changed if isinstance(changed, pd.DataFrame) else pd.DataFrame(dict(changed))
    if len(new) != products.N:
        raise DataError(f"characteristics has {len(new)} rows; give one row per product "
                        f"({products.N}, the data's row order)")
    for column in new.columns:
        if column not in frame.columns:
            raise DataError(f"characteristics column {column!r} is not a column of the "
                            "estimation data (give new values of existing cost shifters)")
        frame[column] = products.sort(np.asarray(new[column]))
    x3 = formula_rows(supply.formula, supply.X3, frame.reset_index(drop=True), results.fitted,
                      "supply", False if supply.fixed_effects is not None else None)
    difference: FloatArray = products.unsort(x3 - supply.X3.values)
    return difference


def entrant_costs(results: Any, new_products: pd.DataFrame, *, omega: Any = 0.0
                  ) -> FloatArray:
    """(M,) marginal costs f^{-1}(x3_j' gamma + omega_j) of entering products, from the cost
    shifters in ``new_products`` (its rows; a ``supply_fixed_effect`` column gives each
    entrant's absorbed supply effect when the problem absorbs some). ``omega``: scalar or (M,)
    (default 0, the expected cost given x3). Pass it to ``simulate_entry(..., costs=...)``."""
    supply = _supply(results)
    if not isinstance(new_products, pd.DataFrame) or len(new_products) == 0:
        raise DataError("new_products must be a non-empty DataFrame with one row per entrant")
    new = new_products.reset_index(drop=True)
    absorbed = supply.fixed_effects is not None
    x3 = formula_rows(supply.formula, supply.X3, new, results.fitted, "supply",
                      False if absorbed else None)
    index = x3 @ results.gamma + np.broadcast_to(np.asarray(omega, dtype=np.float64), len(new))
    if absorbed:
        if "supply_fixed_effect" not in new.columns:
            raise SpecificationError(
                "the problem absorbs supply fixed effects, which entrants do not have: give "
                "each entrant's effect on f(c) in a 'supply_fixed_effect' column of "
                "new_products (e.g. its firm's estimated effect)")
        index = index + new["supply_fixed_effect"].to_numpy(dtype=np.float64)
    return _inverse(index, supply.costs)
