"""Partial-equilibrium demand: market shares at changed prices or characteristics.

xi (and so delta's non-price part) is held at its estimate; only the changed columns move
utility, with no pricing equilibrium (rivals do not respond):
u_ijt(x') = delta_jt + mu_ijt + sum_c a_ict (x'_jct - x_jct), a_ict = beta_c + [Sigma nu_it +
Pi y_it]_c (the X1 coefficient plus the agent's X2 random coefficient of column c), and
s_jt(x') = sum_i w_it exp(u_ijt(x')) / (1 + sum_k exp(u_ikt(x'))) (Berry, Levinsohn and Pakes
1995). Plain logit: s_j = exp(d_j) / (1 + sum_k exp(d_k)), d_j = delta_j + alpha dp_j.
The share formula is the one every post-estimation function uses (``model.pricing``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from blpdemand._types import FloatArray
from blpdemand.errors import DataError, SpecificationError
from blpdemand.model.demand import block_shares, coefficient_columns, demand_blocks
from blpdemand.model.pricing import choice_probabilities_3d
from blpdemand.results.costs import per_product
from blpdemand.results.elasticities import as_fitted


def compute_shares(results: Any, *, prices: Any = None, characteristics: Any = None,
                   markets: Iterable[object] | None = None) -> FloatArray:
    """(N,) market shares s_jt(x') at changed prices and/or characteristics, xi held fixed.

    Parameters
    ----------
    results : BLPResults, LogitResults or a FittedDemand.
    prices : (N,) new prices in the user's row order (a scalar applies to every product);
        default: the observed prices.
    characteristics : changed columns of X1/X2 (entering utility linearly): a DataFrame with
        N rows in the user's row order, or a mapping {column: (N,) values}; a ``prices``
        column here is the same as ``prices=``.
    markets : market ids to compute (default: all); rows of other markets are NaN.

    Returns
    -------
    (N,) shares in the user's row order. At the observed values they are the observed shares
    (to the contraction's tolerance).

    Examples
    --------
    >>> import blpdemand as bd
    >>> sim = bd.simulate(markets=20, products=5, rng=0)
    >>> res = bd.estimate_logit(sim.products, linear=sim.linear, instruments=list(sim.instruments))
    >>> prices = sim.products["prices"].to_numpy() + 0.1 * (sim.products.index == 0)
    >>> s = bd.compute_shares(res, prices=prices)          # product 0 dearer, nothing else
    >>> bool(s[0] < sim.products["shares"][0]), bool((s[1:5] > sim.products["shares"][1:5]).all())
    (True, True)
    """
    fitted = as_fitted(results)
    problem = fitted.problem
    changes = _changes(prices, characteristics)
    new = {name: per_product(fitted, values, name) for name, values in changes.items()}
    # the demand engine's blocks once per changed column: the same utilities, weights and
    # market grouping, each with the column's values and coefficients a_i (checked to enter
    # utility linearly); u_ij(x') = u_ij + sum_columns (x'_j - x_j) a_i
    blocks = {name: demand_blocks(fitted, name) for name in new}
    base = (next(iter(blocks.values())) if blocks
            else demand_blocks(fitted, _any_column(fitted)))
    selected = _selected(markets, problem.products.markets.ids)
    out = np.full(problem.N, np.nan)
    for b, block in enumerate(base):
        keep = selected[block.markets]
        if not keep.any():
            continue
        utility = block.utility[keep]
        for name, values in new.items():
            column = blocks[name][b]
            utility = utility + ((values[column.rows[keep]] - column.prices[keep])[:, :, None]
                                 * column.alpha[keep][:, None, :])
        out[block.rows[keep]] = block_shares(choice_probabilities_3d(utility),
                                             block.weights[keep])
    unsorted: FloatArray = problem.products.unsort(out)
    return unsorted


def _changes(prices: Any, characteristics: Any) -> dict[str, Any]:
    """{column: user-order values} from ``prices=`` and ``characteristics=``."""
    changes: dict[str, Any] = {}
    if characteristics is not None:
        if isinstance(characteristics, pd.DataFrame):
            items = [(c, characteristics[c]) for c in characteristics.columns]
        elif isinstance(characteristics, Mapping):
            items = list(characteristics.items())
        else:
            raise SpecificationError(
                f"characteristics must be a DataFrame of changed columns or a {{column: values}} "
                f"mapping, got {type(characteristics).__name__}; e.g. characteristics="
                "{'sugar': products['sugar'] + 1}")
        for column, values in items:
            if not isinstance(column, str):
                raise SpecificationError(f"characteristic {column!r} must be a column name")
            changes[column] = values
    if prices is not None:
        if "prices" in changes:
            raise SpecificationError("prices are given twice (prices= and a 'prices' column in "
                                     "characteristics=); give them once")
        changes["prices"] = prices
    return changes


def _any_column(fitted: Any) -> str:
    """A model column that enters utility linearly (any will do when nothing changes)."""
    problem = fitted.problem
    for name in (*problem.X1.names, *problem.X2.names):
        try:
            coefficient_columns(fitted, name)
        except SpecificationError:
            continue
        return str(name)
    raise SpecificationError("no column of X1 or X2 enters utility linearly; compute_shares "
                             "needs one (e.g. prices)")


def _selected(markets: Iterable[object] | None, ids: np.ndarray) -> np.ndarray:
    """(T,) bool: the markets to compute; unknown ids raise naming them."""
    if markets is None:
        return np.ones(ids.shape[0], dtype=bool)
    if isinstance(markets, (str, bytes)) or not isinstance(markets, Iterable):
        markets = [markets]  # one market id
    wanted = list(markets)
    index = pd.Index(ids)
    missing = [m for m in wanted if m not in index]
    if missing:
        raise DataError(f"market(s) {missing[:5]} are not in the data; markets are e.g. "
                        f"{ids[:5].tolist()}")
    return np.asarray(index.isin(wanted))
