"""Entry counterfactuals: Bertrand-Nash prices after new products join existing markets.

A new product j in market t gets mean utility delta_j = x1_j' beta + xi_j (+ its absorbed fixed
effects), with x1_j and x2_j from the problem's own X1/X2 formulas evaluated on the new rows,
and random-coefficient utility mu_ij = x2_j' (Sigma nu_i + Pi y_i) for the same agents i of
market t. Incumbents keep their marginal costs (implied by observed prices unless given), the
entrants' costs are given, and the enlarged markets' prices solve
s + (O * ds/dp') (p - c) = 0 by the zeta-markup fixed point (Morrow and Skerlos 2011) with a
Newton fallback, exactly as in counterfactual.py (Berry and Waldfogel 1999 and Petrin 2002 use
this exercise to value new products).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from blpdemand._types import FloatArray
from blpdemand.data.formulation import DesignMatrix, build_matrix
from blpdemand.errors import DataError, SpecificationError
from blpdemand.model.demand import agent_coefficients, coefficient_columns, market_demands
from blpdemand.model.fitted import FittedDemand
from blpdemand.model.pricing import MarketDemand, PricingConfig, ownership_matrix, solve_prices
from blpdemand.results.costs import Kappa, compute_costs, firm_ids_sorted
from blpdemand.results.counterfactual import Counterfactual, _apply_policy
from blpdemand.results.elasticities import as_fitted
from blpdemand.results.equilibrium import hhi
from blpdemand.results.surplus import market_surplus


def simulate_entry(results: Any, new_products: pd.DataFrame, *, costs: Any = None,
                   xi: Any = None, keep: Any = None, kappa: Kappa | None = None,
                   config: PricingConfig | None = None) -> Counterfactual:
    """Bertrand-Nash equilibrium after the products in ``new_products`` enter their markets.

    Parameters
    ----------
    results : estimation results (logit or BLP) or a FittedDemand.
    new_products : (M, ...) one row per entrant with ``market_ids`` (existing markets),
        ``firm_ids`` (an incumbent's id or a new firm) and every column the problem's linear and
        nonlinear formulas use. Optional columns: ``costs``, ``xi``, ``prices`` (starting prices;
        default c_j - 1 / mean_i alpha_i), ``fixed_effect`` (the entrant's absorbed fixed-effect
        contribution to delta: required when the problem absorbs fixed effects) or ``delta`` (the
        entrant's full mean utility at its ``prices`` column; overrides X1 beta + xi).
    costs : scalar or (M,) marginal costs of the entrants (else the ``costs`` column; required).
    xi : scalar or (M,) demand unobservables of the entrants (else the ``xi`` column, else 0).
    keep : (N + M,) bool, products on the market, rows ordered as the result (default all).
    kappa : {(f, g): weight} partial ownership after entry (firm f's weight on the profits of
        firm g's products, ``ownership_matrix``), e.g. an entrant's firm partly owned by an
        incumbent. Incumbents' costs still come from the data's (full) ownership.
    config : PricingConfig.

    Returns a Counterfactual whose rows are the N original products (user order) followed by the
    M entrants (``new_products`` order); ``entrants`` marks the new rows. Incumbents' costs are
    those implied by observed prices and the data's ownership.

    Examples
    --------
    >>> new = pd.DataFrame({"market_ids": [0], "firm_ids": [9], "x": [1.0], "costs": [2.0]})
    >>> cf = simulate_entry(results, new)                # doctest: +SKIP
    >>> cf.prices[cf.entrants], cf.consumer_surplus_change  # doctest: +SKIP
    """
    config = PricingConfig() if config is None else config
    fitted = as_fitted(results)
    problem = fitted.problem
    products, pm = problem.products, problem.products.markets
    if not isinstance(new_products, pd.DataFrame) or len(new_products) == 0:
        raise DataError("new_products must be a non-empty DataFrame with one row per entrant")
    new = new_products.reset_index(drop=True)
    M = len(new)
    for column in ("market_ids", "firm_ids"):
        if column not in new.columns:
            raise DataError(f"new_products has no {column!r} column; every entrant needs its "
                            "market and its owner")
    codes = pd.Index(pm.ids).get_indexer(new["market_ids"].to_numpy())
    if np.any(codes < 0):
        unknown = new["market_ids"].to_numpy()[codes < 0][:10].tolist()
        raise DataError(f"new_products market_ids {unknown} are not markets of the estimation data "
                        f"(entry needs that market's agents and incumbents)")
    if pd.isna(new["firm_ids"]).any():
        raise DataError("new_products 'firm_ids' has missing values; every entrant needs an owner")
    new_costs = _entrant_values(new, costs, "costs", None)
    demands = market_demands(fitted)
    mean_alpha = np.array([float(d.weights @ d.alpha / d.weights.sum()) for d in demands])
    if "prices" in new.columns:
        start = _entrant_values(new, None, "prices", None)
    else:
        with np.errstate(divide="ignore"):
            start = new_costs - 1.0 / mean_alpha[codes]
    delta, x2 = _entrant_utility(fitted, new, start, xi)
    incumbent_costs = products.sort(compute_costs(fitted))
    firms_in = firm_ids_sorted(fitted)
    firms_new = new["firm_ids"].to_numpy()
    N, T = pm.N, pm.T
    available = np.ones(N + M, dtype=bool)
    if keep is not None:
        keep = np.asarray(keep)
        if keep.shape != (N + M,) or keep.dtype != np.bool_:
            raise DataError(f"keep must be a boolean array over the {N} products and {M} entrants "
                            f"({N + M} values, entrants last)")
        available = np.concatenate([products.sort(keep[:N]), keep[N:]])
    coefficients = agent_coefficients(fitted) if x2 is not None else None

    prices_in, prices_new = np.full(N, np.nan), np.full(M, np.nan)
    shares_in, shares_new = np.full(N, np.nan), np.full(M, np.nan)
    hhi_before, hhi_after = np.full(T, np.nan), np.full(T, np.nan)
    cs_before, cs_after = np.full(T, np.nan), np.full(T, np.nan)
    status, iterations = [], np.zeros(T, dtype=np.int64)
    for t, demand in enumerate(demands):
        rows = pm.slice(t)
        entrants = np.flatnonzero(codes == t)
        utility_new = delta[entrants][:, None]
        if coefficients is not None and x2 is not None and problem.agents is not None:
            coef = coefficients[problem.agents.markets.slice(t)]
            utility_new = utility_new + x2[entrants] @ coef.T
        enlarged = MarketDemand(
            market_id=demand.market_id, prices=np.concatenate([demand.prices, start[entrants]]),
            utility=np.vstack([demand.utility, np.broadcast_to(
                utility_new, (entrants.size, demand.utility.shape[1]))]),
            alpha=demand.alpha, weights=demand.weights)
        mask = np.concatenate([available[rows], available[N + entrants]])
        owners = np.concatenate([firms_in[rows], firms_new[entrants]])
        cost = np.concatenate([incumbent_costs[rows], new_costs[entrants]])
        sub = enlarged.subset(mask)
        solution = solve_prices(sub, cost[mask], ownership_matrix(owners[mask], kappa),
                                config=config)
        status.append(solution.status)
        iterations[t] = solution.iterations
        cs_before[t] = market_surplus(demand)
        hhi_before[t] = hhi(demand.shares(), firms_in[rows])
        if not solution.status.converged:
            continue
        full_p, full_s = np.full(mask.size, np.nan), np.zeros(mask.size)
        full_p[mask], full_s[mask] = solution.prices, sub.shares(solution.prices)
        J = rows.stop - rows.start
        prices_in[rows], prices_new[entrants] = full_p[:J], full_p[J:]
        shares_in[rows], shares_new[entrants] = full_s[:J], full_s[J:]
        cs_after[t] = market_surplus(sub, solution.prices)
        if mask.any():
            hhi_after[t] = hhi(full_s[mask], owners[mask])
    _apply_policy(pm.ids, status, config)

    unsort = products.unsort
    prices_before = np.concatenate([unsort(np.concatenate([d.prices for d in demands])),
                                    np.full(M, np.nan)])
    shares_before = np.concatenate([unsort(np.concatenate([d.shares() for d in demands])),
                                    np.zeros(M)])
    cost_all = np.concatenate([unsort(incumbent_costs), new_costs])
    prices = np.concatenate([unsort(prices_in), prices_new])
    shares = np.concatenate([unsort(shares_in), shares_new])
    with np.errstate(invalid="ignore"):
        profits_before = np.nan_to_num((prices_before - cost_all) * shares_before, nan=0.0)
        profits = (prices - cost_all) * shares
    firms = np.concatenate([unsort(firms_in), firms_new])
    return Counterfactual(
        market_ids=pm.ids, row_markets=np.concatenate([unsort(pm.ids[pm.codes]), pm.ids[codes]]),
        status=tuple(status), iterations=iterations, prices_before=prices_before, prices=prices,
        shares_before=shares_before, shares=shares, costs=cost_all, markups=prices - cost_all,
        profits_before=profits_before, profits=profits, hhi_before=hhi_before, hhi=hhi_after,
        consumer_surplus_before=cs_before, consumer_surplus=cs_after, config=config,
        firm_ids_before=firms, firm_ids=firms,
        entrants=np.concatenate([np.zeros(N, dtype=bool), np.ones(M, dtype=bool)]))


def _entrant_values(new: pd.DataFrame, values: Any, column: str,
                    default: float | None) -> FloatArray:
    """(M,) entrant values from an argument (scalar or array), else a column, else a default."""
    M = len(new)
    if values is None and column in new.columns:
        values = new[column].to_numpy()
    if values is None:
        if default is None:
            raise DataError(f"entrants need {column}: pass {column}= (scalar or one per new "
                            f"product) or a {column!r} column in new_products")
        values = default
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0:
        array = np.full(M, float(array))
    if array.shape != (M,):
        raise DataError(f"{column} must be a scalar or have one value per new product ({M}), "
                        f"got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise DataError(f"{column} of the new products has NaN/inf values (row "
                        f"{int(np.flatnonzero(~np.isfinite(array))[0])})")
    return array


def _entrant_utility(fitted: FittedDemand, new: pd.DataFrame, start: FloatArray,
                     xi: Any) -> tuple[FloatArray, FloatArray | None]:
    """(M,) mean utilities delta at ``start`` prices and (M, K2) X2 rows (None for logit)."""
    problem = fitted.problem
    coefficient_columns(fitted, "prices")
    frame = new.copy()
    frame["prices"] = start
    absorbed = problem.fixed_effects is not None
    x2 = None
    if problem.K2 > 0 and problem.agents is not None:
        x2 = formula_rows(problem.nonlinear_formula, problem.X2, frame, fitted, "nonlinear", None)
    if "delta" in new.columns:
        if xi is not None:
            raise SpecificationError("new_products has a 'delta' column, which already includes "
                                     "xi; drop xi= or the 'delta' column")
        if "prices" not in new.columns:
            raise DataError("a 'delta' column in new_products needs the 'prices' column at which "
                            "it is evaluated")
        return _entrant_values(new, None, "delta", None), x2
    if absorbed and "fixed_effect" not in new.columns:
        raise SpecificationError(
            "the problem absorbs fixed effects, which new products do not have: give each "
            "entrant's fixed-effect contribution to delta in a 'fixed_effect' column of "
            "new_products (e.g. its brand's estimated effect, from results.fixed_effects), or "
            "its whole mean utility in a "
            "'delta' column (with its 'prices')")
    x1 = formula_rows(problem.linear_formula, problem.X1, frame, fitted, "linear",
               False if absorbed else None)
    delta = x1 @ fitted.beta + _entrant_values(new, xi, "xi", 0.0)
    if absorbed:
        delta = delta + _entrant_values(new, None, "fixed_effect", None)
    return delta, x2


def formula_rows(formula: str | None, stored: DesignMatrix, frame: pd.DataFrame,
                 fitted: FittedDemand, what: str, intercept: bool | None) -> FloatArray:
    """The formula evaluated on the new rows with the estimation data's columns and levels.

    The formula is evaluated on the estimation data followed by the new rows, so categorical
    levels (``C(...)``) are those of the data; the result must reproduce the stored matrix on the
    original rows, or the formula has data-dependent terms (new levels, center(), scale()).
    """
    if not formula:
        raise SpecificationError(
            f"the problem does not record its {what} formula (built before formulas were kept); "
            "rebuild the Problem to simulate entry")
    alone = build_matrix(formula, frame, intercept=intercept,
                         what=f"{what} formula on new_products")
    original = fitted.problem.products.frame
    missing = [c for c in original.columns if c not in frame.columns]
    both = pd.concat([original, frame.assign(**{c: original[c].iloc[0] for c in missing})],
                     ignore_index=True)
    matrix = build_matrix(formula, both, intercept=intercept, what=f"{what} formula")
    N = fitted.problem.N
    same = (matrix.names == stored.names and
            np.allclose(matrix.values[:N], stored.values, rtol=1e-12, atol=1e-12))
    if not same:
        raise SpecificationError(
            f"the {what} formula {formula!r} cannot be reproduced on the new products: with them "
            f"its columns become {list(matrix.names)} (estimated: {list(stored.names)}) or its "
            "values change, e.g. a categorical C(...) level that the estimation data lack or a "
            "data-dependent transform (center, scale); give entrants existing levels or write "
            "the formula with explicit columns")
    values: FloatArray = matrix.values[N:]
    if alone.names == stored.names and not np.allclose(alone.values, values):
        raise SpecificationError(f"the {what} formula {formula!r} has data-dependent terms; "
                                 "entry needs x_j that depend on product j's row only")
    return values

