"""The Salanie-Wolak (2019) small-sigma approximation of BLP: one (nearly) linear 2SLS.

Expanding the market shares to second order around Sigma = 0, Pi = 0 with random coefficients
v_it = Pi y_it + Sigma nu_it (mean Pi m_t, covariance Omega_t = Sigma Sigma' + Pi C_t Pi', where
m_t and C_t are the agent-weighted mean and covariance of the demographics in market t) gives

    log(s_jt / s_0t) = x1_jt' beta + sum_k sigma_k^2 d_jt^k + sum_{k,y} pi_ky m_ty x_jtk
                       + Q_jt(Pi) + xi_jt + O(|v|^3),
    d_jt^k = (x_jtk / 2 - e_tk) x_jtk,       e_tk = sum_l s_lt x_ltk (observed shares),
    Q_jt(Pi) = x_jt' Omega^Pi_t (x_jt / 2 - e_t),   Omega^Pi_t = Pi C_t Pi'.

With one demographic per characteristic and uncorrelated demographics Q_jt reduces to
sum_{k,y} pi_ky^2 v_ty d_jt^k. The sign convention of d (log-share ratio = ... + sigma^2 d) is the
one of Salanie and Wolak (2019) and the ``frac-blp`` package (its ``K`` regressors).
Without demographics the model is linear in (beta, sigma^2) and is estimated by 2SLS in one
step; with Pi the quadratic term Q makes it mildly nonlinear and it is estimated by nonlinear
2SLS (Gauss-Newton from the linear fit that ignores Q). sigma = sqrt(sigma^2) with
delta-method standard errors; a negative sigma^2 is flagged, never hidden.

Reference: Salanie, B. and F. Wolak (2019), "Fast, 'Robust', and Approximately Correct:
Estimating Mixed Demand Systems", NBER WP 25726.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from blpdemand._types import COVARIANCE_KINDS, AnyArray, CovarianceKind, FloatArray
from blpdemand.errors import SpecificationError
from blpdemand.model.parameters import ParameterLayout
from blpdemand.model.problem import Problem
from blpdemand.solve.covariance import cluster_ids


@dataclass(frozen=True, eq=False)
class ApproximationOutcome:
    """Salanie-Wolak estimates of (beta, sigma^2, Pi) with their covariance (the computed
    record; ``results.approximation.ApproximationResults`` adds tables and display).

    Attributes
    ----------
    problem : the Problem; layout : ParameterLayout of the free (diagonal) Sigma and Pi.
    names : (p,) parameter names: X1 names, then ``sigma2[k]`` (sigma^2), then ``pi[k, y]``.
    estimates : (p,) beta, sigma^2 and pi stacked in that order; covariance : (p, p).
    beta : (K1,); sigma_squared : (K2,) (NaN where sigma is fixed at zero).
    sigma : (K2, K2) diagonal, sqrt(sigma^2) and 0 where sigma^2 < 0 (see ``negative_variance``).
    sigma_se : (K2,) delta-method standard errors se(sigma^2) / (2 sigma) (NaN when flagged).
    pi : (K2, D); pi_se : (K2, D) (NaN where fixed).
    negative_variance : names of X2 columns whose sigma^2 estimate is negative.
    xi : (N,) residuals (fixed effects partialled out), user's row order; iterations :
        Gauss-Newton steps.
    """

    problem: Problem = field(repr=False)
    layout: ParameterLayout
    names: tuple[str, ...]
    estimates: FloatArray
    covariance: FloatArray = field(repr=False)
    covariance_kind: str
    xi: FloatArray = field(repr=False)
    iterations: int
    converged: bool

    @property
    def standard_errors(self) -> FloatArray:
        return np.sqrt(np.maximum(np.diag(self.covariance), 0.0))

    @property
    def beta(self) -> FloatArray:
        return self.estimates[: self.problem.K1].copy()

    @property
    def beta_se(self) -> FloatArray:
        return self.standard_errors[: self.problem.K1]

    def _sigma_positions(self) -> tuple[np.ndarray, slice]:
        k = np.flatnonzero(np.diag(self.layout.sigma_free))
        start = self.problem.K1
        return k, slice(start, start + k.size)

    @property
    def sigma_squared(self) -> FloatArray:
        out = np.full(self.layout.K2, np.nan)
        k, rows = self._sigma_positions()
        out[k] = self.estimates[rows]
        return out

    @property
    def sigma(self) -> FloatArray:
        s2 = np.nan_to_num(self.sigma_squared, nan=0.0)
        return np.diag(np.sqrt(np.maximum(s2, 0.0)))

    @property
    def sigma_se(self) -> FloatArray:
        out = np.full(self.layout.K2, np.nan)
        k, rows = self._sigma_positions()
        s2, se2 = self.estimates[rows], self.standard_errors[rows]
        positive = s2 > 0
        out[k[positive]] = se2[positive] / (2.0 * np.sqrt(s2[positive]))
        return out

    @property
    def negative_variance(self) -> tuple[str, ...]:
        s2 = self.sigma_squared
        return tuple(n for n, v in zip(self.layout.x2_names, s2) if np.isfinite(v) and v < 0)

    def _pi_values(self, values: FloatArray, fill: float) -> FloatArray:
        out = np.full((self.layout.K2, self.layout.D), fill)
        r, c = self.layout.pi_index
        start = self.problem.K1 + self.layout.n_sigma
        out[r, c] = values[start:]
        return out

    @property
    def pi(self) -> FloatArray:
        return self._pi_values(self.estimates, 0.0)

    @property
    def pi_se(self) -> FloatArray:
        return self._pi_values(self.standard_errors, np.nan)

    @property
    def theta(self) -> FloatArray:
        """(P,) nonlinear parameters packed by the layout (sigma >= 0, projected at zero)."""
        return self.layout.pack(self.sigma, self.pi)

    def start(self, sigma: Any = None, pi: Any = None) -> tuple[FloatArray, FloatArray]:
        """Starting (Sigma, Pi) for ``estimate`` with the user's pattern (nonzero = free).

        Free diagonal sigma take sqrt(sigma^2); free pi take the estimates. An element whose
        estimate is unusable as a start (sigma^2 <= 0, pi exactly 0) keeps the user's starting
        value, so that it stays free. Off-diagonal Sigma elements keep the user's values.
        """
        K2, D = self.layout.K2, self.layout.D
        s0 = np.diag(np.ones(K2)) if sigma is None else np.asarray(sigma, dtype=np.float64)
        s0 = np.diag(s0) if s0.ndim == 1 else s0.copy()
        p0 = (np.zeros((K2, D)) if pi is None
              else np.asarray(pi, dtype=np.float64).reshape(K2, D).copy())
        s2 = self.sigma_squared
        for k in range(K2):
            if s0[k, k] != 0 and np.isfinite(s2[k]) and s2[k] > 0:
                s0[k, k] = np.sqrt(s2[k])
        estimate = self.pi
        usable = (p0 != 0) & self.layout.pi_free & (estimate != 0)
        p0[usable] = estimate[usable]
        return s0, p0


def artificial_regressors(problem: Problem) -> FloatArray:
    """Salanie-Wolak regressors d_jt^k = (x_jtk / 2 - e_tk) x_jtk for every X2 column: (N, K2).

    e_tk = sum_l s_lt x_ltk uses the observed shares (the outside good has x = 0).
    """
    X2 = problem.X2.values
    markets = problem.products.markets
    e = markets.expand(markets.segment_sum(problem.products.shares[:, None] * X2))
    return (X2 / 2.0 - e) * X2


def demographic_moments(problem: Problem) -> tuple[FloatArray, FloatArray]:
    """Agent-weighted mean m_t (T, D) and covariance C_t (T, D, D) of the demographics."""
    agents = problem.agents
    T, D = problem.T, problem.D
    if agents is None or D == 0:
        return np.zeros((T, 0)), np.zeros((T, 0, 0))
    w = agents.weights
    y = agents.demographics
    total = agents.markets.segment_sum(w)
    m = agents.markets.segment_sum(w[:, None] * y) / total[:, None]
    c = y - agents.markets.expand(m)  # centred first: E[yy'] - mm' cancels when |m| >> sd
    outer = (w[:, None, None] * c[:, :, None] * c[:, None, :]).reshape(-1, D * D)
    return m, agents.markets.segment_sum(outer).reshape(T, D, D) / total[:, None, None]


def _pattern(problem: Problem, sigma: Any, pi: Any) -> ParameterLayout:
    """The layout of free diagonal sigma and free pi; sigma=None frees every X2 column."""
    K2 = problem.K2
    if K2 == 0:
        raise SpecificationError("the Salanie-Wolak approximation needs random coefficients; "
                                 "pass nonlinear='...' to Problem (or use the plain logit)")
    problem.refuse_nests("the Salanie-Wolak approximation")
    if problem.has_lognormal:
        raise SpecificationError(
            "the Salanie-Wolak approximation expands mu to second order in normal random "
            "coefficients; it does not cover lognormal ones: start from given sigma/pi")
    if sigma is None:
        sigma = np.ones(K2)
    layout, _ = problem.layout(sigma, pi)
    if not layout.diagonal:
        raise SpecificationError(
            "the Salanie-Wolak approximation estimates variances sigma_k^2 of independent random "
            "coefficients; give a diagonal sigma pattern (off-diagonal elements must be zero)")
    return layout


def run_approximation(problem: Problem, *, sigma: Any = None, pi: Any = None,
                      covariance: CovarianceKind = "robust", clusters: Any = None,
                      quadratic_pi: bool = True, max_iterations: int = 100,
                      tol: float = 1e-12) -> ApproximationOutcome:
    """Salanie-Wolak (2019) estimates of beta, sigma^2 and Pi by (nonlinear) 2SLS (the module
    docstring has the regression): the computation behind ``estimate_approximation``, whose
    docstring describes the arguments; Gauss-Newton with step halving when Q(Pi) is kept.
    """
    if covariance not in COVARIANCE_KINDS:
        raise SpecificationError(
            f"covariance={covariance!r} is unknown; use one of {COVARIANCE_KINDS}")
    layout = _pattern(problem, sigma, pi)
    groups = _clusters(problem, covariance, clusters)
    X2 = problem.X2.values
    d = artificial_regressors(problem)
    ks = np.flatnonzero(np.diag(layout.sigma_free))
    pr, pc = layout.pi_index
    m, C = demographic_moments(problem)
    markets = problem.products.markets
    M = X2[:, pr] * markets.expand(m)[:, pc] if pr.size else np.zeros((problem.N, 0))
    names = (problem.X1.names + tuple(f"sigma2[{problem.X2.names[k]}]" for k in ks)
             + tuple(f"pi[{problem.X2.names[i]}, {problem.demographic_names[j]}]"
                     for i, j in zip(pr, pc)))
    p = len(names)
    Z = problem.ZD_tilde
    if Z.shape[1] < p:
        raise SpecificationError(
            f"the approximation has {p} parameters {list(names)} but only {Z.shape[1]} demand "
            f"instruments {list(problem.ZD.names)}; add excluded instruments that move the "
            "artificial regressors (e.g. differentiation and demographic-interaction instruments)")
    y = problem.residualize(problem.products.logit_delta)
    linear = problem.residualize(np.column_stack([d[:, ks], M])) if ks.size + pr.size else \
        np.zeros((problem.N, 0))
    X = np.column_stack([problem.X1_tilde, linear])
    iv = _IV(Z, names)
    b = iv.fit(X, y)
    iterations, converged = 1, True
    use_q = quadratic_pi and pr.size > 0
    G = X
    if use_q:
        e = markets.expand(markets.segment_sum(problem.products.shares[:, None] * X2))
        first = problem.K1 + ks.size
        converged = False

        def residual(b: FloatArray) -> tuple[FloatArray, FloatArray]:
            Pi = np.zeros((layout.K2, layout.D))
            Pi[pr, pc] = b[first:]
            q, dq = _quadratic(Pi, C, X2, e, markets.codes, pr, pc)
            G = X.copy()
            G[:, first:] += problem.residualize(dq)
            return y - X @ b - problem.residualize(q), G

        r, G = residual(b)
        objective = iv.objective(r)
        for iterations in range(2, max_iterations + 2):
            step = iv.fit(G, r)
            length = 1.0
            while True:  # Gauss-Newton with step halving on the 2SLS objective r'P r
                trial = b + length * step
                r_trial, G_trial = residual(trial)
                value = iv.objective(r_trial)
                if value <= objective or length < 1e-6:
                    break
                length /= 2
            small = np.max(np.abs(trial - b)) <= tol * max(1.0, float(np.max(np.abs(trial))))
            b, r, G = trial, r_trial, G_trial
            flat = objective - value <= tol * max(objective, 1e-300)
            objective = value
            if small or (flat and length == 1.0):
                converged = True
                break
        xi = r
    else:
        xi = y - X @ b
    V = iv.covariance(G, xi, covariance, groups)
    return ApproximationOutcome(problem=problem, layout=layout, names=names, estimates=b,
                                covariance=V, covariance_kind=covariance,
                                xi=problem.products.unsort(xi),
                                iterations=iterations, converged=converged)


def approximation_start(problem: Problem, *, sigma: Any = None, pi: Any = None
                        ) -> tuple[FloatArray, FloatArray]:
    """Starting (Sigma, Pi) for ``estimate(problem, sigma=..., pi=...)`` from the approximation.

    The hook for ``start="approximation"``: same patterns as ``estimate`` (nonzero = free),
    same shapes back. Diagonal elements come from the approximation (the user's value is kept
    where sigma^2 <= 0), off-diagonal Sigma elements keep the user's values.
    """
    s = np.ones(problem.K2) if sigma is None else np.asarray(sigma, dtype=np.float64)
    s = np.diag(s) if s.ndim == 1 else s
    diagonal = np.diag(np.diag(s))
    approx = run_approximation(problem, sigma=diagonal, pi=pi, covariance="unadjusted")
    return approx.start(s, pi)


def _quadratic(Pi: FloatArray, C: FloatArray, X2: FloatArray, e: FloatArray, codes: AnyArray,
               pr: AnyArray, pc: AnyArray) -> tuple[FloatArray, FloatArray]:
    """Q_j = x_j' Pi C_t Pi' (x_j / 2 - e_t) (N,) and dQ / d pi_ky for the free (k, y): (N, n_pi).

    dQ / d pi_ky = x_k (a_y - b_y) - e_k a_y, with a = x' Pi C_t and b = e' Pi C_t.
    """
    PC = np.einsum("kd,tde->tke", Pi, C)  # (T, K2, D) per market, expanded one y at a time
    a = np.empty((X2.shape[0], Pi.shape[1]))
    b = np.empty_like(a)
    for y in range(Pi.shape[1]):
        rows = PC[:, :, y][codes]
        a[:, y] = np.einsum("nk,nk->n", X2, rows)
        b[:, y] = np.einsum("nk,nk->n", e, rows)
    q = np.einsum("nd,kd,nk->n", a, Pi, X2 / 2.0 - e)
    dq = X2[:, pr] * (a - b)[:, pc] - e[:, pr] * a[:, pc]
    return q, dq


def _clusters(problem: Problem, kind: str, clusters: Any) -> AnyArray | None:
    """``cluster_ids`` of ``clusters``, default the 'clustering_ids' column (clustered only)."""
    if kind != "clustered":
        return None
    if clusters is None:
        if not problem.products.has("clustering_ids"):
            raise SpecificationError("covariance='clustered' needs clusters= (a column name or one "
                                     "id per product) or a 'clustering_ids' column")
        clusters = "clustering_ids"
    return cluster_ids(problem, clusters)


class _IV:
    """2SLS pieces that need Z only once: whitened Z'Z, fits and the sandwich covariance."""

    def __init__(self, Z: FloatArray, names: tuple[str, ...]) -> None:
        self.Z = Z
        self.names = names
        scale = np.sqrt(np.einsum("nm,nm->m", Z, Z))
        scale[scale == 0] = 1.0
        self.scale = scale
        ZZ = (Z.T @ Z) / np.outer(scale, scale)
        self.L = np.linalg.cholesky(ZZ)

    def _whiten(self, A: FloatArray) -> FloatArray:
        """L^{-1} D^{-1} Z'A: then A'P A = W'W with W the whitened cross-product."""
        return np.linalg.solve(self.L, (self.Z.T @ A) / self.scale[:, None])

    def fit(self, X: FloatArray, y: FloatArray) -> FloatArray:
        """b = (X'PX)^{-1} X'P y."""
        WX = self._whiten(X)
        Wy = self._whiten(y[:, None])[:, 0]
        rank = np.linalg.matrix_rank(WX)
        if rank < X.shape[1]:
            raise SpecificationError(
                f"the instruments do not identify the approximation's {X.shape[1]} parameters "
                f"{list(self.names)} (rank {rank}); add instruments that move the artificial "
                "regressors, or drop random coefficients")
        return np.asarray(np.linalg.lstsq(WX, Wy, rcond=None)[0])

    def objective(self, r: FloatArray) -> float:
        """The 2SLS objective r'P r."""
        w = self._whiten(r[:, None])[:, 0]
        return float(w @ w)

    def covariance(self, G: FloatArray, xi: FloatArray, kind: str, groups: AnyArray | None
                   ) -> FloatArray:
        """(G'PG)^{-1} (Xhat' Omega Xhat) (G'PG)^{-1} with Xhat = P G (HC0 / clusters / iid)."""
        WG = self._whiten(G)
        bread = np.linalg.inv(WG.T @ WG)
        coef = np.linalg.solve(self.L.T, WG) / self.scale[:, None]  # (Z'Z)^{-1} Z'G
        Xhat = self.Z @ coef
        if kind == "unadjusted":
            meat = float(xi @ xi / xi.size) * (Xhat.T @ Xhat)
        elif kind == "robust":
            g = Xhat * xi[:, None]
            meat = g.T @ g
        else:
            codes = pd.factorize(pd.Series(np.asarray(groups)), sort=True)[0]
            g = np.zeros((int(codes.max()) + 1, G.shape[1]))
            np.add.at(g, codes, Xhat * xi[:, None])
            meat = g.T @ g
        V = bread @ meat @ bread
        return np.asarray((V + V.T) / 2)
