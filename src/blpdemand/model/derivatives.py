"""Derivatives of shares and of the inverted delta, batched over a block of markets.

With s_ji the choice probabilities and w_i the weights (Berry, Levinsohn and Pakes 1995;
Nevo 2000, appendix):

    d s_j / d delta_k = sum_i w_i s_ji (1[j = k] - s_ki)                         (T_b, J, J)
    d s_j / d theta_p = sum_i w_i s_ji (dmu_ji - sum_k s_ki dmu_ki)                 (T_b, J, P)

where for theta_p = Sigma[r, c], dmu_ji = x2_jr nu_ic, and for theta_p = Pi[r, d],
dmu_ji = x2_jr y_id. With xbar_ir = sum_k s_ki x2_kr and V = [nu, y],
d s_j / d theta_p = x2_jr (s w V)_jc - (s w (xbar_r * V_c))_j: two batched matmuls for all
parameters. The implicit function theorem gives d delta / d theta = -(ds/ddelta)^{-1} ds/dtheta,
one batched ``np.linalg.solve`` over the block.

``share_jacobians`` computes both from exp(mu) without forming s_ji, in three reads of exp(mu):
one batched matmul [e, e * x2]' E gives D_i - c_i and xbar_i = (E' (e * x2))_i / D_i; one
E [r, r V, r (xbar_r * V_c)] gives the shares and (s w Z)_j = e_j (E (r * Z))_j (r_i = w_i / D_i);
and sum_i w_i s_ji s_ki = e_j e_k (S S')_jk with S_ji = E_ji sqrt(w_i) / D_i, one scaled copy
of exp(mu) and one batched product S S' (the only O(J^2 I) step, its lower triangle only,
``symmetric_gram``), e_j e_k applied to the (J, J) result.
"""

from __future__ import annotations

from typing import cast

import numpy as np
from scipy.linalg import lapack

from blpdemand._types import BoolArray, FloatArray, IntArray
from blpdemand.model.utility import SHIFT_ABOVE, ExpUtility


def share_delta_jacobian(probabilities: FloatArray, weights: FloatArray) -> FloatArray:
    """d s / d delta = diag(s) - (s w) s': probabilities (T_b, J, I), weights (T_b, I)
    -> (T_b, J, J)."""
    weighted = probabilities * weights[:, None, :]
    out: FloatArray = -np.matmul(weighted, probabilities.transpose(0, 2, 1))
    j = np.arange(out.shape[1])
    out[:, j, j] += weighted.sum(axis=2)
    return out


def share_theta_jacobian(probabilities: FloatArray, weights: FloatArray, x2: FloatArray,
                         variables: FloatArray, rows: IntArray, columns: IntArray) -> FloatArray:
    """d s / d theta for parameters acting through dmu_ji = x2_j,rows[p] * variables_i,columns[p].

    Parameters
    ----------
    probabilities : (T_b, J, I) s_ji; weights : (T_b, I).
    x2 : (T_b, J, K2) nonlinear characteristics.
    variables : (T_b, I, V) agent variables [nu, y] (nodes, then demographics).
    rows, columns : (P,) X2 column and variable column of each parameter.

    Returns
    -------
    (T_b, J, P) d s_j / d theta_p.
    """
    weighted = probabilities * weights[:, None, :]
    xbar = np.matmul(probabilities.transpose(0, 2, 1), x2)  # (T_b, I, K2)
    interacted = xbar[:, :, rows] * variables[:, :, columns]  # (T_b, I, P)
    first = np.matmul(weighted, variables)  # (T_b, J, V)
    out: FloatArray = x2[:, :, rows] * first[:, :, columns] - np.matmul(weighted, interacted)
    return out


def share_jacobians(e_delta: FloatArray, utility: ExpUtility, x2: FloatArray,
                    variables: FloatArray, rows: IntArray,
                    columns: IntArray, sizes: IntArray | None = None, *,
                    agent_sizes: IntArray | None = None,
                    overwrite: bool = False) -> tuple[FloatArray, FloatArray]:
    """d s / d delta (T_b, J, J) and d s / d theta (T_b, J, P) straight from exp(mu).

    Parameters
    ----------
    e_delta : (T_b, J) exp(delta); utility : the block's ExpUtility.
    x2, variables, rows, columns : as in ``share_theta_jacobian``.
    sizes : (T_b,) products per market when the block is padded (padded slots trail each
        market): d s / d delta is then formed on the J_t x J_t leading block only (zero
        elsewhere), saving the padded part of the O(J^2 I) product. Every block is done
        market by market on its real cells by ``model.jacobians_compiled`` (unless a weight is
        negative or a bound below fails; on 20 markets of 50 x 1,000 2.8 ms against 4.7 for
        the numpy form below, on Nevo's 0.5 against 1.3), with ``agent_sizes`` (T_b,) real
        agents.
    overwrite : the caller no longer needs ``utility.exp_mu``: its scaled copy is made in place.
    """
    E = utility.exp_mu
    T_b, J, _ = E.shape
    weights = utility.weights
    E_bound = 1.0 if utility.shifted else float(np.exp(SHIFT_ABOVE))
    if np.all(weights >= 0) and float(e_delta.max(initial=0.0)) < 1e100:
        agents = np.full(T_b, E.shape[2]) if agent_sizes is None else agent_sizes
        products = np.full(T_b, J) if sizes is None else sizes
        from blpdemand.model.jacobians_compiled import padded_share_jacobians  # at first use

        compiled = padded_share_jacobians(e_delta, E, utility.outside, weights, x2, variables,
                                          rows, columns, products, agents)
        if compiled[2] * E_bound < 1e100:  # else S may overflow: the guarded form below
            return compiled[0], compiled[1]
    I = E.shape[2]
    V, P = variables.shape[2], rows.size
    # one read of E for D_i - c_i = sum_j e_j E_ji and the numerators of xbar_i, together;
    # agent-side arrays are kept as (T_b, columns, I) rows, contiguous for the elementwise work
    weighted = np.empty((T_b, 1 + x2.shape[2], J))
    weighted[:, 0] = e_delta
    np.multiply(x2.transpose(0, 2, 1), e_delta[:, None, :], out=weighted[:, 1:])
    left = np.matmul(weighted, E)  # (T_b, 1 + K2, I)
    # D_i >= c_i; only an absurd theta drives both terms to 0: keep 1/D finite there
    D = np.maximum(left[:, 0] + utility.outside, np.finfo(np.float64).tiny)
    r = weights / D
    # Z = [r, r V, r xbar_r V_c] with xbar_r = left_r / D
    Z = np.empty((T_b, 1 + V + P, I))
    Z[:, 0] = r
    np.multiply(variables.transpose(0, 2, 1), r[:, None, :], out=Z[:, 1:1 + V])
    np.multiply(left[:, 1 + rows], Z[:, 1 + columns], out=Z[:, 1 + V:])
    Z[:, 1 + V:] /= D[:, None, :]
    H = np.matmul(E, Z.transpose(0, 2, 1))  # (T_b, J, 1 + V + P): a second read of E
    H *= e_delta[:, :, None]
    shares = H[:, :, 0]
    # sum_i w_i s_ji s_ki = e_j e_k (S S')_jk with S_ji = E_ji sqrt(w_i) / D_i: one scaled copy
    # of exp(mu) and one gemm, e_j e_k applied to the (J, J) result. S is bounded by
    # max E (1 when shifted, exp(SHIFT_ABOVE) otherwise) times max sqrt(w_i) / D_i; when that
    # or exp(delta) is huge (an absurd theta) G = e S is formed instead (bounded by 1).
    scale = np.sqrt(np.maximum(weights, 0.0)) / D
    bound = float(scale.max(initial=0.0)) * E_bound
    safe = bound < 1e100 and float(e_delta.max(initial=0.0)) < 1e100
    if np.all(weights >= 0):
        S = np.multiply(E, scale[:, None, :], out=E if overwrite else None)
        if not safe:
            S *= e_delta[:, :, None]
        if sizes is None:
            ds_ddelta: FloatArray = symmetric_gram(S)  # (T_b, J, J)
        else:
            ds_ddelta = np.zeros((T_b, J, J))
            for t, n in enumerate(sizes.tolist()):
                ds_ddelta[t, :n, :n] = S[t, :n] @ S[t, :n].T
        if safe:
            ds_ddelta *= e_delta[:, :, None]
            ds_ddelta *= e_delta[:, None, :]
        np.negative(ds_ddelta, out=ds_ddelta)
    else:
        probabilities = E * (1.0 / D)[:, None, :]
        probabilities *= e_delta[:, :, None]
        ds_ddelta = -np.matmul(probabilities * weights[:, None, :],
                               probabilities.transpose(0, 2, 1))
    j = np.arange(J)
    ds_ddelta[:, j, j] += shares
    ds_dtheta: FloatArray = x2[:, :, rows] * H[:, :, 1 + columns] - H[:, :, 1 + V:]
    return ds_ddelta, ds_dtheta


PANEL_PRODUCTS = (32, 128)  # lower panels for J in this range (measured faster than one gemm)
PANEL_WIDTH = 8


def symmetric_gram(S: FloatArray) -> FloatArray:
    """S S' for a batch S (T_b, J, I): (T_b, J, J), symmetric.

    For J in ``PANEL_PRODUCTS`` only the lower triangle is multiplied, in column panels of
    ``PANEL_WIDTH``: (S S')[:, a:, a:b] = S[:, a:] S[:, a:b]', about half the flops of the
    full product (numpy's batched matmul never uses a symmetric rank-k update; measured 1.2 ms
    against 2.0 ms for 20 x 50 x 1000; for larger J one gemm per market is as fast); the upper
    panels are copied from the lower ones.
    """
    T_b, J, _ = S.shape
    low, high = PANEL_PRODUCTS
    if not low <= J <= high:
        full: FloatArray = np.matmul(S, S.transpose(0, 2, 1))
        return full
    out = np.empty((T_b, J, J))
    for a in range(0, J, PANEL_WIDTH):
        b = min(a + PANEL_WIDTH, J)
        np.matmul(S[:, a:], S[:, a:b].transpose(0, 2, 1), out=out[:, a:, a:b])
        out[:, a:b, b:] = out[:, b:, a:b].transpose(0, 2, 1)
    return out


SPD_PRODUCTS = 32  # from this many products per market, Cholesky per market beats batched LU


def _solve_symmetric(A: FloatArray, B: FloatArray, pad: BoolArray | None) -> FloatArray:
    """A^{-1} B per market by Cholesky on the J_t real products (padded slots trail and get 0).

    A = d s / d delta is symmetric positive definite for non-negative weights (diag(s) -
    sum_i w_i s_i s_i' >= min_i s_0i diag(s)): half the work of LU. Where Cholesky fails
    (negative weights, an absurd theta) LU is used, and its LinAlgError propagates.
    """
    J = A.shape[1]
    sizes = [J] * A.shape[0] if pad is None else (J - pad.sum(axis=1)).tolist()
    out = np.zeros(B.shape)
    for t, n in enumerate(sizes):
        a, b = A[t, :n, :n], B[t, :n]
        # a.T equals a (symmetric) and is Fortran-ordered when n = J: no copy into LAPACK
        _, x, info = lapack.dposv(a.T, b)
        out[t, :n] = x if info == 0 else np.linalg.solve(a, b)
    return out


def delta_theta_jacobian(ds_ddelta: FloatArray, ds_dtheta: FloatArray,
                         pad: BoolArray | None = None) -> FloatArray:
    """d delta / d theta = -(d s / d delta)^{-1} d s / d theta, batched: (T_b, J, P).

    Padded product slots (``pad`` True, trailing each market) get derivative 0.
    """
    if ds_ddelta.shape[1] >= SPD_PRODUCTS:
        try:
            return -_solve_symmetric(ds_ddelta, ds_dtheta, pad)
        except np.linalg.LinAlgError:
            pass  # the generic path below gives NaN in the singular markets
    if pad is not None:
        t, j = np.nonzero(pad)
        ds_ddelta = ds_ddelta.copy()
        ds_ddelta[t, j, :] = 0.0
        ds_ddelta[t, :, j] = 0.0
        ds_ddelta[t, j, j] = 1.0
        ds_dtheta = np.where(pad[:, :, None], 0.0, ds_dtheta)
    try:
        return cast(FloatArray, -np.linalg.solve(ds_ddelta, ds_dtheta))
    except np.linalg.LinAlgError:
        # some market's d s / d delta is singular (shares underflowed at an absurd theta): NaN
        # there, so the caller sees a non-finite Jacobian instead of a bare LinAlgError
        out = np.full(ds_dtheta.shape, np.nan)
        for market in range(ds_ddelta.shape[0]):
            try:
                out[market] = -np.linalg.solve(ds_ddelta[market], ds_dtheta[market])
            except np.linalg.LinAlgError:
                pass
        return out


def adjoint_theta_gradient(e_delta: FloatArray, utility: ExpUtility, x2: FloatArray,
                           variables: FloatArray, rows: IntArray, columns: IntArray,
                           v: FloatArray, *, tol: float = 1e-13,
                           max_iterations: int = 500) -> FloatArray | None:
    """v' d delta / d theta = -lambda' d s / d theta with (d s / d delta) lambda = v, per market.

    The adjoint of the implicit function theorem: one right-hand side per market instead of P,
    and d s / d delta is never formed. It is symmetric positive definite for non-negative
    weights, and A x = s x - e (E (r (e x)' E / D)) (r_i = w_i / D_i) costs O(J I), so lambda
    comes from conjugate gradients with diag(s) (Jacobi) preconditioning, all markets of the
    block together, to relative residual ``tol``. The eigenvalues of the preconditioned
    operator lie in [min_i s_0i, 1] (Nocedal and Wright 2006, ch. 5, for CG).

    Parameters
    ----------
    e_delta, utility, x2, variables, rows, columns : as in ``share_jacobians``.
    v : (T_b, J) weights on delta, zero in padded slots.

    Returns
    -------
    (T_b, P) v_t' d delta_t / d theta, or None when CG cannot be used or does not converge
    (negative weights, non-finite values): the caller then takes the full Jacobian.
    """
    E = utility.exp_mu
    weights = utility.weights
    if not np.all(weights >= 0):
        return None
    left = np.matmul(np.concatenate([e_delta[:, None, :], x2.transpose(0, 2, 1)
                                     * e_delta[:, None, :]], axis=1), E)  # (T_b, 1 + K2, I)
    D = np.maximum(left[:, 0] + utility.outside, np.finfo(np.float64).tiny)
    r = weights / D
    rD = r / D
    shares = e_delta * np.matmul(E, r[:, :, None])[:, :, 0]
    real = shares > 0  # padded slots have exp(mu) = 0: the operator is the identity there
    diagonal = np.where(real, shares, 1.0)

    def apply(x: FloatArray) -> FloatArray:
        u = np.matmul((e_delta * x)[:, None, :], E)[:, 0] * rD  # (T_b, I)
        out = diagonal * x - e_delta * np.matmul(E, u[:, :, None])[:, :, 0]
        return cast(FloatArray, out)

    lam = np.zeros_like(v)
    residual = np.where(real, v, 0.0)
    scale = np.sqrt(np.sum(residual * residual, axis=1))
    z = residual / diagonal
    direction = z.copy()
    rz = np.sum(residual * z, axis=1)
    for _ in range(max_iterations):
        norm = np.sqrt(np.sum(residual * residual, axis=1))
        if not np.all(np.isfinite(norm)):
            return None
        if np.all(norm <= tol * scale):
            break
        Ap = apply(direction)
        curvature = np.sum(direction * Ap, axis=1)
        active = curvature > 0
        alpha = np.where(active, rz / np.where(active, curvature, 1.0), 0.0)
        lam += alpha[:, None] * direction
        residual -= alpha[:, None] * Ap
        z = residual / diagonal
        rz_new = np.sum(residual * z, axis=1)
        beta = np.where(rz > 0, rz_new / np.where(rz > 0, rz, 1.0), 0.0)
        direction = z + beta[:, None] * direction
        rz = rz_new
    else:
        return None
    # -lambda' ds/dtheta_p = -sum_i r_i V_ic (U_ri - U_0i xbar_ir), U = [a, a x2]' E, a = lambda e
    a = lam * e_delta
    U = np.matmul(np.concatenate([a[:, None, :], x2.transpose(0, 2, 1) * a[:, None, :]],
                                 axis=1), E)
    xbar = left[:, 1:] / D[:, None, :]
    Q = r[:, None, :] * (U[:, 1:] - U[:, :1] * xbar)  # (T_b, K2, I)
    out: FloatArray = -np.sum(Q[:, rows] * variables.transpose(0, 2, 1)[:, columns], axis=2)
    return out
