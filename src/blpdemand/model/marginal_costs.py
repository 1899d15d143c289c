"""Marginal costs of every product at theta: y_S = f(p - eta(theta)) and d y_S / d theta.

For each market: u_ij = delta_j + x2_j' (Sigma nu_i + Pi y_i), alpha_i = the prices entry of
Sigma nu_i + Pi y_i, eta_t from the conduct's first-order conditions, c = p - eta and
f(c) (``model.supply``). With d delta / d theta (the implicit function theorem),
d y_S / d theta = -f'(c) d eta / d theta.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from blpdemand._types import BoolArray, FloatArray
from blpdemand.errors import DataError
from blpdemand.model.pricing import choice_probabilities
from blpdemand.model.supply import (
    conduct_ownership,
    market_markups,
    markup_jacobian,
    transform_costs,
)
from blpdemand.model.utility import agent_coefficients

if TYPE_CHECKING:
    from blpdemand.model.parameters import ParameterLayout
    from blpdemand.model.problem import Problem


@dataclass(frozen=True, slots=True, kw_only=True)
class CostEvaluation:
    """Markups eta, costs c = p - eta, y = f(c) (all (N,), sorted rows), d y / d theta (N, P)
    or None, the clipped costs (N,) bool, and ``failure`` (a message) or None."""

    eta: FloatArray
    costs: FloatArray
    y: FloatArray
    y_jacobian: FloatArray | None
    clipped: BoolArray
    failure: str | None = None


def evaluate_costs(problem: Problem, layout: ParameterLayout, theta: FloatArray,
                   delta: FloatArray, delta_jacobian: FloatArray | None = None
                   ) -> CostEvaluation:
    """Markups, marginal costs and y_S = f(c) at theta and the contraction's delta (N,).

    ``delta_jacobian`` (N, P) d delta / d theta gives d y_S / d theta as well. A market whose
    first-order conditions are singular, or log costs of c <= 0 (unclipped), give ``failure``
    and NaN in y, never an exception.
    """
    supply = problem.supply
    assert supply is not None and problem.agents is not None
    N, P = problem.N, layout.P
    sigma, pi = layout.unpack(theta)
    nodes = problem.nodes_for(layout)
    demographics = problem.agents.demographics
    coefficients = agent_coefficients(nodes, demographics, sigma, pi)  # (I_total, K2)
    variables = np.column_stack([nodes, demographics])  # [nu, y]
    sr, sc = layout.sigma_index
    pr, pc = layout.pi_index
    rows = np.concatenate([sr, pr]).astype(np.int64)
    columns = np.concatenate([sc, layout.K2 + pc]).astype(np.int64)
    kp = supply.price_column
    eta = np.zeros(N)
    jacobian = None if delta_jacobian is None else np.zeros((N, P))
    failure = None
    pm, am = problem.products.markets, problem.agents.markets
    X2 = problem.X2.values
    for t in range(pm.T):
        j, a = pm.slice(t), am.slice(t)
        x2, coef, weights = X2[j], coefficients[a], problem.agents.weights[a]
        utility = delta[j][:, None] + x2 @ coef.T
        alpha = coef[:, kp]
        ownership = conduct_ownership(None if supply.firm_ids is None else supply.firm_ids[j],
                                      j.stop - j.start, supply.conduct, supply.kappa)
        try:
            with np.errstate(all="ignore"):
                eta[j] = market_markups(utility, supply.prices[j], alpha, weights,
                                        ownership, market_id=pm.ids[t])
        except DataError as error:
            eta[j] = np.nan
            failure = failure or str(error)
            continue
        if jacobian is None or delta_jacobian is None:
            continue
        V = variables[a]
        du = x2[:, rows].T[:, :, None] * V[:, columns].T[:, None, :]  # (P, J, I) d mu
        du += delta_jacobian[j].T[:, :, None]
        dalpha = np.where((rows == kp)[:, None], V[:, columns].T, 0.0)  # (P, I)
        with np.errstate(all="ignore"):
            jacobian[j] = markup_jacobian(choice_probabilities(utility), weights, alpha,
                                          ownership, eta[j], du, dalpha)
    costs = supply.prices - eta
    with np.errstate(all="ignore"):
        y, derivative, clipped = transform_costs(costs, supply.costs, supply.bounds)
    if failure is None and not np.all(np.isfinite(y)):
        bad = np.flatnonzero(~np.isfinite(y))
        market = pm.ids[pm.codes[bad[0]]]
        failure = (f"{bad.size} marginal cost(s) c = p - eta are not positive (first in market "
                   f"{market!r}: c = {costs[bad[0]]:.4g}), so log costs are undefined at theta="
                   f"{np.asarray(theta).tolist()}; set costs_bounds=(0.001, None) to clip them, "
                   "or use costs='linear'")
    y_jacobian = None if jacobian is None else -derivative[:, None] * jacobian
    return CostEvaluation(eta=eta, costs=costs, y=y, y_jacobian=y_jacobian, clipped=clipped,
                          failure=failure)
