"""The supply side as an accounting identity: markups, marginal costs and profits.

Under Bertrand-Nash pricing with ownership O, the first-order conditions
s + (O * ds/dp') (p - c) = 0 give markups eta = -(O * ds/dp')^{-1} s and marginal costs
c = p - eta (Berry, Levinsohn and Pakes 1995; Nevo 2001). Profits per consumer: (p - c) s.
A nested logit takes its ds/dp from ``nested_jacobians`` (Cardell 1997).
Per-product inputs and outputs are in the user's row order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from blpdemand._types import AnyArray, FloatArray
from blpdemand.data.validation import check_id_values
from blpdemand.errors import DataError, SpecificationError
from blpdemand.model.demand import (
    DemandBlock,
    block_demand,
    demand_blocks,
    price_values,
)
from blpdemand.model.fitted import FittedDemand
from blpdemand.model.pricing import markups, ownership_matrix
from blpdemand.model.supply import block_markups
from blpdemand.results.elasticities import as_fitted, demand_jacobians
from blpdemand.results.sanity import cost_checks, warns

Kappa = Mapping[tuple[object, object], float]


def per_product(fitted: FittedDemand, values: Any, what: str) -> FloatArray:
    """A user-order (N,) array (or scalar) -> sorted order, checked finite."""
    N = fitted.problem.N
    fitted.problem.products.check_aligned(values, what=what)
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} must be numbers (a scalar or one per product), got {exc}") from exc
    if array.ndim == 0:
        array = np.full(N, float(array))
    if array.shape != (N,):
        raise DataError(f"{what} must have one value per product ({N}), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise DataError(f"{what} has NaN/inf values (first at row "
                        f"{int(np.flatnonzero(~np.isfinite(array))[0])})")
    return fitted.problem.products.sort(array)


def firm_ids_sorted(fitted: FittedDemand, firm_ids: Any = None) -> AnyArray:
    """(N,) firm ids in sorted order: ``firm_ids`` (user order) or the data's ``firm_ids``."""
    products = fitted.problem.products
    if firm_ids is None:
        if not products.has("firm_ids"):
            raise DataError("product data have no 'firm_ids' column; pass firm_ids= or ownership=")
        return _no_missing_firms(products.array("firm_ids"), "product data's 'firm_ids'")
    products.check_aligned(firm_ids, what="firm_ids")
    firm_ids = np.asarray(firm_ids)
    check_id_values(firm_ids, what="firm_ids")
    if firm_ids.shape != (products.N,):
        raise DataError(f"firm_ids must have one value per product ({products.N}), "
                        f"got shape {firm_ids.shape}")
    return _no_missing_firms(products.sort(firm_ids), "firm_ids")


def _no_missing_firms(ids: AnyArray, what: str) -> AnyArray:
    import pandas as pd

    missing = pd.isna(ids)
    if np.any(missing):
        raise DataError(f"{what} has {int(np.sum(missing))} missing value(s); every product needs "
                        "an owner to build the ownership matrix")
    return ids


def ownership_matrices(fitted: FittedDemand, *, firm_ids: Any = None, ownership: Any = None,
                       kappa: Kappa | None = None) -> list[FloatArray]:
    """Ownership O_t (J_t, J_t) of each market.

    Default for a joint demand-supply estimate: the conduct it was estimated under. Else from
    ``firm_ids`` (N,) (default: the data's), optionally with partial ownership ``kappa``
    {(f, g): weight}, or from a custom stacked ``ownership`` (N, max J_t) array whose row j holds
    O_jk of j's market in its first J_t columns (user row order).
    """
    markets = fitted.problem.products.markets
    supply = fitted.problem.supply
    if supply is not None and firm_ids is None and ownership is None and kappa is None:
        from blpdemand.model.supply import conduct_ownership

        # the conduct the supply side was estimated under (Bertrand with its kappa, joint
        # monopoly, or perfect competition: O = 0, no markups)
        return [conduct_ownership(None if supply.firm_ids is None
                                  else supply.firm_ids[markets.slice(t)],
                                  int(markets.sizes[t]), supply.conduct, supply.kappa)
                for t in range(markets.T)]
    if ownership is not None:
        if firm_ids is not None or kappa is not None:
            raise SpecificationError("pass either ownership= or firm_ids=/kappa=, not both")
        stacked = np.asarray(ownership, dtype=np.float64)
        width = int(markets.sizes.max())
        if stacked.ndim != 2 or stacked.shape[0] != markets.N or stacked.shape[1] < width:
            raise DataError(f"ownership must be (N, max J_t) = ({markets.N}, {width}), "
                            f"got {stacked.shape}")
        stacked = fitted.problem.products.sort(stacked)
        out = []
        for t in range(markets.T):
            rows = markets.slice(t)
            block = stacked[rows, : rows.stop - rows.start]
            if not np.all(np.isfinite(block)):
                raise DataError(f"ownership has NaN/inf values in market {markets.ids[t]!r}")
            out.append(block)
        return out
    ids = firm_ids_sorted(fitted, firm_ids)
    _check_kappa(kappa, ids)
    return [ownership_matrix(ids[markets.slice(t)], kappa) for t in range(markets.T)]


def ownership_blocks(fitted: FittedDemand, blocks: tuple[DemandBlock, ...], *,
                     firm_ids: Any = None, ownership: Any = None,
                     kappa: Kappa | None = None) -> list[FloatArray]:
    """Ownership of each block's markets (T_b, J, J), as ``ownership_matrices`` gives them; from
    firm ids alone (no kappa, no custom matrix, no estimated conduct) O_jk = 1{f_j = f_k} is
    formed for the whole block at once."""
    estimated = fitted.problem.supply is not None and firm_ids is None
    if ownership is None and kappa is None and not estimated:
        ids = firm_ids_sorted(fitted, firm_ids)
        return [(ids[b.rows][:, :, None] == ids[b.rows][:, None, :]).astype(np.float64)
                for b in blocks]
    owners = ownership_matrices(fitted, firm_ids=firm_ids, ownership=ownership, kappa=kappa)
    return [np.stack([owners[t] for t in b.markets.tolist()]) for b in blocks]


def _check_kappa(kappa: Any, ids: AnyArray) -> None:
    """kappa maps (firm, firm) pairs of known firms to finite weights."""
    if kappa is None:
        return
    if not isinstance(kappa, Mapping):
        raise SpecificationError(f"kappa must be a {{(firm, firm): weight}} dict, got {kappa!r}")
    known = set(ids.tolist())
    for pair, value in kappa.items():
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise SpecificationError(f"kappa key {pair!r} must be a (firm, firm) pair")
        unknown = [f for f in pair if f not in known]
        if unknown:
            raise DataError(f"kappa names firm(s) {unknown} that are not in the firm_ids")
        if not isinstance(value, (int, float, np.number)) or not np.isfinite(float(value)):
            raise DataError(
                f"kappa weight for {pair!r} is {value!r}; weights must be finite numbers")


def compute_markups(results: Any, *, firm_ids: Any = None, ownership: Any = None,
                    kappa: Kappa | None = None) -> FloatArray:
    """(N,) Bertrand-Nash markups eta = p - c = -(O * ds/dp')^{-1} s at the observed prices.

    For estimation results, Lerner indices eta / p above one (negative costs) are warned about
    as in ``compute_costs``; DataError names a market whose O * ds/dp' is singular.

    Examples
    --------
    >>> eta = compute_markups(results)                      # doctest: +SKIP
    """
    fitted = as_fitted(results, nested=True)
    products = fitted.problem.products
    eta = products.unsort(markups_sorted(fitted, firm_ids=firm_ids, ownership=ownership,
                                         kappa=kappa))
    if warns(results):
        _warn_costs(fitted, eta, products.unsort(price_values(fitted)))
    return eta


def markups_sorted(fitted: FittedDemand, *, firm_ids: Any = None, ownership: Any = None,
                   kappa: Kappa | None = None,
                   blocks: tuple[DemandBlock, ...] | None = None) -> FloatArray:
    """(N,) eta = -(O * ds/dp')^{-1} s in sorted rows: random-coefficients and logit demand by
    one batched solve per block of markets (``model.supply.block_markups``), nested demand
    market by market; DataError names a market where O * ds/dp' is singular."""
    if fitted.nests is not None or fitted.problem.nests is not None:
        owners = ownership_matrices(fitted, firm_ids=firm_ids, ownership=ownership, kappa=kappa)
        jacobians, shares = demand_jacobians(fitted)
        ids = fitted.problem.products.markets.ids
        return np.concatenate([_nested_markups(ids[t], jac, o, s) for t, (jac, o, s) in
                               enumerate(zip(jacobians, owners, shares))])
    blocks = demand_blocks(fitted) if blocks is None else blocks
    owners = ownership_blocks(fitted, blocks, firm_ids=firm_ids, ownership=ownership,
                              kappa=kappa)
    eta = np.full(fitted.problem.N, np.nan)
    ids = fitted.problem.products.markets.ids
    for block, owner in zip(blocks, owners):
        with np.errstate(all="ignore"):
            try:
                values, _ = block_markups(block.probabilities(), block.weights, block.alpha,
                                          owner)
            except np.linalg.LinAlgError:
                values = np.full(block.rows.shape, np.nan)
        for k in np.flatnonzero(~np.all(np.isfinite(values), axis=1)).tolist():
            # names the market (DataError), or solves it alone where the batch failed
            values[k] = (markups(block_demand(block, k, ids[block.markets[k]]), owner[k])
                         if np.any(owner[k]) else 0.0)
        eta[block.rows] = values
    return eta


def _nested_markups(market: object, jacobian: FloatArray, ownership: FloatArray,
                    shares: FloatArray) -> FloatArray:
    """(J,) eta = -(O * ds/dp')^{-1} s of one market; DataError where it is singular."""
    with np.errstate(all="ignore"):
        try:
            eta: FloatArray = -np.linalg.solve(ownership * jacobian.T, shares).astype(np.float64)
        except np.linalg.LinAlgError:
            eta = np.full(shares.size, np.nan)
    if not np.all(np.isfinite(eta)):
        raise DataError(f"market {np.asarray(market).tolist()!r}: the Bertrand first-order "
                        "conditions (O * ds/dp') eta = -s are singular; check the estimates "
                        "(rho near 1, a price coefficient near 0) or the ownership matrix")
    return eta


def compute_costs(results: Any, *, firm_ids: Any = None, ownership: Any = None,
                  kappa: Kappa | None = None) -> FloatArray:
    """(N,) marginal costs c = p - eta implied by Bertrand-Nash pricing at the observed prices.

    For estimation results (not a bare FittedDemand), negative costs and Lerner indices
    (p - c) / p above one are counted in EconomicWarnings naming the worst products.
    """
    fitted = as_fitted(results, nested=True)
    prices = fitted.problem.products.unsort(price_values(fitted))
    eta = compute_markups(fitted, firm_ids=firm_ids, ownership=ownership, kappa=kappa)
    if warns(results):
        _warn_costs(fitted, eta, prices)
    return prices - eta


def _warn_costs(fitted: FittedDemand, eta: FloatArray, prices: FloatArray) -> None:
    """EconomicWarnings for negative costs c = p - eta and Lerner indices eta / p above one."""
    for check in cost_checks(fitted, prices - eta, prices):
        check.warn(stacklevel=4)  # the caller of compute_costs/markups


def compute_profits(results: Any, *, costs: Any = None, prices: Any = None) -> FloatArray:
    """(N,) profits per consumer (p - c) s(p), at ``prices`` (default observed, user order) with
    ``costs`` (default: those implied by the data's ownership)."""
    fitted = as_fitted(results)
    if costs is None:
        costs = compute_costs(fitted)
    c = per_product(fitted, costs, "costs")
    p = price_values(fitted) if prices is None else per_product(fitted, prices, "prices")
    s = np.zeros(fitted.problem.N)
    for block in demand_blocks(fitted):  # s(p) on the blocked engine
        s[block.rows] = block.shares(p[block.rows])
    return fitted.problem.products.unsort((p - c) * s)
