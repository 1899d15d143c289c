"""The sandwich over [product-level blocks; micro]: V = (G'WG)^{-1} G'WSWG (G'WG)^{-1} / N
with S = blockdiag(S_P, S_M) (the surveys are independent of the product-level moments of
demand and supply) and G = [G_P; -d f / d theta, 0] (``solve.micro``; Conlon and Gortmaker
2023)."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg

from blpdemand._types import FloatArray
from blpdemand.solve.covariance import parameter_covariance, stack_covariance
from blpdemand.solve.moments import MomentStack


def stacked_covariance(G: FloatArray, W: FloatArray, residuals: tuple[FloatArray, ...],
                       stack: MomentStack, S_M: FloatArray, *, kind: str, clusters: Any = None,
                       center: bool = True, identified: Any = None) -> FloatArray:
    """Covariance of (theta, linear parameters) over [product-level blocks; micro]: the sandwich
    with S = blockdiag(S_P, S_M), S_P over the stack's blocks (demand, supply) from their
    ``residuals`` (``kind`` sets it; "unadjusted" takes W = S^{-1}); NaN where the inner loop
    failed or for parameters not ``identified``."""
    K = G.shape[1]
    nan = np.full((K, K), np.nan)
    if not (np.all(np.isfinite(G)) and all(np.all(np.isfinite(r)) for r in residuals)):
        return nan
    with np.errstate(over="ignore", invalid="ignore"):
        S_P = stack_covariance(stack, residuals, kind=kind, clusters=clusters, center=center)
        S: FloatArray = scipy.linalg.block_diag(S_P, S_M)
        if kind == "unadjusted":
            W = np.asarray(np.linalg.inv(S), dtype=np.float64)
        try:
            out = parameter_covariance(G, W, S, residuals[0].shape[0], identified)
        except np.linalg.LinAlgError:
            return nan
    return out
