"""d s / d delta and d s / d theta of a padded block, compiled, one market at a time.

The quantities of ``model.derivatives.share_jacobians`` (its numpy form, kept for unpadded
blocks, negative weights and absurd thetas), for each market t on its J_t real products and
I_t real agents only: with e_j = exp(delta_j), D_i = exp(-m_i) + sum_j e_j E_ji,
r_i = w_i / D_i and xbar_ri = sum_j e_j x2_jr E_ji / D_i,

    s_j = e_j sum_i E_ji r_i,
    d s_j / d theta_p = x2_jr e_j sum_i E_ji r_i V_ic - e_j sum_i E_ji r_i xbar_ri V_ic,
    d s_j / d delta_k = 1[j = k] s_j - e_j e_k (S S')_jk,   S_ji = E_ji sqrt(w_i) / D_i,

for theta_p acting through x2_r and agent variable V_c. Two passes over the market's exp(mu)
while it sits in L2 and one product S S' of the (J_t, I_t) scaled copy (its lower triangle,
``_gram``), instead of numpy's passes over the whole padded block and a Python loop over
markets for the products: on 120 small markets (J 5-40, I 50-400) about 4.5 ms of the final
evaluation. The first pass is the adjoint's (``model.sweeps_compiled.denominators``: K2 + 1
column sums, four rows of exp(mu) a sweep). Every block takes this kernel, padded or not
(``model.derivatives.share_jacobians``).
"""

from __future__ import annotations

import math

import numpy as np

from blpdemand._compiled import I8, as_kernel_array, compile_kernel, readonly
from blpdemand._types import FloatArray, IntArray
from blpdemand.model.sweeps_compiled import denominators

__all__ = ["padded_share_jacobians"]

_F2, _F3, _I1 = readonly(2), readonly(3), readonly(1, I8)


@compile_kernel(inline="always")
def _gram(S, n, m, out):  # type: ignore[no-untyped-def]
    """out[:n, :n] = S S' of S (n, m): the lower triangle in 4 x 4 blocks (16 sums from 8 rows
    of S a sweep, where a gemm re-reads them for every pair), mirrored above. On 50 x 1,000
    markets 98 us against 110 (numpy's gemm) and 155 (np.dot in numba)."""
    j = 0
    while j < n:
        k = 0
        while k <= j:
            if j + 4 <= n and k + 4 <= n:
                a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = 0.0
                a20 = a21 = a22 = a23 = a30 = a31 = a32 = a33 = 0.0
                r0, r1, r2, r3 = S[j], S[j + 1], S[j + 2], S[j + 3]
                c0, c1, c2, c3 = S[k], S[k + 1], S[k + 2], S[k + 3]
                for i in range(m):
                    x0, x1, x2, x3 = r0[i], r1[i], r2[i], r3[i]
                    y0, y1, y2, y3 = c0[i], c1[i], c2[i], c3[i]
                    a00 += x0 * y0
                    a01 += x0 * y1
                    a02 += x0 * y2
                    a03 += x0 * y3
                    a10 += x1 * y0
                    a11 += x1 * y1
                    a12 += x1 * y2
                    a13 += x1 * y3
                    a20 += x2 * y0
                    a21 += x2 * y1
                    a22 += x2 * y2
                    a23 += x2 * y3
                    a30 += x3 * y0
                    a31 += x3 * y1
                    a32 += x3 * y2
                    a33 += x3 * y3
                out[j, k], out[j, k + 1], out[j, k + 2], out[j, k + 3] = a00, a01, a02, a03
                out[j + 1, k], out[j + 1, k + 1] = a10, a11
                out[j + 1, k + 2], out[j + 1, k + 3] = a12, a13
                out[j + 2, k], out[j + 2, k + 1] = a20, a21
                out[j + 2, k + 2], out[j + 2, k + 3] = a22, a23
                out[j + 3, k], out[j + 3, k + 1] = a30, a31
                out[j + 3, k + 2], out[j + 3, k + 3] = a32, a33
            else:  # the edge blocks, one sum at a time
                for a in range(j, min(j + 4, n)):
                    for b in range(k, min(k + 4, n)):
                        total = 0.0
                        for i in range(m):
                            total += S[a, i] * S[b, i]
                        out[a, b] = total
            k += 4
        j += 4
    for a in range(n):
        for b in range(a + 1, n):
            out[a, b] = out[b, a]


@compile_kernel((_F2, _F3, _F2, _F2, _F3, _F3, _I1, _I1, _I1, _I1))
def _share_jacobians(e_delta, E, outside, weights,  # type: ignore[no-untyped-def]
                     x2, variables, rows, columns, product_sizes, agent_sizes):
    T, J, I = E.shape
    K, V, P = x2.shape[2], variables.shape[2], rows.size
    ds_ddelta = np.zeros((T, J, J))
    ds_dtheta = np.zeros((T, J, P))
    D = np.empty(I)
    left = np.empty((K, I))  # sum_j e_j x2_jr E_ji, then xbar_ri
    Z = np.empty((1 + V + P, I))  # [r, r V_c, r xbar_r V_c] as rows
    H = np.empty(1 + V + P)
    flat = np.empty(J * I)  # S of one market, (J_t, I_t) contiguous
    gram, scale = np.empty((J, J)), np.empty(I)
    largest = 0.0  # max_i sqrt(w_i) / D_i: with max E, the bound on S the caller checks
    for t in range(T):
        n, m = product_sizes[t], agent_sizes[t]
        S = flat[:n * m].reshape((n, m))
        denominators(E[t], e_delta[t], x2, t, outside[t], n, m, D, left)
        for i in range(m):
            D[i] = max(D[i], 2.2250738585072014e-308)  # finite 1 / D where both terms underflow
            Z[0, i] = weights[t, i] / D[i]
        for v in range(V):
            for i in range(m):
                Z[1 + v, i] = Z[0, i] * variables[t, i, v]
        for p in range(P):
            r, c = rows[p], columns[p]
            for i in range(m):
                Z[1 + V + p, i] = left[r, i] * Z[1 + c, i] / D[i]
        for i in range(m):  # S_ji = E_ji scale_i
            scale[i] = math.sqrt(weights[t, i]) / D[i]
            largest = max(largest, scale[i])
        for j in range(n):  # the second pass: H_jq = e_j sum_i E_ji Z_qi, and S
            e = e_delta[t, j]
            row = E[t, j]
            for q in range(1 + V + P):
                total = 0.0
                for i in range(m):
                    total += row[i] * Z[q, i]
                H[q] = e * total
            ds_ddelta[t, j, j] = H[0]
            for p in range(P):
                ds_dtheta[t, j, p] = x2[t, j, rows[p]] * H[1 + columns[p]] - H[1 + V + p]
            for i in range(m):
                S[j, i] = row[i] * scale[i]
        _gram(S, n, m, gram)
        for j in range(n):
            ej = e_delta[t, j]
            for k in range(n):
                ds_ddelta[t, j, k] -= ej * e_delta[t, k] * gram[j, k]
    return ds_ddelta, ds_dtheta, largest


def padded_share_jacobians(e_delta: FloatArray, exp_mu: FloatArray, outside: FloatArray,
                           weights: FloatArray, x2: FloatArray, variables: FloatArray,
                           rows: IntArray, columns: IntArray, product_sizes: IntArray,
                           agent_sizes: IntArray) -> tuple[FloatArray, FloatArray, float]:
    """(T_b, J, J) d s / d delta and (T_b, J, P) d s / d theta, zero in padded slots, and
    max_i sqrt(w_i) / D_i.

    For non-negative weights; S and e_j e_k (S S')_jk are formed as they stand, so the caller
    checks that max E times the returned maximum, and exp(delta), are far from overflow (as
    ``share_jacobians`` does) and otherwise takes the numpy form. e_delta (T_b, J); exp_mu (T_b, J,
    I); outside, weights (T_b, I); x2 (T_b, J, K2); variables (T_b, I, V); rows, columns (P,);
    product_sizes, agent_sizes (T_b,) real J_t and I_t (padded slots trail each market).
    """
    ds_ddelta, ds_dtheta, largest = _share_jacobians(
        as_kernel_array(e_delta), as_kernel_array(exp_mu), as_kernel_array(outside),
        as_kernel_array(weights), as_kernel_array(x2), as_kernel_array(variables),
        as_kernel_array(rows, np.int64), as_kernel_array(columns, np.int64),
        as_kernel_array(product_sizes, np.int64), as_kernel_array(agent_sizes, np.int64))
    return ds_ddelta, ds_dtheta, float(largest)
