"""Marginal costs from the estimated cost function of a joint demand-supply estimate.

f(c_jt) = x3_jt' gamma + omega_jt (f the identity or log; BLP 1995). At the estimate the
structural costs c = p - eta(theta) give y = f(c) (clipped by ``costs_bounds`` as in
estimation). For cost characteristics x3' changed by a counterfactual (a merger's synergies,
a new input price), the costs holding the cost shocks fixed are

    c' = f^{-1}(y + (x3' - x3)' gamma)                    (omega fixed, the default),
    c' = f^{-1}(y - omega + (x3' - x3)' gamma)            (omega = 0: x3' gamma alone),

with absorbed supply fixed effects kept in y in both. They feed ``simulate_merger(results,
..., costs=...)`` or ``compute_prices(..., costs=...)``. Per-product values in the user's row
order.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

from blpdemand._types import FloatArray
from blpdemand.data.formulation import build_matrix
from blpdemand.errors import DataError, SpecificationError
from blpdemand.model.supply import transform_costs


def compute_supply_costs(results: Any, products: pd.DataFrame | None = None, *,
                         omega: Literal["fixed", "zero"] = "fixed") -> FloatArray:
    """(N,) marginal costs from the estimated cost function (module docstring).

    Parameters
    ----------
    results : BLPResults of a problem with a supply side.
    products : the product data with changed cost characteristics (the same rows, in the
        user's order, as the estimation data), or None for the estimation data itself.
    omega : "fixed" keeps each product's estimated cost shock (with unchanged data: the
        structural costs ``results.marginal_costs``, clipped costs at their bound); "zero"
        drops it (the fitted costs f^{-1}(x3' gamma), plus absorbed fixed effects).

    NaN outside ``supply_markets`` (no costs were estimated there).

    Examples
    --------
    >>> synergy = products.assign(w1=products["w1"] - 0.1 * merging)  # doctest: +SKIP
    >>> costs = bd.compute_supply_costs(results, synergy)  # doctest: +SKIP
    >>> bd.simulate_merger(results, [0, 1], costs=costs)  # doctest: +SKIP
    """
    problem: Any = getattr(results, "problem", None)
    supply: Any = getattr(problem, "supply", None)
    if supply is None or getattr(results, "omega", None) is None:
        raise SpecificationError("compute_supply_costs needs the results of a joint demand-supply "
                                 "estimate (Problem(..., supply='1 + ...')); use compute_costs "
                                 "for costs implied by demand alone")
    if omega not in ("fixed", "zero"):
        raise SpecificationError(f"omega={omega!r}; use 'fixed' or 'zero'")
    products_data = problem.products
    unsort = products_data.unsort
    y, _, _ = transform_costs(np.asarray(results.marginal_costs, dtype=np.float64),
                              supply.costs, supply.bounds)
    index = y.copy()
    if omega == "zero":
        index = index - np.asarray(results.omega, dtype=np.float64)
    if products is not None:
        if not isinstance(products, pd.DataFrame) or len(products) != products_data.N:
            raise DataError(f"products must be a DataFrame with the estimation data's "
                            f"{products_data.N} rows (in its order), with changed cost "
                            "characteristics")
        old = build_matrix(supply.formula, products_data.frame, what="supply formula")
        new = build_matrix(supply.formula, products, what="supply formula")
        if new.names != old.names:
            raise DataError(f"the supply formula gives columns {list(new.names)} on the new "
                            f"products but {list(old.names)} on the estimation data")
        gamma = _full_gamma(supply, results.gamma, old.names)
        index = index + (new.values - unsort(old.values)) @ gamma
    costs = index if supply.costs == "linear" else np.exp(index)
    if supply.selected is not None:
        costs = np.where(unsort(supply.selected), costs, np.nan)
    out: FloatArray = np.asarray(costs, dtype=np.float64)
    return out


def _full_gamma(supply: Any, gamma: FloatArray, names: tuple[str, ...]) -> FloatArray:
    """gamma on the formula's columns (an intercept absorbed by supply fixed effects: 0)."""
    by_name = dict(zip(supply.X3.names, np.asarray(gamma, dtype=np.float64)))
    return np.array([by_name.get(n, 0.0) for n in names])
