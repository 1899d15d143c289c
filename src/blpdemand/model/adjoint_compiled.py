"""The adjoint gradient v' d delta / d theta, compiled, one market at a time.

For each market (Berry, Levinsohn and Pakes 1995; the implicit function theorem):

    v' d delta / d theta = -lambda' d s / d theta,   (d s / d delta) lambda = v,

with d s / d delta = diag(s) - e (E diag(w / D^2) E') e (s_ji = e_j E_ji / D_i), symmetric
positive definite for non-negative weights. lambda comes from conjugate gradients with diag(s)
(Jacobi) preconditioning to relative residual ``tol`` (Nocedal and Wright 2006, ch. 5), each
product A x costing two passes over the market's exp(mu); then, with a = lambda e,
U = [a, a x2]' E and xbar_ri = (e x2_r)' E_i / D_i,

    -lambda' d s / d theta_p = -sum_i (w_i / D_i) V_ic (U_ri - U_0i xbar_ri)

for theta_p acting through x2_r and agent variable V_c. The same quantities as
``model.derivatives.adjoint_theta_gradient`` (the numpy reference, all markets of a block
together), here market by market while its exp(mu) sits in L2 cache, without numpy's
per-iteration overhead. ``compile_kernel`` (``blpdemand._compiled``) holds the options of every
kernel of the package and decides whether it comes from the extension built at install.

Every share-type computation sweeps a market's exp(mu) (J x I, row j contiguous over i) in two
ways, written once here and inlined into the kernels: ``column_sums`` (u += E' a, and
``moment_sums``: K2 + 1 of them in one pass) and ``row_dots`` (diag(c) E r), four rows of E a
sweep, so that u_i is loaded and stored, and r_i loaded, once per four rows (against one row at
a time, on a 110 x 200 market from L2: one column sum 0.11 instead of 0.17 ns a cell, K2 + 1 of
them 0.06-0.09 instead of 0.09-0.12 ns a cell and sum for K2 = 6, 2). The contraction
(``solve.anderson_compiled``) and the padded share Jacobians (``model.jacobians_compiled``)
inline them too; numba's disk cache does not notice changes to a helper inlined from another
module, so after editing one delete those modules' caches (``__pycache__/*.nbi``, ``*.nbc``)
(the extension built at install does: its digest covers every kernel module).
"""

from __future__ import annotations

import math

import numpy as np

from blpdemand._compiled import F8, I8, as_kernel_array, compile_kernel, readonly
from blpdemand._types import FloatArray, IntArray

__all__ = ["adjoint_markets", "as_kernel_array", "column_sums", "compile_kernel", "denominators",
           "moment_sums", "readonly", "row_dots"]


@compile_kernel(inline="always")
def _four_rows(E, j, b0, b1, b2, b3, I, u):  # type: ignore[no-untyped-def]
    """u_i += b0 E_ji + b1 E_j+1,i + b2 E_j+2,i + b3 E_j+3,i for i < I: u is loaded and stored
    once per four rows of E instead of once per row."""
    E0, E1, E2, E3 = E[j], E[j + 1], E[j + 2], E[j + 3]
    for i in range(I):
        u[i] += b0 * E0[i] + b1 * E1[i] + b2 * E2[i] + b3 * E3[i]


@compile_kernel(inline="always")
def _one_row(E, j, b0, I, u):  # type: ignore[no-untyped-def]
    """u_i += b0 E_ji for i < I."""
    E0 = E[j]
    for i in range(I):
        u[i] += b0 * E0[i]


@compile_kernel(inline="always")
def column_sums(E, a, J, I, u):  # type: ignore[no-untyped-def]
    """u_i += sum_j a_j E_ji over rows j < J and columns i < I (E' a), four rows a sweep."""
    j = 0
    while j + 4 <= J:
        _four_rows(E, j, a[j], a[j + 1], a[j + 2], a[j + 3], I, u)
        j += 4
    while j < J:
        _one_row(E, j, a[j], I, u)
        j += 1


@compile_kernel(inline="always")
def moment_sums(E, a, x2, t, J, I, first, rest):  # type: ignore[no-untyped-def]
    """first_i += sum_j a_j E_ji and rest_ki += sum_j a_j x2_jk E_ji (x2 of market t; j < J,
    i < I): K2 + 1 column sums in one pass over E, each four rows swept K2 + 1 times while
    they sit in L1."""
    K = rest.shape[0]
    j = 0
    while j + 4 <= J:
        a0, a1, a2, a3 = a[j], a[j + 1], a[j + 2], a[j + 3]
        _four_rows(E, j, a0, a1, a2, a3, I, first)
        for k in range(K):
            _four_rows(E, j, a0 * x2[t, j, k], a1 * x2[t, j + 1, k], a2 * x2[t, j + 2, k],
                       a3 * x2[t, j + 3, k], I, rest[k])
        j += 4
    while j < J:
        _one_row(E, j, a[j], I, first)
        for k in range(K):
            _one_row(E, j, a[j] * x2[t, j, k], I, rest[k])
        j += 1


@compile_kernel(inline="always")
def row_dots(E, r, c, J, I, out):  # type: ignore[no-untyped-def]
    """out_j = c_j sum_i E_ji r_i for j < J over columns i < I (diag(c) E r), four rows of E a
    sweep (each r_i loaded once for four products)."""
    j = 0
    while j + 4 <= J:
        E0, E1, E2, E3 = E[j], E[j + 1], E[j + 2], E[j + 3]
        t0 = t1 = t2 = t3 = 0.0
        for i in range(I):
            ri = r[i]
            t0 += E0[i] * ri
            t1 += E1[i] * ri
            t2 += E2[i] * ri
            t3 += E3[i] * ri
        out[j], out[j + 1] = c[j] * t0, c[j + 1] * t1
        out[j + 2], out[j + 3] = c[j + 2] * t2, c[j + 3] * t3
        j += 4
    while j < J:
        E0 = E[j]
        t0 = 0.0
        for i in range(I):
            t0 += E0[i] * r[i]
        out[j] = c[j] * t0
        j += 1


@compile_kernel(inline="always")
def _operator(E, e, rD, diagonal, x, J, I, ex, u, out):  # type: ignore[no-untyped-def]
    """out = diag(s) x - e (E (rD (E' (e x)))): (d s / d delta) x for one market."""
    for j in range(J):
        ex[j] = e[j] * x[j]
    for i in range(I):
        u[i] = 0.0
    column_sums(E, ex, J, I, u)
    for i in range(I):
        u[i] *= rD[i]
    row_dots(E, u, e, J, I, out)
    for j in range(J):
        out[j] = diagonal[j] * x[j] - out[j]


_F2, _F3, _I1 = readonly(2), readonly(3), readonly(1, I8)


@compile_kernel(inline="always")
def denominators(E, e, x2, t, outside, n, m, D, left):  # type: ignore[no-untyped-def]
    """One pass over a market's exp(mu) E (its n x m real cells), for i < m:
    D_i = outside_i + sum_j e_j E_ji and left_ri = sum_j e_j x2_jr E_ji (x2 of market t), by
    ``moment_sums``."""
    for i in range(m):
        D[i] = outside[i]
    for k in range(left.shape[0]):
        for i in range(m):
            left[k, i] = 0.0
    moment_sums(E, e, x2, t, n, m, D, left)


@compile_kernel((_F3, _F2, _F2, _F2, _F3, _F3, _I1, _I1, _F2, _I1, _I1, F8, I8))
def _adjoint(exp_mu, outside, weights, e_delta, x2,  # type: ignore[no-untyped-def]
             variables, rows, columns, v, product_sizes, agent_sizes, tol, max_iterations):
    T, J_max, I_max = exp_mu.shape
    K2, P = x2.shape[2], rows.size
    out = np.zeros((T, P))
    ok = np.ones(T, np.bool_)
    D, r, rD, u = np.empty(I_max), np.empty(I_max), np.empty(I_max), np.empty(I_max)
    left = np.empty((K2, I_max))
    U0, U = np.empty(I_max), np.empty((K2, I_max))
    diagonal, lam, residual = np.empty(J_max), np.empty(J_max), np.empty(J_max)
    z, direction, Ap = np.empty(J_max), np.empty(J_max), np.empty(J_max)
    ex = np.empty(J_max)
    for t in range(T):
        J, I = product_sizes[t], agent_sizes[t]
        E, e, w = exp_mu[t], e_delta[t], weights[t]
        denominators(E, e, x2, t, outside[t], J, I, D, left)  # D_i, (e x2_r)' E_i: one pass
        for i in range(I):
            d = max(D[i], 2.2250738585072014e-308)
            D[i] = d
            r[i] = w[i] / d
            rD[i] = r[i] / d
        row_dots(E, r, e, J, I, diagonal)  # s_j, the Jacobi preconditioner
        # conjugate gradients on (d s / d delta) lambda = v, Jacobi preconditioned
        scale = 0.0
        rz = 0.0
        for j in range(J):
            lam[j] = 0.0
            residual[j] = v[t, j]
            scale += residual[j] * residual[j]
            if not diagonal[j] > 0.0:
                ok[t] = False
            z[j] = residual[j] / diagonal[j]
            direction[j] = z[j]
            rz += residual[j] * z[j]
        if not ok[t] or not math.isfinite(scale):
            ok[t] = False
            continue
        limit = tol * tol * scale
        converged = scale == 0.0
        iteration = 0
        while not converged and iteration < max_iterations:
            _operator(E, e, rD, diagonal, direction, J, I, ex, u, Ap)
            curvature = 0.0
            for j in range(J):
                curvature += direction[j] * Ap[j]
            if not curvature > 0.0:
                break
            alpha = rz / curvature
            norm = 0.0
            rz_new = 0.0
            for j in range(J):
                lam[j] += alpha * direction[j]
                residual[j] -= alpha * Ap[j]
                norm += residual[j] * residual[j]
                z[j] = residual[j] / diagonal[j]
                rz_new += residual[j] * z[j]
            iteration += 1
            if not math.isfinite(norm):
                break
            if norm <= limit:
                converged = True
                break
            beta = rz_new / rz if rz > 0.0 else 0.0
            for j in range(J):
                direction[j] = z[j] + beta * direction[j]
            rz = rz_new
        if not converged:
            ok[t] = False
            continue
        # U = [a, a x2]' E with a = lambda e; then -sum_i r_i V_ic (U_ri - U_0i xbar_ri)
        for j in range(J):
            ex[j] = lam[j] * e[j]
        for i in range(I):
            U0[i] = 0.0
        for k in range(K2):
            for i in range(I):
                U[k, i] = 0.0
        moment_sums(E, ex, x2, t, J, I, U0, U)
        for p in range(P):
            k, c = rows[p], columns[p]
            total = 0.0
            for i in range(I):
                total += r[i] * variables[t, i, c] * (U[k, i] - U0[i] * left[k, i] / D[i])
            out[t, p] = -total
    return out, ok


def adjoint_markets(exp_mu: FloatArray, outside: FloatArray, weights: FloatArray,
                    e_delta: FloatArray, x2: FloatArray, variables: FloatArray, rows: IntArray,
                    columns: IntArray, v: FloatArray, product_sizes: IntArray,
                    agent_sizes: IntArray, *, tol: float = 1e-13,
                    max_iterations: int = 500) -> tuple[FloatArray, np.ndarray]:
    """(T_b, P) v_t' d delta_t / d theta per market of one block, and (T_b,) whether each
    market's CG converged (where not, the caller takes the full Jacobian).

    Parameters
    ----------
    exp_mu, outside, weights : the block's ``ExpUtility`` arrays (non-negative weights).
    e_delta : (T_b, J) exp(delta); x2 : (T_b, J, K2); variables : (T_b, I, V) [nu, y].
    rows, columns : (P,) X2 column and agent-variable column of each parameter.
    v : (T_b, J) weights on delta (zero in padded slots); product_sizes, agent_sizes : real
        J_t and I_t.
    """
    c = as_kernel_array
    out, ok = _adjoint(c(exp_mu), c(outside), c(weights), c(e_delta), c(x2), c(variables),
                       c(rows, np.int64), c(columns, np.int64), c(v), c(product_sizes, np.int64),
                       c(agent_sizes, np.int64), float(tol), int(max_iterations))
    return out, ok
