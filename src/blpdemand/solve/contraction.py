"""REFERENCE inner loop (slow, per-market Python loop): the contract the fast kernels replace.

Public API (kept stable for the estimator and post-estimation):
  compute_shares(problem, layout, theta, delta) -> (N,) s_jt(delta; theta)
  solve_delta(problem, layout, theta, *, delta0=None, tol=1e-14, max_iterations=10_000,
              jacobian=False)
      -> ContractionResult(delta, converged, iterations, evaluations, failed_markets, jacobian)
  delta_jacobian(problem, layout, theta, delta) -> (N, P) d delta / d theta (IFT)

delta^{k+1} = delta^k + log(s_obs) - log(s(delta^k; theta))   (Berry 1994; BLP 1995)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from blpdemand._types import AnyArray, FloatArray
from blpdemand.model.parameters import ParameterLayout
from blpdemand.model.problem import Problem


@dataclass(frozen=True, slots=True)
class ContractionResult:
    delta: FloatArray
    converged: bool
    iterations: int
    evaluations: int
    failed_markets: AnyArray
    jacobian: FloatArray | None = None


def _market_mu(problem: Problem, layout: ParameterLayout, theta: FloatArray) -> list[FloatArray]:
    """mu_ijt = x2_jt' (Sigma nu_it + Pi y_it) for each market: list of (J_t, I_t)."""
    sigma, pi = layout.unpack(theta)
    assert problem.agents is not None
    nodes = problem.nodes_for(layout)
    coefficients = nodes @ sigma.T + problem.agents.demographics @ pi.T  # (I, K2)
    out = []
    pm, am = problem.products.markets, problem.agents.markets
    for t in range(pm.T):
        out.append(problem.X2.values[pm.slice(t)] @ coefficients[am.slice(t)].T)
    return out


def _probabilities(delta_t: FloatArray, mu_t: FloatArray) -> FloatArray:
    """Choice probabilities s_ijt (J_t, I_t), overflow-safe."""
    u = delta_t[:, None] + mu_t
    top = np.maximum(u.max(axis=0), 0.0)
    e = np.exp(u - top)
    return e / (np.exp(-top) + e.sum(axis=0))


def compute_shares(problem: Problem, layout: ParameterLayout, theta: FloatArray,
                   delta: FloatArray) -> FloatArray:
    """s_jt = sum_i w_it s_ijt for all markets: (N,)."""
    assert problem.agents is not None
    mus = _market_mu(problem, layout, theta)
    pm, am = problem.products.markets, problem.agents.markets
    out = np.empty(problem.N)
    for t in range(pm.T):
        out[pm.slice(t)] = _probabilities(delta[pm.slice(t)], mus[t]) @ problem.agents.weights[am.slice(t)]
    return out


def solve_delta(problem: Problem, layout: ParameterLayout, theta: FloatArray, *,
                delta0: FloatArray | None = None, tol: float = 1e-14,
                max_iterations: int = 10_000, jacobian: bool = False) -> ContractionResult:
    """Iterate delta <- delta + log s_obs - log s(delta) market by market until max change < tol."""
    assert problem.agents is not None
    mus = _market_mu(problem, layout, theta)
    pm, am = problem.products.markets, problem.agents.markets
    log_s = np.log(problem.products.shares)
    delta = problem.products.logit_delta.copy() if delta0 is None else np.array(delta0, dtype=float)
    failed = []
    total = 0
    for t in range(pm.T):
        rows, w = pm.slice(t), problem.agents.weights[am.slice(t)]
        d = delta[rows]
        for it in range(max_iterations):
            new = d + log_s[rows] - np.log(_probabilities(d, mus[t]) @ w)
            change = np.max(np.abs(new - d)) if new.size else 0.0
            d = new
            if not np.isfinite(change):
                break
            if change < tol:
                break
        total = max(total, it + 1)
        if not (np.isfinite(change) and change < tol):
            failed.append(pm.ids[t])
        delta[rows] = d
    jac = delta_jacobian(problem, layout, theta, delta) if jacobian and not failed else None
    return ContractionResult(delta=delta, converged=not failed, iterations=total,
                             evaluations=total, failed_markets=np.asarray(failed), jacobian=jac)


def delta_jacobian(problem: Problem, layout: ParameterLayout, theta: FloatArray,
                   delta: FloatArray) -> FloatArray:
    """d delta / d theta = -(d s / d delta)^{-1} (d s / d theta), market by market: (N, P)."""
    assert problem.agents is not None
    mus = _market_mu(problem, layout, theta)
    pm, am = problem.products.markets, problem.agents.markets
    nodes = problem.nodes_for(layout)
    demo = problem.agents.demographics
    X2 = problem.X2.values
    out = np.zeros((problem.N, layout.P))
    sr, sc = layout.sigma_index
    pr, pc = layout.pi_index
    for t in range(pm.T):
        rows, arows = pm.slice(t), am.slice(t)
        w = problem.agents.weights[arows]
        p = _probabilities(delta[rows], mus[t])  # (J, I)
        pw = p * w
        ds_ddelta = np.diag(pw.sum(axis=1)) - pw @ p.T
        ds_dtheta = np.empty((p.shape[0], layout.P))
        x2 = X2[rows]
        for k, (r, c) in enumerate(zip(sr, sc)):
            v = x2[:, r][:, None] * nodes[arows, c][None, :]  # d mu / d sigma_rc
            ds_dtheta[:, k] = (pw * (v - (p * v).sum(axis=0))).sum(axis=1)
        for k, (r, c) in enumerate(zip(pr, pc)):
            v = x2[:, r][:, None] * demo[arows, c][None, :]
            ds_dtheta[:, layout.n_sigma + k] = (pw * (v - (p * v).sum(axis=0))).sum(axis=1)
        out[rows] = -np.linalg.solve(ds_ddelta, ds_dtheta)
    return out
