"""Marginal costs of every product at theta: y_S = f(p - eta(theta)) and d y_S / d theta.

For each market: u_ij = delta_j + x2_j' (Sigma nu_i + Pi y_i), alpha_i = the prices entry of
Sigma nu_i + Pi y_i, eta_t from the conduct's first-order conditions, c = p - eta and
f(c) (``model.supply``). With d delta / d theta (the implicit function theorem),
d y_S / d theta = -f'(c) d eta / d theta; for the gradient alone, ``costs_adjoint`` gives
u' d y_S / d theta without d delta / d theta (one adjoint solve per market).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from blpdemand._types import BoolArray, FloatArray, IntArray
from blpdemand.errors import DataError
from blpdemand.model.pricing import choice_probabilities
from blpdemand.model.supply import (
    conduct_ownership,
    market_markups,
    markup_adjoint,
    markup_jacobian,
    transform_costs,
)
from blpdemand.model.utility import agent_coefficients

if TYPE_CHECKING:
    from blpdemand.model.parameters import ParameterLayout
    from blpdemand.model.problem import Problem


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
class _Market:
    """One market's pieces: product rows, utility (J, I), alpha, weights, variables, O."""

    rows: slice
    x2: FloatArray
    utility: FloatArray
    alpha: FloatArray
    weights: FloatArray
    variables: FloatArray
    ownership: FloatArray


def _parameters(layout: ParameterLayout, price_column: int,
                variables: FloatArray) -> tuple[IntArray, IntArray, FloatArray]:
    """X2 row and agent-variable column of each parameter, and (P, I) d alpha_i / d theta_p."""
    sr, sc = layout.sigma_index
    pr, pc = layout.pi_index
    rows = np.concatenate([sr, pr]).astype(np.int64)
    columns = np.concatenate([sc, layout.K2 + pc]).astype(np.int64)
    dalpha = np.where((rows == price_column)[:, None], variables[:, columns].T, 0.0)
    return rows, columns, dalpha


def _markets(problem: Problem, layout: ParameterLayout, theta: FloatArray,
             delta: FloatArray) -> Iterator[_Market]:
    supply, agents = problem.supply, problem.agents
    assert supply is not None and agents is not None
    sigma, pi = layout.unpack(theta)
    nodes = problem.nodes_for(layout)
    coefficients = agent_coefficients(nodes, agents.demographics, sigma, pi)  # (I_total, K2)
    variables = np.column_stack([nodes, agents.demographics])  # [nu, y]
    pm, am = problem.products.markets, agents.markets
    for t in range(pm.T):
        j, a = pm.slice(t), am.slice(t)
        x2, coef = problem.X2.values[j], coefficients[a]
        ownership = conduct_ownership(None if supply.firm_ids is None else supply.firm_ids[j],
                                      j.stop - j.start, supply.conduct, supply.kappa)
        yield _Market(rows=j, x2=x2, utility=delta[j][:, None] + x2 @ coef.T,
                      alpha=coef[:, supply.price_column], weights=agents.weights[a],
                      variables=variables[a], ownership=ownership)


def evaluate_costs(problem: Problem, layout: ParameterLayout, theta: FloatArray,
                   delta: FloatArray, delta_jacobian: FloatArray | None = None
                   ) -> CostEvaluation:
    """Markups, marginal costs and y_S = f(c) at theta and the contraction's delta (N,).

    ``delta_jacobian`` (N, P) d delta / d theta gives d y_S / d theta as well. A market whose
    first-order conditions are singular, or log costs of c <= 0 (unclipped), give ``failure``
    and NaN in y, never an exception.
    """
    supply = problem.supply
    assert supply is not None
    N, P = problem.N, layout.P
    eta = np.zeros(N)
    jacobian = None if delta_jacobian is None else np.zeros((N, P))
    failure = None
    pm = problem.products.markets
    selected = supply.selected
    for t, m in enumerate(_markets(problem, layout, theta, delta)):
        j = m.rows
        if selected is not None and not selected[j.start]:
            eta[j] = np.nan  # no supply moments here (supply_markets): not computed
            continue
        try:
            with np.errstate(all="ignore"):
                eta[j] = market_markups(m.utility, supply.prices[j], m.alpha, m.weights,
                                        m.ownership, market_id=pm.ids[t])
        except DataError as error:
            eta[j] = np.nan
            failure = failure or str(error)
            continue
        if jacobian is None or delta_jacobian is None:
            continue
        rows, columns, dalpha = _parameters(layout, supply.price_column, m.variables)
        du = m.x2[:, rows].T[:, :, None] * m.variables[:, columns].T[:, None, :]  # (P, J, I)
        du += delta_jacobian[j].T[:, :, None]
        with np.errstate(all="ignore"):
            jacobian[j] = markup_jacobian(choice_probabilities(m.utility), m.weights, m.alpha,
                                          m.ownership, eta[j], du, dalpha)
    costs = supply.prices - eta
    with np.errstate(all="ignore"):
        y, derivative, clipped = transform_costs(costs, supply.costs, supply.bounds)
    if selected is not None:
        y, derivative = np.where(selected, y, 0.0), np.where(selected, derivative, 0.0)
        clipped &= selected
    if failure is None and not np.all(np.isfinite(y)):
        bad = np.flatnonzero(~np.isfinite(y))
        failure = (f"{bad.size} marginal cost(s) c = p - eta are not positive (first in market "
                   f"{pm.ids[pm.codes[bad[0]]]!r}: c = {costs[bad[0]]:.4g}), so log costs are "
                   f"undefined at theta={np.asarray(theta).tolist()}; set costs_bounds=(0.001, "
                   "None) to clip them, or use costs='linear'")
    y_jacobian = None if jacobian is None else -derivative[:, None] * jacobian
    return CostEvaluation(eta=eta, costs=costs, y=y, derivative=derivative,
                          y_jacobian=y_jacobian, clipped=clipped, failure=failure)


def costs_adjoint(problem: Problem, layout: ParameterLayout, theta: FloatArray,
                  delta: FloatArray, costs: CostEvaluation,
                  u: FloatArray) -> tuple[FloatArray, FloatArray]:
    """u' d y_S / d theta = direct + r' d delta / d theta for u (N,): returns direct (P,) and
    r (N,), one adjoint solve per market (``model.supply.markup_adjoint``); the caller adds r to
    the demand side's adjoint vector, so d delta / d theta is never formed."""
    supply = problem.supply
    assert supply is not None
    w = -u * costs.derivative  # u' dy = w' d eta, since dy = -f'(c) d eta
    direct = np.zeros(layout.P)
    r = np.zeros(problem.N)
    for m in _markets(problem, layout, theta, delta):
        j = m.rows
        if not np.any(w[j]):
            continue
        rows, columns, dalpha = _parameters(layout, supply.price_column, m.variables)
        with np.errstate(all="ignore"):
            d, r_t = markup_adjoint(choice_probabilities(m.utility), m.weights, m.alpha,
                                    m.ownership, costs.eta[j], w[j], m.x2, m.variables, rows,
                                    columns, dalpha)
        direct -= d  # w' d eta = -(d + r_t' d delta)
        r[j] = -r_t
    return direct, r
