"""Linear IV estimators on arrays: OLS, 2SLS and linear GMM (one and two step).

y = X b + xi, E[Z_i xi_i] = 0 with Z (N, M), X (N, K), M >= K. With G = Z'X / N and a weighting
matrix W (M, M), the GMM estimator and its sandwich covariance are

    b = (X'Z W Z'X)^-1 X'Z W Z'y,
    V = (G'WG)^-1 G'W S W G (G'WG)^-1 / N,          S = Var(g_i), g_i = Z_i xi_i,

OLS is Z = X; 2SLS and one-step GMM use W = (Z'Z / N)^-1; two-step GMM uses W = S(b_1)^-1
(Hansen 1982). Absorbed fixed effects are partialled out of y, X and Z beforehand (Frisch-Waugh-
Lovell); ``absorbed_degrees`` then enters the residual degrees of freedom N - K - D_FE, which
the unadjusted and HC1 covariances use, so they equal those of the dummy-variable regression.
Clustered covariances carry no finite-sample factor (as PyBLP), so absorbed and dummy versions
agree exactly. Reference: Hayashi (2000), Econometrics, ch. 3; Cameron and Miller (2015).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from blpdemand._types import (
    LINEAR_COVARIANCE_KINDS,
    CovarianceKind,
    FloatArray,
    LinearCovarianceKind,
)
from blpdemand.data.formulation import check_rank
from blpdemand.errors import DataError, SpecificationError
from blpdemand.solve.covariance import (
    moment_covariance,
    number_of_clusters,
    weighting_matrix,
)

Method = Literal["ols", "2sls", "gmm", "2s-gmm"]
METHODS: tuple[str, ...] = ("ols", "2sls", "gmm", "2s-gmm")
COVARIANCES = LINEAR_COVARIANCE_KINDS


@dataclass(frozen=True, slots=True, kw_only=True)
class LinearIVResult:
    """Estimates of a linear IV/GMM regression.

    Attributes
    ----------
    params : (K,) coefficients b; covariance : (K, K) V; residuals : (N,) xi = y - X b.
    weighting : (M, M) weighting matrix W used for ``params``.
    method, covariance_type : the options used; nobs : N; df_resid : N - K - D_FE.
    clusters : number of clusters G (smallest dimension) or None.
    j_statistic : Hansen's J = N g_bar' W g_bar for two-step GMM (None otherwise).
    """

    params: FloatArray
    covariance: FloatArray = field(repr=False)
    residuals: FloatArray = field(repr=False)
    weighting: FloatArray = field(repr=False)
    method: str
    covariance_type: str
    nobs: int
    df_resid: int
    clusters: int | None = None
    j_statistic: float | None = None

    @property
    def bse(self) -> FloatArray:
        """(K,) standard errors sqrt(diag V)."""
        out: FloatArray = np.sqrt(np.clip(np.diag(self.covariance), 0.0, None)).astype(np.float64)
        return out


def check_options(method: str, covariance: str) -> None:
    """Unknown method or covariance names raise SpecificationError listing the valid ones."""
    if method not in METHODS:
        raise SpecificationError(f"method={method!r} is not valid; choose one of {list(METHODS)}")
    if covariance not in COVARIANCES:
        raise SpecificationError(
            f"covariance={covariance!r} is not valid; choose one of {list(COVARIANCES)}")


def gmm_step(y: FloatArray, X: FloatArray, Z: FloatArray, W: FloatArray) -> FloatArray:
    """b = (X'Z W Z'X)^-1 X'Z W Z'y, solved without forming an explicit inverse."""
    ZX, Zy = Z.T @ X, Z.T @ y
    A = ZX.T @ W @ ZX
    out: FloatArray = np.asarray(np.linalg.solve(A, ZX.T @ W @ Zy), dtype=np.float64)
    return out


def estimate_covariance(X: FloatArray, Z: FloatArray, residuals: FloatArray, W: FloatArray, *,
                        covariance: LinearCovarianceKind, clusters: object = None,
                        absorbed_degrees: int = 0, center: bool = False) -> FloatArray:
    """Sandwich covariance V (K, K) of a linear GMM estimator at weighting matrix W.

    unadjusted: S = s^2 Z'Z/N with s^2 = xi'xi / (N - K - D_FE); robust/hc0: S = g'g/N;
    hc1: hc0 times N / (N - K - D_FE); clustered: one- or two-way cluster sums (no factor).
    """
    N, K = X.shape
    G = Z.T @ X / N
    df = N - K - absorbed_degrees
    if df <= 0:
        raise DataError(
            f"no residual degrees of freedom: N={N}, K={K}, absorbed={absorbed_degrees}")
    g = Z * residuals[:, None]
    if covariance == "unadjusted":
        S = (residuals @ residuals / df) * (Z.T @ Z) / N
    elif covariance == "clustered":
        S = moment_covariance(g, kind="clustered", clusters=clusters, center=center)
    else:
        S = moment_covariance(g, kind="robust", center=center)
        if covariance == "hc1":
            S = S * N / df
    bread = np.linalg.inv(G.T @ W @ G)
    V = bread @ G.T @ W @ S @ W @ G @ bread / N
    out: FloatArray = (V + V.T) / 2
    return out


def fit_linear_iv(y: FloatArray, X: FloatArray, Z: FloatArray | None = None, *,
                  method: Method = "2sls", covariance: LinearCovarianceKind = "robust",
                  clusters: object = None, absorbed_degrees: int = 0,
                  x_names: Sequence[str] | None = None, z_names: Sequence[str] | None = None,
                  center_moments: bool = False, check: bool = True) -> LinearIVResult:
    """Estimate y = X b + xi by OLS, 2SLS or linear GMM.

    Parameters
    ----------
    y : (N,) outcome; X : (N, K) regressors; Z : (N, M) all instruments (the exogenous columns
        of X and the excluded instruments), ignored by OLS.
    method : "ols", "2sls", "gmm" (one step, W = (Z'Z/N)^-1, same b as 2SLS) or "2s-gmm"
        (W = S(b_2sls)^-1 with S of kind ``covariance``).
    covariance : "unadjusted", "robust" (= "hc0"), "hc1" or "clustered" (needs clusters).
    clusters : (N,) or (N, 2) cluster ids for one- or two-way clustering.
    absorbed_degrees : degrees of freedom used by absorbed fixed effects.
    x_names, z_names : labels used in error messages.
    center_moments : center g before forming S (for the robust and clustered kinds).
    check : check X and Z for collinear columns (skip when the caller already did).

    Returns
    -------
    LinearIVResult.

    Examples
    --------
    >>> X = np.column_stack([np.ones(4), [0.0, 1.0, 2.0, 3.0]])
    >>> fit = fit_linear_iv(np.array([1.0, 3.0, 5.0, 7.0]), X, method="ols")
    >>> np.round(fit.params, 6).tolist()
    [1.0, 2.0]
    """
    check_options(method, covariance)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    X = np.asarray(X, dtype=np.float64)
    X = X[:, None] if X.ndim == 1 else X
    N, K = X.shape
    x_names = tuple(x_names) if x_names is not None else tuple(f"x{k}" for k in range(K))
    if y.shape[0] != N:
        raise DataError(f"y has {y.shape[0]} rows, X has {N}")
    if method == "ols":
        Z = X
        z_names = x_names
    elif Z is None:
        raise SpecificationError(f"method={method!r} needs instruments Z; use method='ols' without")
    Z = np.asarray(Z, dtype=np.float64)
    Z = Z[:, None] if Z.ndim == 1 else Z
    z_names = tuple(z_names) if z_names is not None else tuple(f"z{k}" for k in range(Z.shape[1]))
    M = Z.shape[1]
    if Z.shape[0] != N:
        raise DataError(f"Z has {Z.shape[0]} rows, X has {N}")
    for name, a in (("y", y[:, None]), ("X", X), ("Z", Z)):
        if not np.all(np.isfinite(a)):
            raise DataError(f"{name} has NaN/inf values")
    if covariance == "clustered" and clusters is None:
        raise SpecificationError("covariance='clustered' needs clusters=")
    if check:
        check_rank(X, x_names, what="X (regressors)")
        check_rank(Z, z_names, what="Z (instruments)")
    if M < K:
        raise SpecificationError(
            f"under-identified: {M} instruments {list(z_names)} for {K} regressors "
            f"{list(x_names)}; add at least {K - M} excluded instrument(s)")
    ZX = Z.T @ X / N
    if np.linalg.matrix_rank(ZX) < K:
        raise SpecificationError(
            "under-identified: Z'X is rank deficient, the excluded instruments do not move "
            f"the endogenous regressors among {list(x_names)}")
    W = weighting_matrix(Z.T @ Z / N, names=z_names)
    b = gmm_step(y, X, Z, W)
    j_statistic = None
    if method == "2s-gmm":
        xi1 = y - X @ b
        g1 = Z * xi1[:, None]
        if covariance == "unadjusted":
            S1 = moment_covariance(g1, kind="unadjusted", residuals=xi1, instruments=Z)
        else:
            kind: CovarianceKind = "clustered" if covariance == "clustered" else "robust"
            S1 = moment_covariance(g1, kind=kind, clusters=clusters, center=center_moments)
        W = weighting_matrix(S1, names=z_names)
        b = gmm_step(y, X, Z, W)
        gbar = Z.T @ (y - X @ b) / N
        j_statistic = float(N * gbar @ W @ gbar)
    residuals = y - X @ b
    V = estimate_covariance(X, Z, residuals, W, covariance=covariance, clusters=clusters,
                            absorbed_degrees=absorbed_degrees, center=center_moments)
    G = number_of_clusters(clusters, N) if covariance == "clustered" else None
    return LinearIVResult(params=b, covariance=V, residuals=residuals, weighting=W, method=method,
                          covariance_type=covariance,
                          nobs=N, df_resid=N - K - absorbed_degrees, clusters=G,
                          j_statistic=j_statistic)
