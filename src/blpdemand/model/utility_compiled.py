"""exp(mu) for a padded block of markets in one compiled call (``model.utility``).

For each market t of a block, over its real products j < J_t and agents i < I_t only,

    mu_ji = sum_k x2_jk c_ik,   E_ji = exp(mu_ji - m_i),   outside_i = exp(-m_i),

with m_i = max(0, max_j mu_ji) when some mu_ji of the market exceeds ``shift_above`` and
m_i = 0 (no shift: outside_i = 1) otherwise; padded cells get E = 0 and outside = 1. The same
values as the numpy path of ``model.utility.exp_utility`` (one batched gemm and one exp), here
without numpy's five calls per market: on many small padded markets those calls were most of
the time (120 markets of 5-40 products and 50-400 agents: about 40% of an estimate). The
exponential is ``model.exp_compiled.exp_into`` (about one ulp).
"""

from __future__ import annotations

import numpy as np

from blpdemand._compiled import B1, F8, I8, as_kernel_array, compile_kernel, readonly, writable
from blpdemand._types import FloatArray, IntArray
from blpdemand.model.exp_compiled import exp_into, wide_vectors

__all__ = ["padded_exp_utility"]

_F3, _I1 = readonly(3), readonly(1, I8)
_W2, _W3 = writable(2), writable(3)


@compile_kernel(inline="always")
def _utility_row(x2, t, j, c, m, row):  # type: ignore[no-untyped-def]
    """row[:m] = mu_ji = sum_k x2_jk c_ki for i < m (c: (K2, I), one column of X2 a row)."""
    a = x2[t, j, 0]
    for i in range(m):
        row[i] = a * c[0, i]
    for k in range(1, c.shape[0]):
        a = x2[t, j, k]
        for i in range(m):
            row[i] += a * c[k, i]


@compile_kernel((_F3, _F3, _I1, _I1, _W3, _W2, B1, F8))
def _exp_utility(x2, coefficients, product_sizes,  # type: ignore[no-untyped-def]
                 agent_sizes, exp_mu, outside, clear, shift_above):
    """Fill exp_mu (T, J, I) and outside (T, I), the padded cells of exp_mu only if ``clear``;
    returns how many markets were shifted.

    Each market is formed unshifted, row by row in L1 (mu, then its exp written once); in the
    rare market where some mu_ji exceeds shift_above (or is NaN) it is formed again, shifted.
    """
    wide_vectors()  # mu's rows: elementwise, the same bits at any vector width
    T, _, I = exp_mu.shape
    K = x2.shape[2]
    c = np.empty((K, I))  # the market's coefficients, one contiguous row per column of X2
    shift = np.empty(I)
    row = np.empty(I)
    shifted = 0
    for t in range(T):
        n, m = product_sizes[t], agent_sizes[t]
        for k in range(K):
            for i in range(m):
                c[k, i] = coefficients[t, i, k]
        over = 0  # utilities above shift_above or NaN (a count vectorizes; a maximum did not)
        for j in range(n):
            _utility_row(x2, t, j, c, m, row)
            for i in range(m):
                over += not row[i] <= shift_above
            exp_into(row[:m], exp_mu[t, j, :m])
        if over:
            shifted += 1
            shift[:m] = 0.0
            for j in range(n):
                _utility_row(x2, t, j, c, m, row)
                for i in range(m):
                    shift[i] = max(shift[i], row[i])
            for i in range(m):
                row[i] = -shift[i]
            exp_into(row[:m], outside[t, :m])
            for j in range(n):
                _utility_row(x2, t, j, c, m, row)
                for i in range(m):
                    row[i] -= shift[i]
                exp_into(row[:m], exp_mu[t, j, :m])
        else:
            outside[t, :m] = 1.0
        outside[t, m:] = 1.0
        if clear:
            exp_mu[t, :n, m:] = 0.0
            exp_mu[t, n:] = 0.0
    return shifted


def padded_exp_utility(x2: FloatArray, coefficients: FloatArray, product_sizes: IntArray,
                       agent_sizes: IntArray, exp_mu: FloatArray, outside: FloatArray, *,
                       shift_above: float, clear: bool = True) -> int:
    """exp(mu) of a padded block into ``exp_mu`` and ``outside``; the number of shifted markets.

    x2 : (T_b, J, K2), coefficients : (T_b, I, K2), product_sizes and agent_sizes : (T_b,) real
    J_t and I_t (padded slots trail each market), exp_mu : (T_b, J, I) and outside : (T_b, I)
    C-contiguous float64 arrays, every cell of which is written, except exp_mu's padded cells
    when ``clear`` is False (they hold 0 already: the block's exp(mu) at an earlier theta;
    rewriting them was 6 MB of the 11 MB written per theta on the battery's unequal markets).
    """
    return int(_exp_utility(as_kernel_array(x2), as_kernel_array(coefficients),
                            as_kernel_array(product_sizes, np.int64),
                            as_kernel_array(agent_sizes, np.int64), exp_mu, outside,
                            bool(clear), float(shift_above)))
