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

The sweeps over exp(mu) it makes (column sums, row dots, four rows a sweep) are
``model.sweeps_compiled``'s, shared with the contraction and the share Jacobians.
"""

from __future__ import annotations

import math

import numpy as np

from blpdemand._compiled import F8, I8, as_kernel_array, compile_kernel, readonly, writable
from blpdemand._types import FloatArray, IntArray
from blpdemand.model.sweeps_compiled import column_sums, denominators, moment_sums, row_dots

__all__ = ["adjoint_markets"]


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


@compile_kernel((_F3, _F2, _F2, _F2, _F3, _F3, _I1, _I1, _F2, _I1, _I1, F8, I8, writable(2)))
def _adjoint(exp_mu, outside, weights, e_delta, x2,  # type: ignore[no-untyped-def]
             variables, rows, columns, v, product_sizes, agent_sizes, tol, max_iterations,
             multipliers):
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
            multipliers[t, j] = lam[j]
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
                    max_iterations: int = 500, multipliers: FloatArray | None = None
                    ) -> tuple[FloatArray, np.ndarray]:
    """(T_b, P) v_t' d delta_t / d theta per market of one block, and (T_b,) whether each
    market's CG converged (where not, the caller takes the full Jacobian). ``multipliers``, a
    writable (T_b, J) array, receives lambda where CG converged (the Hessian's second-order
    term uses it: ``model.hessian_compiled``).

    Parameters
    ----------
    exp_mu, outside, weights : the block's ``ExpUtility`` arrays (non-negative weights).
    e_delta : (T_b, J) exp(delta); x2 : (T_b, J, K2); variables : (T_b, I, V) [nu, y].
    rows, columns : (P,) X2 column and agent-variable column of each parameter.
    v : (T_b, J) weights on delta (zero in padded slots); product_sizes, agent_sizes : real
        J_t and I_t.
    """
    c = as_kernel_array
    if multipliers is None:
        multipliers = np.empty(np.shape(v))
    out, ok = _adjoint(c(exp_mu), c(outside), c(weights), c(e_delta), c(x2), c(variables),
                       c(rows, np.int64), c(columns, np.int64), c(v), c(product_sizes, np.int64),
                       c(agent_sizes, np.int64), float(tol), int(max_iterations), multipliers)
    return out, ok
