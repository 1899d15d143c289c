"""Share inversion: delta(theta) with s(delta; theta) = s_obs, for any problem (Berry 1994).

The public entry to the inner loop: the problem's own loop (the BLP contraction,
``solve.contraction``, or the nested one, ``solve.nested_loop``), or the closed form where
every agent is alike.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from blpdemand._types import FloatArray
from blpdemand.errors import SpecificationError
from blpdemand.model.parameters import ParameterLayout, make_layout
from blpdemand.model.problem import Problem
from blpdemand.solve.contraction import ContractionResult, delta_jacobian
from blpdemand.solve.fixed_point import FixedPointConfig
from blpdemand.solve.nested_loop import inner_loop

__all__ = ["solve_delta"]


def solve_delta(problem: Problem, layout: ParameterLayout | None = None,
                theta: FloatArray | None = None, *, delta0: FloatArray | None = None,
                jacobian: bool = False, config: FixedPointConfig | None = None,
                tol: float | None = None, max_iterations: int | None = None) -> ContractionResult:
    """Invert shares: delta(theta) with s(delta; theta) = s_obs in every market.

    The inner loop is the problem's (``solve.nested_loop.inner_loop``): the BLP contraction,
    or the damped RCNL one where the problem has nests. Without nests and random coefficients
    (no free Sigma or Pi, e.g. a Problem without ``nonlinear`` and agents, or theta = 0 with
    agents) every agent is alike and the inversion is closed form (Berry 1994):
    r_jt = s_jt / W_t with W_t = sum_i w_it (1 without agents),
    delta_jt = log r_jt - log(1 - sum_k r_kt); no iterations.

    Parameters
    ----------
    problem, layout, theta : the Problem, its ParameterLayout and theta (P,); layout None means
        no random coefficients, theta None means zeros.
    delta0 : (N,) starting delta (default: the logit delta log s_jt - log s_0t).
    jacobian : also return d delta / d theta (N, P) by the implicit function theorem.
    config : FixedPointConfig; ``tol`` and ``max_iterations`` (evaluations) override it.

    Returns
    -------
    ContractionResult (see the module docstring). Reference: Berry, Levinsohn and Pakes (1995).
    """
    if layout is None:
        layout = make_layout(None, None, tuple(problem.X2.names), problem.demographic_names)[0]
    theta = np.zeros(layout.P) if theta is None else np.asarray(theta, dtype=np.float64)
    if theta.shape != (layout.P,):
        raise SpecificationError(f"theta has shape {theta.shape}; the layout has {layout.P} free "
                                 f"parameters {list(layout.names)}")
    if problem.nests is None and (layout.P == 0
                                  or (problem.agents is not None and not np.any(theta))):
        closed = _logit_delta(problem)
        if closed is not None:
            jac = None
            if jacobian:
                jac = (np.zeros((problem.N, 0)) if layout.P == 0
                       else delta_jacobian(problem, layout, theta, closed))
            return ContractionResult(delta=closed, converged=True, iterations=0, evaluations=0,
                                     failed_markets=problem.products.markets.ids[:0],
                                     jacobian=jac)
    # one solve: no exp(mu) kept (the nested loop takes no cache option and ignores it)
    loop = inner_loop(problem, layout, config=_config(config, tol, max_iterations), cache_bytes=0)
    return loop.solve(theta, delta0=delta0, jacobian=jacobian)


def _logit_delta(problem: Problem) -> FloatArray | None:
    """(N,) closed-form delta at mu = 0, or None when some market has no solution."""
    markets = problem.products.markets
    shares = problem.products.shares
    if problem.agents is not None:
        total = problem.agents.markets.segment_sum(problem.agents.weights)
        if np.any(total <= 0):
            return None
        shares = shares / markets.expand(total)
    outside = 1.0 - markets.expand(markets.segment_sum(shares))
    if np.any(outside <= 0) or np.any(shares <= 0):
        return None
    out: FloatArray = np.log(shares) - np.log(outside)
    return out


def _config(config: FixedPointConfig | None, tol: float | None,
            max_iterations: int | None) -> FixedPointConfig:
    config = config or FixedPointConfig()
    if tol is not None:
        config = dataclasses.replace(config, tol=tol)
    if max_iterations is not None:
        config = dataclasses.replace(config, max_evaluations=max_iterations)
    return config
