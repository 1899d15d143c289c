"""GMM moments in blocks, with the linear parameters of every block concentrated out.

A block b states E[z_bj r_bj] = 0 over the N observations j (products in markets), with
residuals linear in the block's own linear parameters l_b given theta:

    r_b(theta, l_b) = y_b(theta) - X_b l_b,        Z_b (N, M_b),  X_b (N, K_b).

The demand block (Berry 1994; BLP 1995) is y_D = delta~(theta), X_D = X1~, Z_D = Z_D~ (fixed
effects partialled out), r_D = xi; a supply block would be y_S = f(p - eta(theta))~, X_S = X3~,
r_S = omega; covariance restrictions and micro moments are further blocks of the same vector.
The blocks stack row-wise into one IV problem, Z = blockdiag(Z_b), X = blockdiag(X_b),
y = [y_1; ...; y_B], so that

    g(theta) = (1/N) Z' (y - X l),   l(theta) = (X' Z W Z' X)^{-1} X' Z W Z' y,
    Q(theta) = N g' W g,             dQ/dtheta = 2 (dy/dtheta)' Z W g

(the concentrated l drops out of the gradient by its first-order condition X' Z W g = 0;
Hansen 1982; Nevo 2000). Per observation the moments are g_j = [z_1j r_1j, ..., z_Bj r_Bj],
whose covariance S (robust or clustered by observation) spans the blocks: the weighting
matrix, the moment covariance and the sandwich are written once, over the stack
(``solve.covariance``). With the demand block alone every quantity is the one-block formula.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from blpdemand._types import FloatArray
from blpdemand.errors import SpecificationError
from blpdemand.model.problem import Problem


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


@dataclass(frozen=True, slots=True)
class MomentBlock:
    """One block of moments E[z_b r_b] = 0, r_b = y_b(theta) - X_b l_b (module docstring).

    name : the block ("demand", ...); Z : (N, M_b) instruments and X : (N, K_b) regressors of
    the block's linear parameters, both with fixed effects partialled out.
    """

    name: str
    Z: FloatArray
    X: FloatArray


@dataclass(frozen=True, slots=True)
class MomentStack:
    """The blocks of a GMM problem stacked row-wise: Z = blockdiag(Z_b), X = blockdiag(X_b)."""

    blocks: tuple[MomentBlock, ...]

    @property
    def N(self) -> int:
        return int(self.blocks[0].Z.shape[0])

    @property
    def M(self) -> int:
        return sum(int(b.Z.shape[1]) for b in self.blocks)

    @property
    def Z(self) -> FloatArray:
        """(B N, M) block-diagonal instruments (the block's own array for one block)."""
        return _block_diagonal([b.Z for b in self.blocks])

    @property
    def X(self) -> FloatArray:
        """(B N, K) block-diagonal regressors (the block's own array for one block)."""
        return _block_diagonal([b.X for b in self.blocks])

    def stack(self, per_block: tuple[FloatArray, ...]) -> FloatArray:
        """[y_1; ...; y_B]: (B N,) or (B N, P) from each block's (N,) or (N, P)."""
        return per_block[0] if len(per_block) == 1 else np.concatenate(per_block)

    def split(self, vector: FloatArray) -> tuple[FloatArray, ...]:
        """An (M,) vector over the stacked moments cut into the blocks' (M_b,) pieces."""
        cuts = np.cumsum([int(b.Z.shape[1]) for b in self.blocks])[:-1]
        return tuple(np.split(vector, cuts))

    def linear_iv(self, W: FloatArray) -> LinearIV:
        """The concentrating IV-GMM step over the stack for weighting matrix W (M, M)."""
        return LinearIV.build(self.X, self.Z, W)

    def mean_moments(self, residuals: tuple[FloatArray, ...]) -> FloatArray:
        """g = (1/N) Z' r over the stack: (M,)."""
        return np.concatenate([mean_moments(r, b.Z) for r, b in zip(residuals, self.blocks)])

    def observation_moments(self, residuals: tuple[FloatArray, ...]) -> FloatArray:
        """g_j = [z_1j r_1j, ..., z_Bj r_Bj]: (N, M), whose covariance is S."""
        return np.hstack([observation_moments(r, b.Z) for r, b in zip(residuals, self.blocks)])


def _block_diagonal(matrices: list[FloatArray]) -> FloatArray:
    if len(matrices) == 1:
        return matrices[0]
    rows = sum(m.shape[0] for m in matrices)
    out = np.zeros((rows, sum(m.shape[1] for m in matrices)))
    r = c = 0
    for m in matrices:
        out[r:r + m.shape[0], c:c + m.shape[1]] = m
        r, c = r + m.shape[0], c + m.shape[1]
    return out


def demand_block(Z: FloatArray, X1: FloatArray) -> MomentBlock:
    """The demand block: xi = delta~(theta) - X1~ beta against Z_D~ (BLP 1995)."""
    return MomentBlock(name="demand", Z=Z, X=X1)


def supply_block(Z: FloatArray, X3: FloatArray) -> MomentBlock:
    """The supply block: omega = f(p - eta(theta)) - X3 gamma against Z_S (BLP 1995)."""
    return MomentBlock(name="supply", Z=Z, X=X3)


def problem_stack(problem: Problem) -> MomentStack:
    """The stack of a problem: the demand block (Z_D~, X1~), then the supply block (Z_S~, X3~,
    supply fixed effects partialled out) when the problem has a supply side."""
    blocks = [demand_block(problem.ZD_tilde, problem.X1_tilde)]
    if problem.supply is not None:
        blocks.append(supply_block(problem.supply.ZS_tilde, problem.supply.X3_tilde))
    return MomentStack(tuple(blocks))
