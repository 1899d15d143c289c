"""The Bertrand-Nash price fixed point of one market, compiled.

Morrow and Skerlos (2011): p = c + zeta(p),
zeta(p) = Lambda^{-1} (O * Gamma)(p - c) - Lambda^{-1} s,
with s_ij = exp(u_ij) / (1 + sum_k exp(u_ik)) at u_ij(p) = u_ij(p0) + alpha_i (p_j - p0_j),
Lambda_jj = sum_i w_i alpha_i s_ij and Gamma_jk = sum_i w_i alpha_i s_ij s_ik. The same
iteration as ``model.pricing`` (the numpy reference, kept for the Newton fallback), without
numpy's per-iteration overhead: a market of 24 products and 20 agents iterates in microseconds
instead of a Python loop's fraction of a millisecond. Status codes: 0 converged
(max_j |p_j^{k+1} - p_j^k| < tol), 1 iteration limit, 2 non-finite prices.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from blpdemand._types import FloatArray
from blpdemand.model.adjoint_compiled import as_kernel_array, compile_kernel, readonly

__all__ = ["zeta_fixed_point"]

_F1, _F2 = readonly(1), readonly(2)


@compile_kernel((_F2, _F1, _F1, _F1, _F1, _F1, _F2, numba.float64, numba.int64))
def _zeta(utility, alpha, weights, base, start, costs, ownership,  # type: ignore[no-untyped-def]
          tol, max_iterations):
    J, I = utility.shape
    prices = start.copy()
    new = np.empty(J)
    s_ij = np.empty((J, I))
    wa = np.empty((J, I))  # w_i alpha_i s_ij
    lam = np.empty(J)
    shares = np.empty(J)
    margin = np.empty(J)
    top = np.empty(I)
    total = np.empty(I)
    # the nonzero pattern of O (firms own a few products each): (O * Gamma) m costs
    # sum_j nnz_j I products instead of J^2 I
    starts = np.zeros(J + 1, dtype=np.int64)
    for j in range(J):
        count = 0
        for k in range(J):
            if ownership[j, k] != 0.0:
                count += 1
        starts[j + 1] = starts[j] + count
    columns = np.empty(starts[J], dtype=np.int64)
    values = np.empty(starts[J])
    for j in range(J):
        position = starts[j]
        for k in range(J):
            if ownership[j, k] != 0.0:
                columns[position] = k
                values[position] = ownership[j, k]
                position += 1
    for iteration in range(1, max_iterations + 1):
        for i in range(I):  # choice probabilities, shifted by the column maximum (>= 0)
            top[i] = 0.0
        for j in range(J):
            shift = prices[j] - base[j]
            for i in range(I):
                u = utility[j, i] + shift * alpha[i]
                s_ij[j, i] = u
                top[i] = max(top[i], u)
        for i in range(I):
            total[i] = math.exp(-top[i])
        for j in range(J):
            for i in range(I):
                e = math.exp(s_ij[j, i] - top[i])
                s_ij[j, i] = e
                total[i] += e
        for j in range(J):
            lam_j = 0.0
            share = 0.0
            for i in range(I):
                s = s_ij[j, i] / total[i]
                s_ij[j, i] = s
                wa[j, i] = weights[i] * alpha[i] * s
                lam_j += wa[j, i]
                share += weights[i] * s
            lam[j] = lam_j
            shares[j] = share
            margin[j] = prices[j] - costs[j]
        change = 0.0
        finite = True
        for j in range(J):
            value = 0.0
            for position in range(starts[j], starts[j + 1]):  # (O * Gamma)(p - c)
                k = columns[position]
                gamma = 0.0  # Gamma_jk = sum_i w_i alpha_i s_ij s_ik
                for i in range(I):
                    gamma += wa[j, i] * s_ij[k, i]
                value += values[position] * gamma * margin[k]
            value = costs[j] + (value - shares[j]) / lam[j]
            if not math.isfinite(value):
                finite = False
            new[j] = value
            change = max(change, abs(value - prices[j]))
        if not finite:
            return prices, 2, iteration
        for j in range(J):
            prices[j] = new[j]
        if change < tol:
            return prices, 0, iteration
    return prices, 1, max_iterations


def zeta_fixed_point(utility: FloatArray, alpha: FloatArray, weights: FloatArray,
                     base: FloatArray, start: FloatArray, costs: FloatArray,
                     ownership: FloatArray, tol: float, max_iterations: int
                     ) -> tuple[FloatArray, int, int]:
    """(prices (J,), status code, iterations) of p = c + zeta(p) from ``start`` in one market:
    utility (J, I) at prices ``base`` (J,), alpha and weights (I,), costs (J,), ownership (J, J)."""
    prices, status, iterations = _zeta(
        as_kernel_array(utility), as_kernel_array(alpha), as_kernel_array(weights),
        as_kernel_array(base), as_kernel_array(start), as_kernel_array(costs),
        as_kernel_array(ownership), float(tol), int(max_iterations))
    return np.asarray(prices, dtype=np.float64), int(status), int(iterations)
