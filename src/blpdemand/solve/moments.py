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

Covariance restrictions (MacKay and Miller 2023) are a block whose residual is not linear in
its own parameters: r_C = xi omega - m against Z_C (N, M_C), with xi and omega the demand and
supply residuals after concentration, and m a known mean (default 0). As in PyBLP, beta and
gamma stay concentrated out by the linear blocks alone, l(theta) = P_U Z_U' y with
P_U = (X' Z_U W_UU Z_U' X)^{-1} X' Z_U W_UU (W_UU: W's rows and columns of the linear blocks),
so r = A y, A = I - X P_U Z_U', and the covariance moments move theta only. Then

    g_C = (1/N) Z_C' (xi omega - m),   d g_C = (1/N) Z_C' (omega dxi + xi domega),
    dQ/dtheta = 2 N g' W dg/dtheta = 2 v' dy/dtheta,   v = A' Z_F W g,

with Z_F = [Z_U, [omega Z_C; xi Z_C]] (2N, M) and dy = [d delta~; d f(c)~]: the covariance
block only adds weights omega (Z_C W g)_C to the demand adjoint and xi (Z_C W g)_C to the
supply adjoint, and A' = I - Z_U P_U' X' projects them (X' Z_F W g is no longer zero at the
concentrated l, since W couples the blocks at step 2; ``adjoint_weights``). The sandwich's
G = d g / d(theta, beta, gamma) has the covariance rows
(1/N) Z_C' [omega dxi/dtheta + xi domega/dtheta, -omega X1~, -xi X3~] (``moment_jacobian``);
its per-observation moments are z_Cj (xi_j omega_j - m), so the step-2 W and S span the blocks.
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
    """The blocks of a GMM problem stacked row-wise: Z = blockdiag(Z_b), X = blockdiag(X_b).

    A last block named "covariance" holds covariance restrictions (Z_C, no linear parameters),
    with ``mean`` the m of E[(xi omega - m) z_C] = 0 (module docstring).
    """

    blocks: tuple[MomentBlock, ...]
    mean: float = 0.0

    @property
    def N(self) -> int:
        return int(self.blocks[0].Z.shape[0])

    @property
    def M(self) -> int:
        return sum(int(b.Z.shape[1]) for b in self.blocks)

    @property
    def covariance(self) -> MomentBlock | None:
        """The covariance-restrictions block, or None."""
        return self.blocks[-1] if self.blocks[-1].name == "covariance" else None

    @property
    def linear(self) -> tuple[MomentBlock, ...]:
        """The blocks whose residuals are linear in their parameters (demand, supply)."""
        return self.blocks if self.covariance is None else self.blocks[:-1]

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
        """The concentrating IV-GMM step over the linear blocks for weighting matrix W (M, M)
        (its rows and columns of the linear blocks, W_UU, with covariance restrictions)."""
        if self.covariance is None:
            return LinearIV.build(self.X, self.Z, W)
        linear = self.linear
        MU = sum(int(b.Z.shape[1]) for b in linear)
        return LinearIV.build(_block_diagonal([b.X for b in linear]),
                              _block_diagonal([b.Z for b in linear]), W[:MU, :MU])

    def residuals(self, xi: FloatArray, omega: FloatArray | None) -> tuple[FloatArray, ...]:
        """Each block's residuals: (xi,), (xi, omega), or (xi, omega, xi omega - m)."""
        if omega is None:
            return (xi,)
        return (xi, omega) if self.covariance is None else (xi, omega, xi * omega - self.mean)

    def mean_moments(self, residuals: tuple[FloatArray, ...]) -> FloatArray:
        """g = (1/N) Z' r over the stack: (M,)."""
        return np.concatenate([mean_moments(r, b.Z) for r, b in zip(residuals, self.blocks)])

    def observation_moments(self, residuals: tuple[FloatArray, ...]) -> FloatArray:
        """g_j = [z_1j r_1j, ..., z_Bj r_Bj]: (N, M), whose covariance is S."""
        return np.hstack([observation_moments(r, b.Z) for r, b in zip(residuals, self.blocks)])

    def adjoint_weights(self, iv: LinearIV, Wg: FloatArray,
                        residuals: tuple[FloatArray, ...]) -> tuple[FloatArray, ...]:
        """v = A' Z_F W g cut into the linear blocks' (N,) pieces, so that
        dQ/dtheta = 2 sum_b v_b' dy_b/dtheta (module docstring; without covariance
        restrictions v_b = Z_b (W g)_b, the first-order condition making A' drop out)."""
        pieces = self.split(Wg)
        linear = self.linear
        v = [b.Z @ p for b, p in zip(linear, pieces)]
        block = self.covariance
        if block is None:
            return tuple(v)
        c = block.Z @ pieces[-1]
        v[0] = v[0] + residuals[1] * c  # omega (Z_C W g)_C on the demand side
        v[1] = v[1] + residuals[0] * c  # xi (Z_C W g)_C on the supply side
        a = iv.projector.T @ (iv.X.T @ np.concatenate(v))  # P_U' X' Z_F W g: (M_U,)
        cuts = np.cumsum([int(b.Z.shape[1]) for b in linear])[:-1]
        return tuple(v_b - b.Z @ a_b for v_b, b, a_b in zip(v, linear, np.split(a, cuts)))

    def moment_jacobian(self, jacobians: tuple[FloatArray, ...],
                        residuals: tuple[FloatArray, ...]) -> FloatArray:
        """G = d g / d(theta, linear parameters) (M, P + K) at fixed linear parameters, from
        the linear blocks' d r_b / d theta (N, P): [Z' dr/dtheta, -Z' X] / N, and with
        covariance restrictions the rows Z_C' [omega dxi + xi domega, -omega X1~, -xi X3~] / N."""
        block = self.covariance
        dr = self.stack(jacobians)
        if block is None:
            Z = self.Z
            return np.column_stack([Z.T @ dr, -(Z.T @ self.X)]) / self.N
        linear = self.linear
        Z, X = _block_diagonal([b.Z for b in linear]), _block_diagonal([b.X for b in linear])
        upper = np.column_stack([Z.T @ dr, -(Z.T @ X)])
        xi, omega = residuals[0], residuals[1]
        ZC = block.Z
        rows = np.column_stack([
            ZC.T @ (omega[:, None] * jacobians[0] + xi[:, None] * jacobians[1]),
            -(ZC.T @ (omega[:, None] * linear[0].X)), -(ZC.T @ (xi[:, None] * linear[1].X))])
        return np.vstack([upper, rows]) / self.N


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


def covariance_block(ZC: FloatArray) -> MomentBlock:
    """Covariance restrictions: xi omega - m against Z_C, no linear parameters (MacKay and
    Miller 2023)."""
    return MomentBlock(name="covariance", Z=ZC, X=np.zeros((ZC.shape[0], 0)))


def problem_stack(problem: Problem) -> MomentStack:
    """The stack of a problem: the demand block (Z_D~, X1~), then the supply block (Z_S~, X3~,
    supply fixed effects partialled out) when the problem has a supply side, then the
    covariance restrictions' block (Z_C) when it has them."""
    blocks = [demand_block(problem.ZD_tilde, problem.X1_tilde)]
    supply = problem.supply
    if supply is None:
        return MomentStack(tuple(blocks))
    blocks.append(supply_block(supply.ZS_tilde, supply.X3_tilde))
    if supply.covariance is None:
        return MomentStack(tuple(blocks))
    ZC = supply.covariance.ZC.values  # zero outside ``supply_markets``, as Z_S
    if supply.selected is not None:
        ZC = ZC * supply.selected[:, None]
    blocks.append(covariance_block(ZC))
    return MomentStack(tuple(blocks), mean=supply.covariance.mean)
