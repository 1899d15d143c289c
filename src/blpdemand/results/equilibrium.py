"""Counterfactual equilibria of every market: prices, shares, HHI and consumer surplus.

Given marginal costs c' (taxes included), ownership O' and the products left on the market,
each market's Bertrand-Nash prices solve p = c' + zeta(p) (Morrow and Skerlos 2011; Newton as
a fallback). Random-coefficients and plain logit demand run on ``model.demand``'s blocks of
markets of equal size: one compiled fixed point per block, shares and the log-sum surplus
(Small and Rosen 1981) as batched arrays, HHI = 10,000 s' F s / (sum_j s_j)^2 with F_jk = 1
when j and k have the same owner. Nested logit and RCNL demand keep their per-market path
(``model.nested_demand``). Everything is in the problem's sorted row order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from blpdemand._types import AnyArray, BoolArray, FloatArray, IntArray, Status
from blpdemand.model.demand import DemandBlock, demand_blocks
from blpdemand.model.fitted import FittedDemand
from blpdemand.model.nested_demand import NestedMarketDemand, solve_nested_prices
from blpdemand.model.pricing import (
    MarketDemand,
    PriceSolution,
    PricingConfig,
    nonnegative_alpha,
    solve_block_prices,
    solve_prices,
)
from blpdemand.results.costs import Kappa, ownership_blocks, ownership_matrices
from blpdemand.results.elasticities import model_demands
from blpdemand.results.surplus import market_surplus
from blpdemand.solve.jobs import map_jobs


@dataclass(frozen=True, slots=True)
class Equilibrium:
    """Before and after, sorted rows: prices, shares (N,); hhi, surplus (T,); status and
    iterations per market; ``undefined`` market ids without a surplus (some alpha_i >= 0) and
    ``capped`` market positions whose iterations were capped (some alpha_i >= 0, w_i > 0)."""

    prices_before: FloatArray
    shares_before: FloatArray
    prices: FloatArray
    shares: FloatArray
    hhi_before: FloatArray
    hhi: FloatArray
    surplus_before: FloatArray
    surplus: FloatArray
    status: list[Status]
    iterations: IntArray
    undefined: list[object]
    capped: list[int]


def _hhi(shares: FloatArray, firm_ids: AnyArray) -> FloatArray:
    """(T_b,) 10,000 sum_f (s_f / sum_j s_j)^2 = 10,000 s' F s / (sum_j s_j)^2 per market of
    (T_b, J) shares (0 outside the choice set) and owners (T_b, J)."""
    same = (firm_ids[:, :, None] == firm_ids[:, None, :]).astype(np.float64)
    inside = np.einsum("tj,tjk,tk->t", shares, same, shares)
    out: FloatArray = 1e4 * inside / shares.sum(axis=1) ** 2
    return out


def hhi(shares: FloatArray, firm_ids: AnyArray) -> float:
    """10,000 sum_f (s_f / sum_j s_j)^2 over the inside shares (J,) of one market."""
    return float(_hhi(np.asarray(shares)[None], np.asarray(firm_ids)[None])[0])


@dataclass(frozen=True, slots=True)
class BlockPrices:
    """One block's Bertrand-Nash problem as data (a job): ``solve_block_prices``' arguments."""

    utility: FloatArray
    alpha: FloatArray
    weights: FloatArray
    base: FloatArray
    costs: FloatArray
    ownership: FloatArray
    available: BoolArray
    market_ids: AnyArray
    config: PricingConfig


def solve_block(job: BlockPrices) -> tuple[FloatArray, list[PriceSolution]]:
    """Prices and per-market solutions of one block (a top-level function: picklable)."""
    return solve_block_prices(job.utility, job.alpha, job.weights, job.base, job.costs,
                              job.ownership, available=job.available,
                              market_ids=job.market_ids, config=job.config)


def blocked_equilibrium(fitted: FittedDemand, costs: FloatArray, available: BoolArray, *,
                        firm_ids: object, ownership: object, kappa: Kappa | None,
                        firms_before: AnyArray | None, firms_after: AnyArray | None,
                        config: PricingConfig,
                        blocks: tuple[DemandBlock, ...] | None = None,
                        executor: Any = None) -> Equilibrium:
    """The equilibrium of every market of a random-coefficients or logit demand, block by
    block (costs (N,) and available (N,) sorted; firm_ids, ownership, kappa as the user gave
    them to ``compute_prices``; ``blocks`` the fitted demand's, built here if not given). Each
    block's fixed point is a job (``BlockPrices``), run on ``executor`` (processes, a Dask
    client) when given: the same numbers, the blocks in parallel."""
    markets = fitted.problem.products.markets
    N, T = markets.N, markets.T
    blocks = demand_blocks(fitted) if blocks is None else blocks
    owners = ownership_blocks(fitted, blocks, firm_ids=firm_ids, ownership=ownership,
                              kappa=kappa)
    out = {name: np.full(N, np.nan) for name in ("prices_before", "shares_before", "prices",
                                                  "shares")}
    per_market = {name: np.full(T, np.nan) for name in ("hhi_before", "hhi", "surplus_before",
                                                         "surplus")}
    status = [Status.CONVERGED] * T
    iterations = np.zeros(T, dtype=np.int64)
    undefined, capped = np.zeros(T, dtype=bool), np.zeros(T, dtype=bool)
    jobs = [BlockPrices(block.utility, block.alpha, block.weights, block.prices,
                        costs[block.rows], owner, available[block.rows],
                        markets.ids[block.markets], config)
            for block, owner in zip(blocks, owners)]
    solved = map_jobs(solve_block, jobs, executor=executor, names=[
        f"market block {k} ({b.markets.size} markets of {b.rows.shape[1]} products)"
        for k, b in enumerate(blocks)])
    for block, (prices, solutions) in zip(blocks, solved):
        rows, where = block.rows, block.markets
        keep = available[rows]
        shares_before, surplus_before = block.shares_and_surplus()
        out["prices_before"][rows], out["shares_before"][rows] = block.prices, shares_before
        per_market["surplus_before"][where] = surplus_before
        converged = np.array([s.status.converged for s in solutions])
        for k, solution in enumerate(solutions):
            status[where[k]], iterations[where[k]] = solution.status, solution.iterations
        undefined[where] = np.any(block.alpha >= 0, axis=1)
        capped[where] = np.any((block.alpha >= 0) & (block.weights > 0), axis=1)
        if firms_before is not None:
            per_market["hhi_before"][where] = _hhi(shares_before, firms_before[rows])
        done = converged & keep.any(axis=1)
        if not done.any():
            continue
        with np.errstate(invalid="ignore"):
            shares, surplus = block.shares_and_surplus(prices, keep)
            shares = np.where(keep, shares, np.nan)
        ok = rows[done][keep[done]]
        out["prices"][ok], out["shares"][ok] = prices[done][keep[done]], shares[done][
            keep[done]]
        per_market["surplus"][where[done]] = surplus[done]
        if firms_after is not None:
            per_market["hhi"][where[done]] = _hhi(np.where(keep, shares, 0.0)[done],
                                                  firms_after[rows][done])
    return Equilibrium(**out, **per_market, status=status, iterations=iterations,
                       undefined=np.asarray(markets.ids[undefined]).tolist(),
                       capped=np.flatnonzero(capped).tolist())


def market_equilibrium(fitted: FittedDemand, costs: FloatArray, available: BoolArray, *,
                       firm_ids: object, ownership: object, kappa: Kappa | None,
                       firms_before: AnyArray | None, firms_after: AnyArray | None,
                       config: PricingConfig) -> Equilibrium:
    """The same market by market, for nested logit and RCNL demand (``NestedMarketDemand``)."""
    markets = fitted.problem.products.markets
    N, T = markets.N, markets.T
    demands = model_demands(fitted)
    owners = ownership_matrices(fitted, firm_ids=firm_ids, ownership=ownership, kappa=kappa)
    prices_before = np.concatenate([d.prices for d in demands])
    shares_before = np.concatenate([d.shares() for d in demands])
    prices, shares = np.full(N, np.nan), np.full(N, np.nan)
    hhi_before, hhi_after = np.full(T, np.nan), np.full(T, np.nan)
    cs_before, cs_after = np.full(T, np.nan), np.full(T, np.nan)
    status, iterations = [], np.zeros(T, dtype=np.int64)
    undefined: list[object] = []
    capped: list[int] = []

    def surplus(demand: MarketDemand, at: FloatArray | None = None) -> float:
        if np.any(demand.alpha >= 0):  # CS needs alpha_i < 0; prices do not
            undefined.append(np.asarray(demand.market_id).tolist())
            return np.nan
        if isinstance(demand, NestedMarketDemand):
            return demand.surplus(at)
        return market_surplus(demand, at)

    for t, demand in enumerate(demands):
        rows = markets.slice(t)
        mask = available[rows]
        idx = np.flatnonzero(mask) + rows.start
        sub = demand.subset(mask)
        owner = owners[t][np.ix_(mask, mask)]
        solution = (solve_nested_prices(sub, costs[idx], owner, config=config)
                    if isinstance(sub, NestedMarketDemand)
                    else solve_prices(sub, costs[idx], owner, config=config))
        if nonnegative_alpha(sub):
            capped.append(t)
        status.append(solution.status)
        iterations[t] = solution.iterations
        cs_before[t] = surplus(demand)
        if firms_before is not None:
            hhi_before[t] = _hhi(shares_before[rows][None], firms_before[rows][None])[0]
        if not solution.status.converged:
            continue
        prices[idx] = solution.prices
        shares[idx] = sub.shares(solution.prices)
        cs_after[t] = surplus(sub, solution.prices)
        if firms_after is not None and idx.size:
            hhi_after[t] = _hhi(shares[idx][None], firms_after[idx][None])[0]
    return Equilibrium(prices_before=prices_before, shares_before=shares_before, prices=prices,
                       shares=shares, hhi_before=hhi_before, hhi=hhi_after,
                       surplus_before=cs_before, surplus=cs_after, status=status,
                       iterations=iterations, undefined=list(dict.fromkeys(undefined)),
                       capped=capped)
