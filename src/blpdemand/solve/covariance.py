"""The moment covariance S, the weighting matrix W = S^{-1} and the sandwich covariance of
(theta, beta): one home for every estimator (BLP GMM, linear IV/GMM for the logit, the
Salanie-Wolak approximation).

Per-observation moments g_i (one row per product, M columns: g_i = z_i xi_i for demand alone,
[z_bi r_bi]_b over a stack of moment blocks), S scaled so that Var(g_bar) ~= S / N:

    robust      S = (1/N) sum_i g_i g_i'                        (White 1980; Hansen 1982)
    clustered   S = (1/N) sum_c (sum_{i in c} g_i)(sum_{i in c} g_i)'     (Liang and Zeger 1986)
    two-way     S = S_a + S_b - S_{a and b}             (Cameron, Gelbach and Miller 2011)
    unadjusted  S = sigma^2 Z'Z / N, sigma^2 = xi'xi / N (or var(xi), centered); over a stack
                S_bc = cov(r_b, r_c) Z_b' Z_c / N

with g centered first where asked (``center``; BLP centers, as PyBLP). No finite-sample
corrections here: callers scale S (e.g. N / (N - K) for HC1). W = S^{-1} after scaling S to a
unit diagonal (singular S is an error naming the moments). Parameter covariance with
G = d g_bar / d(theta, beta) (M, P + K1):
  V = (G'WG)^{-1} G'W S W G (G'WG)^{-1} / N   (reduces to (G' S^{-1} G)^{-1} / N when W = S^{-1}).
Cluster ids are resolved from the user's column names or arrays once, by ``cluster_ids``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from blpdemand._types import COVARIANCE_KINDS, AnyArray, CovarianceKind, FloatArray
from blpdemand.data.validation import check_id_values, require_columns
from blpdemand.errors import DataError, IdentificationWarning, SpecificationError
from blpdemand.model.parameters import ParameterLayout
from blpdemand.model.problem import Problem
from blpdemand.solve.bounds import utility_scales
from blpdemand.solve.concentrated_covariance import concentrated_covariance
from blpdemand.solve.gmm import ObjectiveEvaluation
from blpdemand.solve.moments import MomentStack


def check_kind(kind: str, clusters: object) -> None:
    """Validate a covariance kind and the presence of its clusters (SpecificationError)."""
    if kind not in COVARIANCE_KINDS:
        raise SpecificationError(
            f"covariance kind {kind!r} is unknown; use one of {COVARIANCE_KINDS}")
    if kind == "clustered" and clusters is None:
        raise SpecificationError("covariance kind 'clustered' needs clusters= (one id per "
                                 "product, or (N, 2) ids for two-way clustering)")


def cluster_ids(problem: Problem, clusters: Any) -> AnyArray | None:
    """Cluster ids in sorted row order, (N,) or (N, 2), from one or two column names of the
    product data or from ids in the user's row order (array, Series, DataFrame); None for
    None. MissingColumnError names a column that is not in the data; DataError ids of mixed
    type, a wrong length or missing ids."""
    if clusters is None:
        return None
    frame = problem.products.frame
    if isinstance(clusters, str):
        clusters = [clusters]
    if isinstance(clusters, (list, tuple)) and all(isinstance(c, str) for c in clusters):
        if not 1 <= len(clusters) <= 2:
            raise SpecificationError(f"clusters={clusters!r}: give one or two column names")
        require_columns(frame, clusters, what="product data (clusters)")
        for c in clusters:
            check_id_values(frame[c].to_numpy(), what=f"clusters column '{c}'")
        values = np.column_stack([frame[c].to_numpy() for c in clusters])
    else:
        array = np.asarray(clusters.to_numpy() if isinstance(clusters, (pd.Series, pd.DataFrame))
                           else clusters)
        if array.ndim == 0 or array.shape[0] != problem.N:
            raise DataError(f"clusters have {array.shape[0] if array.ndim else 0} rows, "
                            f"product data {problem.N}")
        check_id_values(array, what="clusters= ids")
        values = problem.products.sort(array)
        values = values[:, None] if values.ndim == 1 else values
    if pd.isna(pd.DataFrame(values)).to_numpy().any():
        raise DataError("cluster ids have missing values; fill or drop those rows")
    return values[:, 0] if values.shape[1] == 1 else values


def cluster_codes(clusters: object, N: int) -> np.ndarray:
    """Integer codes (N, L) for L = 1 or 2 clustering dimensions (any hashable ids in).

    Two-way clustering takes an (N, 2) array or a DataFrame with two columns.
    """
    if isinstance(clusters, pd.DataFrame):
        columns = [clusters.iloc[:, k].to_numpy() for k in range(clusters.shape[1])]
    elif isinstance(clusters, pd.Series):
        columns = [clusters.to_numpy()]
    else:
        array = np.asarray(clusters)
        if array.ndim == 1:
            columns = [array]
        elif array.ndim == 2:
            columns = [array[:, k] for k in range(array.shape[1])]
        else:
            raise DataError(f"clusters must be (N,) or (N, 2), got shape {array.shape}")
    if not 1 <= len(columns) <= 2:
        raise SpecificationError(f"clusters have {len(columns)} dimensions; one- or two-way only")
    codes = []
    for k, column in enumerate(columns):
        if len(column) != N:
            raise DataError(f"clusters (dimension {k}) have {len(column)} rows, moments have {N}")
        if pd.isna(column).any():
            raise DataError(f"clusters (dimension {k}) have missing ids; fill or drop those rows")
        check_id_values(column, what=f"clusters (dimension {k})")
        codes.append(pd.factorize(column, sort=True)[0])
    return np.column_stack(codes).astype(np.int64)


def _cluster_sum_outer(moments: FloatArray, codes: np.ndarray) -> FloatArray:
    """sum_c G_c G_c' with G_c the within-cluster column sums, (M, M)."""
    G = int(codes.max()) + 1
    sums = np.zeros((G, moments.shape[1]))
    np.add.at(sums, codes, moments)
    return sums.T @ sums


def moment_covariance(moments: FloatArray, *, kind: CovarianceKind = "robust",
                      clusters: object = None, residuals: FloatArray | None = None,
                      instruments: FloatArray | None = None, center: bool = False) -> FloatArray:
    """Covariance S of the sample moments, (M, M), scaled so that Var(g_bar) ~= S / N.

    Parameters
    ----------
    moments : (N, M) per-observation moments g_i (for IV, g_i = Z_i * xi_i).
    kind : "unadjusted", "robust" (heteroskedasticity-robust) or "clustered".
    clusters : (N,) ids for one-way or (N, 2) / two-column DataFrame for two-way clustering;
        required when kind="clustered".
    residuals, instruments : (N,) xi and (N, M) Z; required when kind="unadjusted"
        (S = sigma^2 Z'Z / N with sigma^2 = xi'xi / N, or var(xi) with ``center``).
    center : subtract the sample mean of g (of xi when unadjusted) before forming S.

    Returns
    -------
    S : (M, M) symmetric positive semi-definite.

    References
    ----------
    Hansen (1982); Cameron, Gelbach and Miller (2011), "Robust inference with multiway
    clustering", JBES 29(2), eq. (2.11).

    Examples
    --------
    >>> g = np.array([[1.0], [-1.0], [2.0], [-2.0]])
    >>> float(moment_covariance(g, kind="robust")[0, 0])
    2.5
    """
    check_kind(kind, clusters)
    g = np.asarray(moments, dtype=np.float64)
    if g.ndim == 1:
        g = g[:, None]
    N = g.shape[0]
    if N == 0:
        raise DataError("no observations to compute the moment covariance")
    if kind == "unadjusted":
        if residuals is None or instruments is None:
            raise SpecificationError(
                "kind='unadjusted' needs residuals= (N,) and instruments= (N, M)")
        xi = np.asarray(residuals, dtype=np.float64).reshape(-1)
        Z = np.asarray(instruments, dtype=np.float64)
        Z = Z[:, None] if Z.ndim == 1 else Z
        sigma2 = float(np.var(xi)) if center else float(xi @ xi) / N
        S = sigma2 * (Z.T @ Z) / N
        out: FloatArray = (S + S.T) / 2
        return out
    if center:
        g = g - g.mean(axis=0)
    if kind == "robust":
        S = g.T @ g / N
    else:
        codes = cluster_codes(clusters, N)
        if codes.shape[1] == 1:
            S = _cluster_sum_outer(g, codes[:, 0]) / N
        else:
            both = pd.factorize(pd.MultiIndex.from_arrays([codes[:, 0], codes[:, 1]]))[0]
            S = (_cluster_sum_outer(g, codes[:, 0]) + _cluster_sum_outer(g, codes[:, 1])
                 - _cluster_sum_outer(g, np.asarray(both, dtype=np.int64))) / N
    symmetric: FloatArray = (S + S.T) / 2
    return symmetric


def number_of_clusters(clusters: object, N: int) -> int:
    """Number of clusters G (the smaller dimension for two-way clustering)."""
    codes = cluster_codes(clusters, N)
    return int(min(codes[:, k].max() + 1 for k in range(codes.shape[1])))


def weighting_matrix(S: FloatArray, *, names: tuple[str, ...] | None = None,
                     what: str = "moment covariance", rcond: float = 1e-12) -> FloatArray:
    """The efficient GMM weighting matrix W = S^-1, (M, M), symmetric.

    Raises SpecificationError when S is singular or numerically so (reciprocal condition number
    below ``rcond``): collinear instruments, more moments than clusters, or a moment that is
    identically zero. ``names`` label the moments and ``what`` names S in the message.
    """
    S = np.asarray(S, dtype=np.float64)
    if S.ndim != 2 or S.shape[0] != S.shape[1]:
        raise SpecificationError(f"moment covariance must be square, got shape {S.shape}")
    if not np.all(np.isfinite(S)):
        raise DataError(
            f"the {what} has NaN/inf entries; check the residuals and instruments")
    # scale to unit diagonal so that the condition number is about collinearity, not units
    d = np.sqrt(np.clip(np.diag(S), 0.0, None))
    zero = np.flatnonzero(d == 0)
    if zero.size:
        label = [names[k] for k in zero] if names else zero.tolist()
        raise SpecificationError(f"moment(s) {label} have zero variance; the {what} is "
                                 "singular (has no inverse); drop those instruments")
    C = S / np.outer(d, d)
    eigenvalues = np.linalg.eigvalsh(C)
    if eigenvalues[0] <= rcond * max(eigenvalues[-1], 1.0):
        raise SpecificationError(
            f"the {what} ({S.shape[0]} moments) is singular, it has no inverse (smallest scaled "
            f"eigenvalue "
            f"{eigenvalues[0]:.3g}): instruments are collinear or there are fewer clusters than "
            "moments; drop instruments or use fewer clustering dimensions")
    W = np.linalg.inv(C) / np.outer(d, d)
    result: FloatArray = (W + W.T) / 2
    return result


def stack_covariance(stack: MomentStack, residuals: tuple[FloatArray, ...], *,
                     kind: str = "robust", clusters: AnyArray | None = None,
                     center: bool = True) -> FloatArray:
    """Covariance S (M, M) of the stacked per-observation moments g_j = [z_bj r_bj]_b.

    Robust and clustered (one- or two-way): ``moment_covariance`` of the per-observation
    moments. Unadjusted: S_bc = cov(r_b, r_c) Z_b' Z_c / N, the
    centered (co)variances of the residuals times the instruments' cross-products (for demand
    alone var(xi) Z'Z / N, as PyBLP).
    """
    N = stack.N
    check_kind(kind, clusters)
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
    return moment_covariance(stack.observation_moments(residuals),
                             kind=kind, clusters=clusters, center=center)  # type: ignore[arg-type]


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
            S = moment_covariance(Z * residuals[0][:, None], kind=kind,  # type: ignore[arg-type]
                                  clusters=clusters, residuals=residuals[0], instruments=Z,
                                  center=center)
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
