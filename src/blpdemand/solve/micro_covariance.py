"""The sandwich over [demand; micro]: V = (G'WG)^{-1} G'WSWG (G'WG)^{-1} / N with
S = blockdiag(S_D, S_M) (the surveys are independent of the product-level moments) and
G = [G_D; -d f / d theta, 0] (``solve.micro``; Conlon and Gortmaker 2023)."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg

from blpdemand._types import FloatArray
from blpdemand.solve.covariance import moment_covariance, parameter_covariance


def stacked_covariance(G: FloatArray, W: FloatArray, xi: FloatArray, Z: FloatArray,
                       S_M: FloatArray, *, kind: str, clusters: Any = None, center: bool = True,
                       identified: Any = None) -> FloatArray:
    """Covariance of (theta, beta) over [demand; micro]: the sandwich with S =
    blockdiag(S_D, S_M) (``kind`` sets S_D; "unadjusted" takes W = S^{-1}); NaN where the
    inner loop failed or for parameters not ``identified``."""
    K = G.shape[1]
    nan = np.full((K, K), np.nan)
    if not (np.all(np.isfinite(G)) and np.all(np.isfinite(xi))):
        return nan
    with np.errstate(over="ignore", invalid="ignore"):
        S_D = moment_covariance(xi, Z, kind=kind, clusters=clusters, center=center)
        S: FloatArray = scipy.linalg.block_diag(S_D, S_M)
        if kind == "unadjusted":
            W = np.asarray(np.linalg.inv(S), dtype=np.float64)
        try:
            out = parameter_covariance(G, W, S, xi.shape[0], identified)
        except np.linalg.LinAlgError:
            return nan
    return out
