"""Demand moments g(theta) = (1/N) Z_D~' xi(theta) with beta concentrated out by linear IV-GMM.

Given mean utilities delta (fixed effects partialled out: delta~), the linear parameters solve
the IV-GMM problem in closed form (Hansen 1982; Nevo 2000):

    beta(delta) = (X1~' Z W Z' X1~)^{-1} X1~' Z W Z' delta~,   xi = delta~ - X1~ beta,

so xi = A delta~ with A = I - X1~ (X1~' Z W Z' X1~)^{-1} X1~' Z W Z' a projection that does not
depend on theta. Demand moments are the first block of the stacked moments; supply and micro
moments are later blocks of the same vector.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from blpdemand._types import FloatArray
from blpdemand.errors import SpecificationError


@dataclass(frozen=True, slots=True)
class LinearIV:
    """The linear IV-GMM step for fixed regressors X (N, K), instruments Z (N, M) and W (M, M).

    ``beta(y)`` maps (N,) or (N, P) left-hand sides to (K,) or (K, P) coefficients:
    beta = (X' Z W Z' X)^{-1} X' Z W Z' y.
    """

    X: FloatArray
    Z: FloatArray
    W: FloatArray
    projector: FloatArray  # (K, M): (X'ZWZ'X)^{-1} X'ZW

    @classmethod
    def build(cls, X: FloatArray, Z: FloatArray, W: FloatArray) -> LinearIV:
        """Precompute the (K, M) map from Z'y to beta."""
        if X.shape[1] == 0:
            return cls(X=X, Z=Z, W=W, projector=np.zeros((0, Z.shape[1])))
        ZX = Z.T @ X
        A = ZX.T @ W @ ZX
        try:
            projector = np.asarray(np.linalg.solve(A, ZX.T @ W), dtype=np.float64)
        except np.linalg.LinAlgError as error:
            raise SpecificationError(
                "X1~' Z W Z' X1~ is singular: the linear characteristics are not identified by "
                "the demand instruments; add instruments or drop collinear X1 columns") from error
        return cls(X=X, Z=Z, W=W, projector=projector)

    def beta(self, y: FloatArray) -> FloatArray:
        """beta(y) for (N,) or (N, P) y."""
        return self.projector @ (self.Z.T @ y)

    def residuals(self, y: FloatArray) -> FloatArray:
        """xi = y - X beta(y), same shape as y."""
        return y - self.X @ self.beta(y)


def observation_moments(xi: FloatArray, Z: FloatArray) -> FloatArray:
    """Per-observation moments z_j xi_j: (N, M)."""
    out: FloatArray = Z * xi[:, None]
    return out


def mean_moments(xi: FloatArray, Z: FloatArray) -> FloatArray:
    """g = (1/N) Z' xi: (M,)."""
    out: FloatArray = (Z.T @ xi) / xi.shape[0]
    return out
