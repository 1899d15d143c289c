"""GMM weighting matrices and the sandwich covariance of (theta, beta).

Moment covariance S (Hansen 1982), from per-observation moments g_j = z_j xi_j, centered:
  unadjusted  S = var(xi) Z'Z / N
  robust      S = (1/N) sum_j (g_j - gbar)(g_j - gbar)'
  clustered   S = (1/N) sum_c (sum_{j in c} (g_j - gbar))(...)'   (two-way: CGM 2011)
Parameter covariance with G = d gbar / d(theta, beta) (M, P + K1):
  V = (G'WG)^{-1} G'W S W G (G'WG)^{-1} / N   (reduces to (G' S^{-1} G)^{-1} / N when W = S^{-1}).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from blpdemand._types import COVARIANCE_KINDS, AnyArray, FloatArray
from blpdemand.errors import IdentificationWarning, SpecificationError
from blpdemand.model.parameters import ParameterLayout
from blpdemand.model.problem import Problem
from blpdemand.solve import weighting
from blpdemand.solve.bounds import utility_scales
from blpdemand.solve.concentrated_covariance import concentrated_covariance
from blpdemand.solve.gmm import ObjectiveEvaluation
from blpdemand.solve.moments import MomentBlock, MomentStack


def check_kind(kind: str, clusters: AnyArray | None, N: int) -> None:
    """Validate a covariance kind and its clusters (SpecificationError naming the fix)."""
    if kind not in COVARIANCE_KINDS:
        raise SpecificationError(
            f"covariance kind {kind!r} is unknown; use one of {COVARIANCE_KINDS}")
    if kind == "clustered":
        if clusters is None:
            raise SpecificationError(
                "covariance kind 'clustered' needs clusters= (one id per product)")
        if len(clusters) != N:
            raise SpecificationError(f"clusters has {len(clusters)} ids but there are {N} products")


def moment_covariance(xi: FloatArray, Z: FloatArray, *, kind: str = "robust",
                      clusters: AnyArray | None = None, center: bool = True) -> FloatArray:
    """Covariance S (M, M) of the demand moments z_j xi_j: ``stack_covariance`` of the demand
    block alone. ``clusters`` are (N,) or (N, 2) ids in the problem's sorted row order."""
    block = MomentBlock(name="demand", Z=Z, X=np.zeros((Z.shape[0], 0)))
    return stack_covariance(MomentStack((block,)), (xi,), kind=kind, clusters=clusters,
                            center=center)


def stack_covariance(stack: MomentStack, residuals: tuple[FloatArray, ...], *,
                     kind: str = "robust", clusters: AnyArray | None = None,
                     center: bool = True) -> FloatArray:
    """Covariance S (M, M) of the stacked per-observation moments g_j = [z_bj r_bj]_b.

    Robust and clustered (one- or two-way): from the per-observation moments
    (:mod:`blpdemand.solve.weighting`). Unadjusted: S_bc = cov(r_b, r_c) Z_b' Z_c / N, the
    centered (co)variances of the residuals times the instruments' cross-products (for demand
    alone var(xi) Z'Z / N, as PyBLP).
    """
    N = stack.N
    check_kind(kind, clusters, N)
    if kind == "unadjusted":
        rows = []
        for b, r_b in zip(stack.blocks, residuals):
            row = []
            for c, r_c in zip(stack.blocks, residuals):
                covariance = (float(np.var(r_b)) if r_b is r_c
                              else float(np.mean((r_b - r_b.mean()) * (r_c - r_c.mean()))))
                row.append(covariance * (b.Z.T @ c.Z) / N)
            rows.append(row)
        S: FloatArray = rows[0][0] if len(rows) == 1 else np.block(rows)
        return (S + S.T) / 2
    out: FloatArray = weighting.moment_covariance(
        stack.observation_moments(residuals), kind=kind,  # type: ignore[arg-type]
        clusters=clusters, center=center)
    return out


def weighting_matrix(S: FloatArray, *, what: str = "moment covariance") -> FloatArray:
    """W = S^{-1}, symmetrized; SpecificationError when S is (numerically) singular."""
    try:
        return weighting.weighting_matrix(S)
    except SpecificationError as error:
        raise SpecificationError(f"the {what} has no inverse: {error}") from error


#: a direction of (theta, beta) is unidentified when the scaled G'WG loses half the digits
IDENTIFICATION_TOLERANCE = float(np.sqrt(np.finfo(np.float64).eps))


def unidentified(G: FloatArray, W: FloatArray, flat: np.ndarray | None = None) -> np.ndarray:
    """(P + K1,) bool: parameters the moments do not identify at the estimate.

    ``flat`` marks parameters whose d xi / d theta column is numerical noise (the caller knows
    their scale). The others are judged on C = D^{-1/2} A D^{-1/2}, A = G'WG, D = diag(A): a
    unit-free matrix with unit diagonal whose eigenvalues below ``IDENTIFICATION_TOLERANCE``
    are directions the data do not pin down (a constant demographic, one node, collinear X2
    columns); the parameters with weight > 0.1 in those eigenvectors are unidentified.
    ``np.linalg.pinv`` would silently drop those directions and report tiny standard errors.
    """
    A = G.T @ W @ G
    out = np.zeros(A.shape[0], dtype=bool) if flat is None else np.array(flat, dtype=bool)
    d = np.diag(A).copy()
    out |= ~(d > IDENTIFICATION_TOLERANCE ** 2 * max(float(d.max(initial=0.0)),
                                                     np.finfo(float).tiny))
    keep = np.flatnonzero(~out)
    if keep.size:
        sub = A[np.ix_(keep, keep)] / np.sqrt(np.outer(d[keep], d[keep]))
        values, vectors = np.linalg.eigh((sub + sub.T) / 2)
        for value, vector in zip(values, vectors.T):
            if value < IDENTIFICATION_TOLERANCE:
                out[keep[np.abs(vector) > 0.1]] = True
    return out


def parameter_covariance(G: FloatArray, W: FloatArray, S: FloatArray, N: int,
                         identified: np.ndarray | None = None) -> FloatArray:
    """Sandwich V = (G'WG)^{-1} G'WSWG (G'WG)^{-1} / N: (P + K1, P + K1).

    Over the ``identified`` parameters only (the others held at their estimates): rows and
    columns of unidentified parameters are NaN, never a small number from a pseudo-inverse.
    """
    K = G.shape[1]
    keep = np.arange(K) if identified is None else np.flatnonzero(identified)
    V = np.full((K, K), np.nan)
    if keep.size == 0:
        return V
    Gk = G[:, keep]
    bread = np.linalg.inv(Gk.T @ W @ Gk)
    meat = Gk.T @ W @ S @ W @ Gk
    sub = bread @ meat @ bread / N
    V[np.ix_(keep, keep)] = (sub + sub.T) / 2
    return V


def gmm_covariance(G: FloatArray, W: FloatArray, xi: FloatArray | tuple[FloatArray, ...],
                   Z: FloatArray | MomentStack, *, kind: str,
                   clusters: AnyArray | None = None, center: bool = True,
                   identified: np.ndarray | None = None) -> FloatArray:
    """Covariance of (theta, linear parameters): sandwich for robust/clustered,
    (G'S^{-1}G)^{-1}/N unadjusted; NaN rows and columns for parameters not ``identified`` (see
    ``covariance.unidentified``). ``xi`` and ``Z`` are the demand residuals and instruments, or
    the residuals of every block (a tuple) and the MomentStack (demand and supply)."""
    residuals = xi if isinstance(xi, tuple) else (xi,)
    if not (np.all(np.isfinite(G)) and all(np.all(np.isfinite(r)) for r in residuals)):
        return np.full((G.shape[1], G.shape[1]), np.nan)  # the inner loop failed at theta
    nan = np.full((G.shape[1], G.shape[1]), np.nan)
    # an absurd theta (a failed inner loop) can give finite but huge d xi / d theta whose
    # products overflow: NaN standard errors there (the failure itself is warned about)
    with np.errstate(over="ignore", invalid="ignore"):
        if isinstance(Z, MomentStack):
            S = stack_covariance(Z, residuals, kind=kind, clusters=clusters, center=center)
        else:
            S = moment_covariance(residuals[0], Z, kind=kind, clusters=clusters, center=center)
        if not (np.all(np.isfinite(S)) and np.all(np.isfinite(G.T @ G))):
            return nan
        if kind == "unadjusted":
            W = weighting_matrix(S, what="unadjusted moment covariance")
        try:
            if isinstance(Z, MomentStack) and Z.covariance is not None:
                # beta, gamma concentrated out by the linear blocks alone (solve.moments)
                MU = Z.M - int(Z.covariance.Z.shape[1])
                P = G.shape[1] - sum(int(b.X.shape[1]) for b in Z.linear)
                covariance = concentrated_covariance(G, W, S, residuals[0].shape[0], P=P,
                                                     MU=MU, identified=identified)
            else:
                covariance = parameter_covariance(G, W, S, residuals[0].shape[0], identified)
        except np.linalg.LinAlgError:
            return nan
    keep = np.ones(G.shape[1], dtype=bool) if identified is None else identified
    return covariance if np.all(np.isfinite(covariance[np.ix_(keep, keep)])) else nan


def identified_parameters(problem: Problem, layout: ParameterLayout,
                          evaluation: ObjectiveEvaluation, W: FloatArray, G: FloatArray
                          ) -> np.ndarray:
    """(P + K1,) bool: parameters the moments identify at the estimate; warns naming the
    others. A d xi / d theta column below IDENTIFICATION_TOLERANCE of its parameter's utility
    scale (times sqrt(N)) is noise: the parameter moves no residual at all."""
    e = evaluation
    K = G.shape[1]
    if e.failed or not np.all(np.isfinite(G)):
        return np.ones(K, dtype=bool)  # no standard errors at all there (failed inner loop)
    flat = np.zeros(K, dtype=bool)
    P = layout.P
    if P and e.xi_jacobian.shape[1] == P:
        scale = utility_scales(problem, layout) * np.sqrt(problem.N)
        norms = np.linalg.norm(e.xi_jacobian, axis=0)
        flat[:P] = norms <= IDENTIFICATION_TOLERANCE * np.where(scale > 0, scale, 1.0)
        if e.omega_jacobian is not None and e.omega_jacobian.shape[1] == P:
            # a parameter that moves the supply residuals is not flat (f(c) has its own units:
            # judged against the largest column of d omega / d theta)
            supply = np.linalg.norm(e.omega_jacobian, axis=0)
            flat[:P] &= supply <= IDENTIFICATION_TOLERANCE * max(float(supply.max()),
                                                                 np.finfo(float).tiny)
    bad = unidentified(G, W, flat)
    if bad.any():
        names = [n for n, b in zip(layout.names + linear_names(problem), bad) if b]
        warnings.warn(
            f"not identified at the estimate: {', '.join(names)}; their standard errors are NaN "
            "(the moments do not move with them: a constant demographic, a characteristic "
            "absorbed by the fixed effects, a single integration node, collinear X2 columns, "
            "or a standard deviation at 0 with symmetric nodes)", IdentificationWarning,
            stacklevel=3)
    return np.asarray(~bad)


def linear_names(problem: Problem) -> tuple[str, ...]:
    """Names of the linear parameters over the stack: the X1 columns (beta), then
    ``gamma[...]`` for the X3 columns of a supply side."""
    supply = problem.supply
    gamma = () if supply is None else tuple(f"gamma[{n}]" for n in supply.X3.names)
    return tuple(problem.X1.names) + gamma


@dataclass(frozen=True, slots=True, kw_only=True)
class HansenJ:
    """Hansen's J: statistic, degrees of freedom M - (K1 + P), chi-squared p-value, and whether
    W was the efficient (step-2) weighting matrix, without which J is no test."""

    statistic: float
    df: int
    p_value: float
    efficient: bool

    def __str__(self) -> str:
        if self.df <= 0:
            return (f"Hansen's J = {self.statistic:.6g}: exactly identified (df = {self.df}), "
                    "no test")
        text = f"Hansen's J = {self.statistic:.6g} (df = {self.df}, p = {self.p_value:.4g})"
        return text if self.efficient else (text + "; not a test with the step-1 W (use "
                                            "method='2s' for the efficient W)")
