"""The second-order term of the GMM objective's Hessian, compiled, one market at a time.

On the demand side alone Q = N g'Wg with g = Z'xi/N, and xi = delta~ - X1~ beta(delta~) is
linear in delta (beta concentrated out; its first-order condition makes v = M Z W g orthogonal
to X1~), so

    H = 2N G'WG + 2 v' d^2 delta / d theta_p d theta_q,   G = Z' d xi / d theta / N,

the first term from d delta / d theta (formed for the standard errors). The second by the
implicit function theorem applied twice to s(u(theta)) = S, where agent i's utilities
u_ji = delta_j + mu_ji move along a_p,ji = d delta_j / d theta_p + x2_j,r V_i,c (mu is linear in
theta): (d s / d delta) delta_pq = -sum_i w_i d^2 s_.i[a_p, a_q], and for logit shares

    d^2 s_ji[a, b] = s_ji (a_j - abar_i)(b_j - bbar_i) - s_ji ((ab)bar_i - abar_i bbar_i),

with abar_i = sum_k s_ki a_k. So v' delta_pq = -T_pq with the adjoint's lambda,
(d s / d delta) lambda = v, and T_pq = sum_i w_i sum_j lambda_j d^2 s_ji[a_p, a_q]: in one pass
over a market's exp(mu), per agent, the sums over j of s a_p, s a_p a_q, omega a_p,
omega a_p a_q and omega = lambda s. It replaces P gradient evaluations (a contraction and an
adjoint solve each) of the finite-difference Hessian.
"""

from __future__ import annotations

import numpy as np

from blpdemand._compiled import I8, as_kernel_array, compile_kernel, readonly
from blpdemand._types import FloatArray, IntArray
from blpdemand.model.sweeps_compiled import column_sums

__all__ = ["second_order_markets"]

_F2, _F3, _I1 = readonly(2), readonly(3), readonly(1, I8)


@compile_kernel((_F3, _F2, _F2, _F2, _F3, _F3, _I1, _I1, _F2, _F3, _I1, _I1))
def _second_order(exp_mu, outside, weights, e_delta, x2,  # type: ignore[no-untyped-def]
                  variables, rows, columns, lam, tangent, product_sizes, agent_sizes):
    T, _, I_max = exp_mu.shape
    P = rows.size
    pairs = P * (P + 1) // 2
    out = np.zeros((T, P, P))
    r, s, omega, total = np.empty(I_max), np.empty(I_max), np.empty(I_max), np.empty(I_max)
    V, a = np.empty((P, I_max)), np.empty((P, I_max))
    sa, wa = np.empty((P, I_max)), np.empty((P, I_max))
    saa, waa = np.empty((pairs, I_max)), np.empty((pairs, I_max))
    for t in range(T):
        J, I = product_sizes[t], agent_sizes[t]
        E = exp_mu[t]
        for i in range(I):
            r[i] = outside[t, i]
        column_sums(E, e_delta[t], J, I, r)  # D_i, then 1 / D_i
        for i in range(I):
            r[i] = 1.0 / max(r[i], 2.2250738585072014e-308)
            total[i] = 0.0
        for p in range(P):
            for i in range(I):
                V[p, i] = variables[t, i, columns[p]]
                sa[p, i] = 0.0
                wa[p, i] = 0.0
        for k in range(pairs):
            for i in range(I):
                saa[k, i] = 0.0
                waa[k, i] = 0.0
        for j in range(J):
            e, multiplier, row = e_delta[t, j], lam[t, j], E[j]
            for i in range(I):
                s[i] = e * row[i] * r[i]
                omega[i] = multiplier * s[i]
                total[i] += omega[i]
            for p in range(P):
                d, x = tangent[t, j, p], x2[t, j, rows[p]]
                for i in range(I):
                    a[p, i] = d + x * V[p, i]
                    sa[p, i] += s[i] * a[p, i]
                    wa[p, i] += omega[i] * a[p, i]
            k = 0
            for p in range(P):
                for q in range(p + 1):
                    for i in range(I):
                        product = a[p, i] * a[q, i]
                        saa[k, i] += s[i] * product
                        waa[k, i] += omega[i] * product
                    k += 1
        k = 0
        for p in range(P):
            for q in range(p + 1):
                value = 0.0
                for i in range(I):
                    ap, aq = sa[p, i], sa[q, i]
                    centred = waa[k, i] - aq * wa[p, i] - ap * wa[q, i] + ap * aq * total[i]
                    value += weights[t, i] * (centred - total[i] * (saa[k, i] - ap * aq))
                out[t, p, q] = value
                out[t, q, p] = value
                k += 1
    return out


def second_order_markets(exp_mu: FloatArray, outside: FloatArray, weights: FloatArray,
                         e_delta: FloatArray, x2: FloatArray, variables: FloatArray,
                         rows: IntArray, columns: IntArray, multipliers: FloatArray,
                         tangent: FloatArray, product_sizes: IntArray,
                         agent_sizes: IntArray) -> FloatArray:
    """(T_b, P, P) T_pq = sum_i w_i sum_j lambda_j d^2 s_ji[a_p, a_q] per market of one block.

    Parameters
    ----------
    exp_mu, outside, weights : the block's ``ExpUtility`` arrays.
    e_delta : (T_b, J) exp(delta); x2 : (T_b, J, K2); variables : (T_b, I, V) [nu, y].
    rows, columns : (P,) X2 column and agent-variable column of each parameter.
    multipliers : (T_b, J) the adjoint's lambda, (d s / d delta) lambda = v.
    tangent : (T_b, J, P) d delta / d theta; product_sizes, agent_sizes : real J_t and I_t.
    """
    c = as_kernel_array
    out: FloatArray = _second_order(
        c(exp_mu), c(outside), c(weights), c(e_delta), c(x2), c(variables), c(rows, np.int64),
        c(columns, np.int64), c(multipliers), c(tangent), c(product_sizes, np.int64),
        c(agent_sizes, np.int64))
    return out
