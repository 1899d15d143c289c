"""Marginal costs of every product at theta: y_S = f(p - eta(theta)) and d y_S / d theta.

For each market: u_ij = delta_j + x2_j' (Sigma nu_i + Pi y_i), alpha_i = the prices entry of
Sigma nu_i + Pi y_i, eta_t from the conduct's first-order conditions, c = p - eta and
f(c) (``model.supply``). With d delta / d theta (the implicit function theorem),
d y_S / d theta = -f'(c) d eta / d theta; for the gradient alone, ``costs_adjoint`` gives
u' d y_S / d theta without d delta / d theta (one adjoint solve per market).

Markets of equal size (J_t, I_t) are computed together in blocks of at most
``BLOCK_BYTES`` of (T_b, J, I) arrays (``supply_blocks``, built once per problem), so that an
evaluation has no Python loop over markets; the per-market d eta / d theta of the standard
errors is the exception.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from blpdemand._types import BoolArray, FloatArray, IntArray
from blpdemand.errors import DataError
from blpdemand.model.pricing import choice_probabilities_3d
from blpdemand.model.supply import (
    block_markups,
    conduct_ownership,
    market_markups,
    markup_adjoint,
    markup_jacobian,
    markup_matrix,
    transform_costs,
)
from blpdemand.model.utility import agent_coefficients

if TYPE_CHECKING:
    from blpdemand.model.parameters import ParameterLayout
    from blpdemand.model.problem import Problem

BLOCK_BYTES = 1 << 20  # one (T_b, J, I) array of a block (a dozen live at once)
KEPT_BYTES = 64 << 20  # probabilities and A of every block kept for the adjoint up to this


@dataclass(frozen=True, slots=True, kw_only=True)
class CostEvaluation:
    """Markups eta, costs c = p - eta, y = f(c) and f'(c) (all (N,), sorted rows), d y / d theta
    (N, P) or None, the clipped costs (N,) bool, and ``failure`` (a message) or None."""

    eta: FloatArray
    costs: FloatArray
    y: FloatArray
    derivative: FloatArray
    y_jacobian: FloatArray | None
    clipped: BoolArray
    failure: str | None = None


@dataclass(frozen=True, slots=True)
class SupplyBlock:
    """Markets of one size with supply moments: positions (T_b,), product rows (T_b, J), agent
    rows (T_b, I), ownership (T_b, J, J) (it does not depend on theta)."""

    markets: IntArray
    products: IntArray
    agents: IntArray
    ownership: FloatArray


def supply_blocks(problem: Problem) -> tuple[SupplyBlock, ...]:
    """The problem's markets with supply moments grouped by (J_t, I_t), in chunks whose
    (T_b, J, I) arrays stay under ``BLOCK_BYTES``."""
    supply, agents = problem.supply, problem.agents
    assert supply is not None and agents is not None
    pm, am = problem.products.markets, agents.markets
    J, I = pm.sizes, am.sizes
    active = np.arange(pm.T)
    first = np.minimum(pm.offsets[:-1], max(pm.N - 1, 0))  # a market's first row
    active = active[J > 0] if supply.selected is None else active[
        supply.selected[first] & (J > 0)]
    blocks = []
    for size in sorted({(int(J[t]), int(I[t])) for t in active}):
        same = active[(J[active] == size[0]) & (I[active] == size[1])]
        step = max(1, BLOCK_BYTES // max(1, 8 * size[0] * size[1]))
        for start in range(0, same.size, step):
            ts = same[start:start + step]
            products = pm.offsets[ts][:, None] + np.arange(size[0])[None]
            owners = np.stack([conduct_ownership(
                None if supply.firm_ids is None else supply.firm_ids[pm.slice(t)], size[0],
                supply.conduct, supply.kappa) for t in ts.tolist()])
            blocks.append(SupplyBlock(markets=ts, products=products, ownership=owners,
                                      agents=am.offsets[ts][:, None] + np.arange(size[1])[None]))
    return tuple(blocks)


@dataclass(frozen=True, slots=True)
class _Demand:
    """A block's demand at theta: x2 (T_b, J, K2), choice probabilities (T_b, J, I), alpha,
    weights (T_b, I), agent variables (T_b, I, V)."""

    x2: FloatArray
    probabilities: FloatArray
    alpha: FloatArray
    weights: FloatArray
    variables: FloatArray


def _demands(problem: Problem, layout: ParameterLayout, theta: FloatArray, delta: FloatArray,
             blocks: tuple[SupplyBlock, ...]) -> Iterator[tuple[SupplyBlock, _Demand]]:
    supply, agents = problem.supply, problem.agents
    assert supply is not None and agents is not None
    sigma, pi = layout.unpack(theta)
    nodes = problem.nodes_for(layout)
    coefficients = agent_coefficients(nodes, agents.demographics, sigma, pi)  # (I_total, K2)
    for block in blocks:
        x2, coef = problem.X2.values[block.products], coefficients[block.agents]
        utility = delta[block.products][:, :, None] + np.matmul(x2, coef.transpose(0, 2, 1))
        yield block, _Demand(x2=x2, probabilities=choice_probabilities_3d(utility),
                             alpha=coef[:, :, supply.price_column],
                             weights=agents.weights[block.agents],
                             variables=np.concatenate(  # [nu, y] of the block's agents
                                 [nodes[block.agents], agents.demographics[block.agents]],
                                 axis=2))


def _parameters(layout: ParameterLayout, price_column: int,
                variables: FloatArray) -> tuple[IntArray, IntArray, FloatArray]:
    """X2 row and agent-variable column of each parameter, and d alpha_i / d theta_p
    ((..., P, I) for variables (..., I, V))."""
    sr, sc = layout.sigma_index
    pr, pc = layout.pi_index
    rows = np.concatenate([sr, pr]).astype(np.int64)
    columns = np.concatenate([sc, layout.K2 + pc]).astype(np.int64)
    moved = np.swapaxes(variables[..., columns], -1, -2)
    dalpha = np.where((rows == price_column)[:, None], moved, 0.0)
    return rows, columns, dalpha


Kept = list[tuple["_Demand", FloatArray]]  # each block's demand and A = O * (ds/dp)'


def evaluate_costs(problem: Problem, layout: ParameterLayout, theta: FloatArray,
                   delta: FloatArray, delta_jacobian: FloatArray | None = None,
                   blocks: tuple[SupplyBlock, ...] | None = None,
                   keep: Kept | None = None) -> CostEvaluation:
    """Markups, marginal costs and y_S = f(c) at theta and the contraction's delta (N,).

    ``delta_jacobian`` (N, P) d delta / d theta gives d y_S / d theta as well. A market whose
    first-order conditions are singular, or log costs of c <= 0 (unclipped), give ``failure``
    and NaN in y, never an exception. Markets without supply moments (``supply_markets``) get
    NaN costs and y = 0. ``keep`` (a list) receives every block's demand and A when all fit
    ``KEPT_BYTES`` (else it stays empty), for ``costs_adjoint`` at the same theta.
    """
    supply = problem.supply
    assert supply is not None
    blocks = supply_blocks(problem) if blocks is None else blocks
    N, P = problem.N, layout.P
    eta = np.full(N, np.nan)
    jacobian = None if delta_jacobian is None else np.zeros((N, P))
    failure = None
    pm = problem.products.markets
    kept: Kept | None = [] if keep is not None else None
    size = 0
    for block, demand in _demands(problem, layout, theta, delta, blocks):
        with np.errstate(all="ignore"):
            try:
                values, A = block_markups(demand.probabilities, demand.weights, demand.alpha,
                                          block.ownership)
            except np.linalg.LinAlgError:
                values, A = np.full(block.products.shape, np.nan), None
        eta[block.products] = values
        size += demand.probabilities.nbytes + (0 if A is None else A.nbytes)
        if kept is not None and A is not None and size <= KEPT_BYTES:
            kept.append((demand, A))
        else:
            kept = None
        for k in np.flatnonzero(~np.all(np.isfinite(values), axis=1)).tolist():
            t = int(block.markets[k])  # name the market: the one-market computation's error
            try:
                s = demand.probabilities[k]
                with np.errstate(all="ignore"):  # u = log s - log s_0 gives back s
                    market_markups(np.log(s) - np.log(1.0 - s.sum(axis=0)),
                                   supply.prices[pm.slice(t)], demand.alpha[k],
                                   demand.weights[k], block.ownership[k], market_id=pm.ids[t])
            except DataError as error:
                failure = failure or str(error)
            failure = failure or f"market {pm.ids[t]!r}: markups are not finite"
        if jacobian is None or delta_jacobian is None or failure is not None:
            continue
        rows, columns, dalpha = _parameters(layout, supply.price_column, demand.variables)
        for k, j in enumerate(block.products):
            V = demand.variables[k]
            du = demand.x2[k][:, rows].T[:, :, None] * V[:, columns].T[:, None, :]  # (P, J, I)
            du += delta_jacobian[j].T[:, :, None]
            with np.errstate(all="ignore"):
                jacobian[j] = markup_jacobian(demand.probabilities[k], demand.weights[k],
                                              demand.alpha[k], block.ownership[k], eta[j], du,
                                              dalpha[k])
    costs = supply.prices - eta
    with np.errstate(all="ignore"):
        y, derivative, clipped = transform_costs(costs, supply.costs, supply.bounds)
    if supply.selected is not None:
        y = np.where(supply.selected, y, 0.0)
        derivative = np.where(supply.selected, derivative, 0.0)
        clipped &= supply.selected
    if failure is None and not np.all(np.isfinite(y)):
        bad = np.flatnonzero(~np.isfinite(y))
        market = np.asarray(pm.ids)[pm.codes[bad[0]]].item()  # as the user wrote it
        failure = (f"{bad.size} marginal cost(s) c = p - eta are not positive (first in market "
                   f"{market!r}: c = {costs[bad[0]]:.4g}), so log costs are "
                   f"undefined at theta={np.asarray(theta).tolist()}; set costs_bounds=(0.001, "
                   "None) to clip them, or use costs='linear'")
    y_jacobian = None if jacobian is None else -derivative[:, None] * jacobian
    if keep is not None and kept is not None:
        keep.extend(kept)
    return CostEvaluation(eta=eta, costs=costs, y=y, derivative=derivative,
                          y_jacobian=y_jacobian, clipped=clipped, failure=failure)


def costs_adjoint(problem: Problem, layout: ParameterLayout, theta: FloatArray,
                  delta: FloatArray, costs: CostEvaluation, u: FloatArray,
                  blocks: tuple[SupplyBlock, ...] | None = None, kept: Kept | None = None
                  ) -> tuple[FloatArray, FloatArray]:
    """u' d y_S / d theta = direct + r' d delta / d theta for u (N,): returns direct (P,) and
    r (N,), one adjoint solve per market (``model.supply.markup_adjoint``) over blocks of
    markets; the caller adds r to the demand side's adjoint vector, so d delta / d theta is
    never formed. ``kept``: what ``evaluate_costs`` kept at this theta (reused, not formed
    again)."""
    supply = problem.supply
    assert supply is not None
    blocks = supply_blocks(problem) if blocks is None else blocks
    w = -u * costs.derivative  # u' dy = w' d eta, since dy = -f'(c) d eta
    direct = np.zeros(layout.P)
    r = np.zeros(problem.N)
    kept = kept if kept and len(kept) == len(blocks) else None
    pairs = (zip(blocks, (demand for demand, _ in kept)) if kept is not None
             else _demands(problem, layout, theta, delta, blocks))
    for b, (block, demand) in enumerate(pairs):
        rows, columns, dalpha = _parameters(layout, supply.price_column, demand.variables)
        with np.errstate(all="ignore"):
            A = kept[b][1] if kept is not None else markup_matrix(  # eta known: no solve again
                demand.probabilities, demand.weights, demand.alpha, block.ownership)
            d, r_block = markup_adjoint(demand.probabilities, demand.weights, demand.alpha,
                                        block.ownership, A, costs.eta[block.products],
                                        w[block.products], demand.x2, demand.variables, rows,
                                        columns, dalpha)
        direct -= d.sum(axis=0)  # w' d eta = -(d + r' d delta)
        r[block.products] = -r_block
    return direct, r
