"""Moment covariance S and the GMM weighting matrix W = S^-1.

For moment conditions E[g_i] = 0 with g_i = Z_i' xi_i (one row per product, M columns), the
estimators in blpdemand (linear IV/GMM for the logit, nonlinear GMM for BLP) need

    S = (1/N) sum_i g_i g_i'                                   robust (White 1980, Hansen 1982)
    S = (1/N) sum_c (sum_{i in c} g_i)(sum_{i in c} g_i)'      clustered (Liang and Zeger 1986)
    S = S_a + S_b - S_{a and b}                                 two-way clustered
                                                               (Cameron, Gelbach and Miller 2011)
    S = sigma^2 Z'Z / N,   sigma^2 = xi'xi / N                  unadjusted (homoskedastic)

No finite-sample corrections are applied here: callers scale S (e.g. by N / (N - K) for HC1).
Later moment blocks (supply, micro moments) stack more columns into ``moments``; nothing here
assumes the columns are demand moments.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from blpdemand._types import COVARIANCE_KINDS, CovarianceKind, FloatArray
from blpdemand.data.validation import check_id_values
from blpdemand.errors import DataError, SpecificationError

KINDS = COVARIANCE_KINDS


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
        (S = sigma^2 Z'Z / N with sigma^2 = xi'xi / N).
    center : subtract the sample mean of g before forming S (robust and clustered).

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
    if kind not in KINDS:
        raise SpecificationError(
            f"covariance kind={kind!r} is not valid; choose one of {list(KINDS)}")
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
        sigma2 = float(xi @ xi) / N
        S = sigma2 * (Z.T @ Z) / N
        out: FloatArray = (S + S.T) / 2
        return out
    if center:
        g = g - g.mean(axis=0)
    if kind == "robust":
        S = g.T @ g / N
    else:
        if clusters is None:
            raise SpecificationError("kind='clustered' needs clusters= (N,) ids or (N, 2) ids")
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
                     rcond: float = 1e-12) -> FloatArray:
    """The efficient GMM weighting matrix W = S^-1, (M, M), symmetric.

    Raises SpecificationError when S is singular or numerically so (reciprocal condition number
    below ``rcond``): collinear instruments, more moments than clusters, or a moment that is
    identically zero. ``names`` label the moments in the message.
    """
    S = np.asarray(S, dtype=np.float64)
    if S.ndim != 2 or S.shape[0] != S.shape[1]:
        raise SpecificationError(f"moment covariance must be square, got shape {S.shape}")
    if not np.all(np.isfinite(S)):
        raise DataError(
            "moment covariance has NaN/inf entries; check the residuals and instruments")
    # scale to unit diagonal so that the condition number is about collinearity, not units
    d = np.sqrt(np.clip(np.diag(S), 0.0, None))
    zero = np.flatnonzero(d == 0)
    if zero.size:
        label = [names[k] for k in zero] if names else zero.tolist()
        raise SpecificationError(f"moment(s) {label} have zero variance; the moment covariance is "
                                 "singular; drop those instruments")
    C = S / np.outer(d, d)
    eigenvalues = np.linalg.eigvalsh(C)
    if eigenvalues[0] <= rcond * max(eigenvalues[-1], 1.0):
        raise SpecificationError(
            f"moment covariance ({S.shape[0]} moments) is singular (smallest scaled eigenvalue "
            f"{eigenvalues[0]:.3g}): instruments are collinear or there are fewer clusters than "
            "moments; drop instruments or use fewer clustering dimensions")
    W = np.linalg.inv(C) / np.outer(d, d)
    result: FloatArray = (W + W.T) / 2
    return result
