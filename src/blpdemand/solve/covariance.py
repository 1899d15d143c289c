"""GMM weighting matrices and the sandwich covariance of (theta, beta).

Moment covariance S (Hansen 1982), from per-observation moments g_j = z_j xi_j, centered:
  unadjusted  S = var(xi) Z'Z / N
  robust      S = (1/N) sum_j (g_j - gbar)(g_j - gbar)'
  clustered   S = (1/N) sum_c (sum_{j in c} (g_j - gbar))(...)'   (two-way: CGM 2011)
Parameter covariance with G = d gbar / d(theta, beta) (M, P + K1):
  V = (G'WG)^{-1} G'W S W G (G'WG)^{-1} / N   (reduces to (G' S^{-1} G)^{-1} / N when W = S^{-1}).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from blpdemand._types import AnyArray, FloatArray
from blpdemand.errors import SpecificationError
from blpdemand.solve import weighting

CovarianceKind = Literal["unadjusted", "robust", "clustered"]
COVARIANCE_KINDS = ("unadjusted", "robust", "clustered")


def check_kind(kind: str, clusters: AnyArray | None, N: int) -> None:
    """Validate a covariance kind and its clusters (SpecificationError naming the fix)."""
    if kind not in COVARIANCE_KINDS:
        raise SpecificationError(f"covariance kind {kind!r} is unknown; use one of {COVARIANCE_KINDS}")
    if kind == "clustered":
        if clusters is None:
            raise SpecificationError("covariance kind 'clustered' needs clusters= (one id per product)")
        if len(clusters) != N:
            raise SpecificationError(f"clusters has {len(clusters)} ids but there are {N} products")


def moment_covariance(xi: FloatArray, Z: FloatArray, *, kind: str = "robust",
                      clusters: AnyArray | None = None, center: bool = True) -> FloatArray:
    """Covariance S (M, M) of the demand moments z_j xi_j; see the module docstring.

    Robust and clustered (one- or two-way) S come from :mod:`blpdemand.solve.weighting`; the
    unadjusted S uses the centered variance of xi, as PyBLP does. ``clusters`` are (N,) or
    (N, 2) ids in the problem's sorted row order.
    """
    N = xi.shape[0]
    check_kind(kind, clusters, N)
    if kind == "unadjusted":
        S: FloatArray = float(np.var(xi)) * (Z.T @ Z) / N
        return (S + S.T) / 2
    out: FloatArray = weighting.moment_covariance(
        Z * xi[:, None], kind=kind, clusters=clusters, center=center)  # type: ignore[arg-type]
    return out


def weighting_matrix(S: FloatArray, *, what: str = "moment covariance") -> FloatArray:
    """W = S^{-1}, symmetrized; SpecificationError when S is (numerically) singular."""
    try:
        return weighting.weighting_matrix(S)
    except SpecificationError as error:
        raise SpecificationError(f"the {what} has no inverse: {error}") from error


def parameter_covariance(G: FloatArray, W: FloatArray, S: FloatArray, N: int) -> FloatArray:
    """Sandwich V = (G'WG)^{-1} G'WSWG (G'WG)^{-1} / N: (P + K1, P + K1)."""
    bread = np.linalg.pinv(G.T @ W @ G)
    meat = G.T @ W @ S @ W @ G
    V = bread @ meat @ bread / N
    return (V + V.T) / 2
