"""The Bertrand-Nash price fixed point, compiled, for a block of markets at once.

Morrow and Skerlos (2011): p = c + zeta(p),
zeta(p) = Lambda^{-1} (O * Gamma)(p - c) - Lambda^{-1} s,
with s_ij = exp(u_ij) / (1 + sum_k exp(u_ik)) at u_ij(p) = u_ij(p0) + alpha_i (p_j - p0_j),
Lambda_jj = sum_i w_i alpha_i s_ij and Gamma_jk = sum_i w_i alpha_i s_ij s_ik. The same
iteration as ``model.pricing`` (the numpy reference, kept for the Newton fallback), without
numpy's per-iteration overhead, and one call for a whole block of markets of equal size
(T_b, J, I) instead of one per market. Products outside ``available`` leave the choice set.

(O * Gamma)(p - c) is formed as sum_i w_i alpha_i s_ij F_r(j),i with
F_r,i = sum_k O_rk s_ik (p_k - c_k) for each distinct row r of O: products of one owner share
a row, so a step costs about 2 J I products (plus J I exponentials, ``model.exp_compiled``)
instead of nnz(O) I.
Status codes: 0 converged (max_j |p_j^{k+1} - p_j^k| < tol), 1 iteration limit, 2 non-finite.
"""

from __future__ import annotations

import math

import numpy as np

from blpdemand._compiled import B1, F8, I8, as_kernel_array, compile_kernel, readonly
from blpdemand._types import BoolArray, FloatArray, IntArray
from blpdemand.model.exp_compiled import exp_into

__all__ = ["zeta_fixed_point", "zeta_fixed_points"]

_F1, _F2, _F3 = readonly(1), readonly(2), readonly(3)
_B2, _I1 = readonly(2, B1), readonly(1, I8)


@compile_kernel(inline="always")
def _ownership_rows(owner):  # type: ignore[no-untyped-def]
    """Distinct rows of O (J, J): the representative row of each product, and the nonzero
    pattern (CSR: starts, columns, values) of the representatives' rows."""
    J = owner.shape[0]
    representative = np.empty(J, dtype=np.int64)
    for j in range(J):
        representative[j] = j
        for r in range(j):
            if representative[r] != r:
                continue
            same = True
            for k in range(J):
                if owner[j, k] != owner[r, k]:
                    same = False
                    break
            if same:
                representative[j] = r
                break
    starts = np.zeros(J + 1, dtype=np.int64)
    for j in range(J):
        count = 0
        if representative[j] == j:
            for k in range(J):
                if owner[j, k] != 0.0:
                    count += 1
        starts[j + 1] = starts[j] + count
    columns = np.empty(starts[J], dtype=np.int64)
    values = np.empty(starts[J])
    for j in range(J):
        if representative[j] != j:
            continue
        position = starts[j]
        for k in range(J):
            if owner[j, k] != 0.0:
                columns[position] = k
                values[position] = owner[j, k]
                position += 1
    return representative, starts, columns, values


@compile_kernel(inline="always")
def _zeta_market(utility, alpha, weights, base,  # type: ignore[no-untyped-def]
                 prices, costs, owner, tol, max_iterations):
    """Iterate one market in place on ``prices`` (J,); returns (status code, iterations)."""
    J, I = utility.shape
    representative, starts, columns, values = _ownership_rows(owner)
    new = np.empty(J)
    s_ij = np.empty((J, I))  # u_ij - max_k u_ik, then s_ij
    e_ij = np.empty((J, I))  # exp(u_ij - max_k u_ik)
    wa = np.empty((J, I))  # w_i alpha_i s_ij
    firm = np.zeros((J, I))  # F_r,i of the representative rows
    lam = np.empty(J)
    shares = np.empty(J)
    margin = np.empty(J)
    top = np.empty(I)
    total = np.empty(I)
    flat_u = s_ij.reshape(J * I)
    flat_e = e_ij.reshape(J * I)
    for iteration in range(1, max_iterations + 1):
        for i in range(I):  # choice probabilities, shifted by the column maximum (>= 0)
            top[i] = 0.0
        for j in range(J):
            shift = prices[j] - base[j]
            for i in range(I):
                u = utility[j, i] + shift * alpha[i]
                s_ij[j, i] = u
                top[i] = max(top[i], u)
        for j in range(J):
            for i in range(I):
                s_ij[j, i] -= top[i]
        exp_into(flat_u, flat_e)
        for i in range(I):
            total[i] = math.exp(-top[i])
        for j in range(J):
            for i in range(I):
                total[i] += e_ij[j, i]
        for i in range(I):
            total[i] = 1.0 / total[i]
        for j in range(J):
            lam_j = 0.0
            share = 0.0
            for i in range(I):
                s = e_ij[j, i] * total[i]
                s_ij[j, i] = s
                wa[j, i] = weights[i] * alpha[i] * s
                lam_j += wa[j, i]
                share += weights[i] * s
            lam[j] = lam_j
            shares[j] = share
            margin[j] = prices[j] - costs[j]
        for r in range(J):  # F_r,i = sum_k O_rk s_ik (p_k - c_k)
            if representative[r] != r:
                continue
            for i in range(I):
                firm[r, i] = 0.0
            for position in range(starts[r], starts[r + 1]):
                k = columns[position]
                scale = values[position] * margin[k]
                for i in range(I):
                    firm[r, i] += scale * s_ij[k, i]
        change = 0.0
        finite = True
        for j in range(J):
            r = representative[j]
            value = 0.0  # [(O * Gamma)(p - c)]_j
            for i in range(I):
                value += wa[j, i] * firm[r, i]
            value = costs[j] + (value - shares[j]) / lam[j]
            if not math.isfinite(value):
                finite = False
            new[j] = value
            change = max(change, abs(value - prices[j]))
        if not finite:
            return 2, iteration
        for j in range(J):
            prices[j] = new[j]
        if change < tol:
            return 0, iteration
    return 1, max_iterations


@compile_kernel((_F3, _F2, _F2, _F2, _F2, _F2, _F3, _B2, F8, _I1))
def _zeta_block(utility, alpha, weights, base,  # type: ignore[no-untyped-def]
                start, costs, ownership, available, tol, max_iterations):
    T, _, I = utility.shape
    prices = start.copy()
    codes = np.zeros(T, dtype=np.int64)
    iterations = np.zeros(T, dtype=np.int64)
    for t in range(T):
        keep = np.flatnonzero(available[t])
        n = keep.size
        if n == 0:
            continue
        u = np.empty((n, I))
        b = np.empty(n)
        p = np.empty(n)
        c = np.empty(n)
        owner = np.empty((n, n))
        for a in range(n):
            j = keep[a]
            for i in range(I):
                u[a, i] = utility[t, j, i]
            b[a] = base[t, j]
            p[a] = start[t, j]
            c[a] = costs[t, j]
            for d in range(n):
                owner[a, d] = ownership[t, j, keep[d]]
        codes[t], iterations[t] = _zeta_market(u, alpha[t], weights[t], b, p, c, owner, tol,
                                               max_iterations[t])
        for a in range(n):
            prices[t, keep[a]] = p[a]
    return prices, codes, iterations


def zeta_fixed_points(utility: FloatArray, alpha: FloatArray, weights: FloatArray,
                      base: FloatArray, start: FloatArray, costs: FloatArray,
                      ownership: FloatArray, available: BoolArray, tol: float,
                      max_iterations: IntArray) -> tuple[FloatArray, IntArray, IntArray]:
    """(prices (T_b, J), status codes (T_b,), iterations (T_b,)) of p = c + zeta(p) from
    ``start`` in each market of a block: utility (T_b, J, I) at prices ``base`` (T_b, J), alpha
    and weights (T_b, I), costs (T_b, J), ownership (T_b, J, J), available (T_b, J) bool, an
    iteration limit per market (T_b,). Unavailable products keep their start values."""
    prices, codes, iterations = _zeta_block(
        as_kernel_array(utility), as_kernel_array(alpha), as_kernel_array(weights),
        as_kernel_array(base), as_kernel_array(start), as_kernel_array(costs),
        as_kernel_array(ownership), as_kernel_array(available, np.bool_), float(tol),
        as_kernel_array(max_iterations, np.int64))
    return (np.asarray(prices, dtype=np.float64), np.asarray(codes, dtype=np.int64),
            np.asarray(iterations, dtype=np.int64))


def zeta_fixed_point(utility: FloatArray, alpha: FloatArray, weights: FloatArray,
                     base: FloatArray, start: FloatArray, costs: FloatArray,
                     ownership: FloatArray, tol: float, max_iterations: int
                     ) -> tuple[FloatArray, int, int]:
    """(prices (J,), status code, iterations) of p = c + zeta(p) from ``start`` in one market:
    utility (J, I) at prices ``base`` (J,), alpha and weights (I,), costs (J,), ownership (J, J)."""
    J = np.shape(start)[0]
    prices, codes, iterations = zeta_fixed_points(
        np.asarray(utility)[None], np.asarray(alpha)[None], np.asarray(weights)[None],
        np.asarray(base)[None], np.asarray(start)[None], np.asarray(costs)[None],
        np.asarray(ownership)[None], np.ones((1, J), dtype=bool), tol,
        np.array([max_iterations], dtype=np.int64))
    return prices[0], int(codes[0]), int(iterations[0])
