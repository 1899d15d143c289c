"""The BLP contraction with Anderson acceleration, compiled, one market at a time.

delta <- G(delta) = delta + log s_obs - log s(delta; theta), accelerated by type-II Anderson
with m past steps (Walker and Ni 2011):

    gamma = argmin || f_k - dF gamma ||,   x_{k+1} = G(x_k) - dG gamma,

where f_k = G(x_k) - x_k and the columns of dF, dG are differences of successive f and G.

Why a compiled kernel: a market's exp(mu) (J x I, 240 KB on BLP 1995, 400 KB for 50 x 1,000)
fits in the core's L2 cache. Here each market is iterated to convergence on its own, so every
share evaluation after the first reads exp(mu) from L2, and the per-step bookkeeping (the least
squares, the residual, the safeguards) costs a few hundred arithmetic operations instead of
some 30 numpy calls on the whole block. The numpy solvers in ``solve.fixed_point`` are the
reference; ``FixedPointConfig(compiled=False)`` selects them. Kernels are compiled with numba
for one signature when this module is imported (loaded from the disk cache after the first
time), release the GIL, and use ``fastmath`` only for reassociation and fused multiply-add (so
sums vectorize); non-finite values keep their IEEE meaning
(``blpdemand._compiled.compile_kernel``).

Shares per market (``model.shares``): D_i = c_i + sum_j e_j E_ji, s_j = e_j sum_i E_ji w_i / D_i.

Safeguards, as in the numpy Anderson: a step whose residual is not finite or 10 times the best
so far is undone (history forgotten, a plain step taken from the last point); a second one in a
row fails the market (NONFINITE); a market whose best residual has not improved over 4 m steps
stops (MAX_EVALUATIONS), so that "auto" can solve it again with SQUAREM.
"""

from __future__ import annotations

import math

import numpy as np

from blpdemand._compiled import F8, I8, as_kernel_array, compile_kernel, readonly
from blpdemand._types import FloatArray, IntArray
from blpdemand.model.sweeps_compiled import column_sums, row_dots
from blpdemand.solve.fixed_point import ULPS, FixedPointConfig, FixedPointResult

__all__ = ["solve_markets"]

@compile_kernel(inline="always")
def _shares(E, outside, weights, e, J, I, D, s):  # type: ignore[no-untyped-def]
    """s_j = e_j sum_i E_ji w_i / D_i with D_i = c_i + sum_j e_j E_ji: the two sweeps over E
    that the adjoint makes too (``model.sweeps_compiled.column_sums`` and ``row_dots``)."""
    for i in range(I):
        D[i] = outside[i]
    column_sums(E, e, J, I, D)
    for i in range(I):
        D[i] = weights[i] / D[i]
    row_dots(E, D, e, J, I, s)


@compile_kernel(inline="always")
def _contraction(E, outside, weights, shares, x, J, I, D, s, e, g):  # type: ignore[no-untyped-def]
    """g = G(x) = x + log(s_obs / s(x)); returns max_j |g_j - x_j| (NaN/inf if broken) and
    max_j |x_j|.

    The step is log(s_obs / s), accurate to about eps absolute: log s_obs - log s would round
    at the ulp of |log s| (2.8e-14 for shares near 1e-100), above tol.
    """
    for j in range(J):
        e[j] = math.exp(x[j])
    _shares(E, outside, weights, e, J, I, D, s)
    norm = top = 0.0
    for j in range(J):
        g[j] = x[j] + math.log(shares[j] / s[j])
        change = abs(g[j] - x[j])
        if not change <= norm and not math.isnan(norm):  # takes a NaN change, and keeps it
            norm = change
        top = max(top, abs(x[j]))
    return norm, top


@compile_kernel(inline="always")
def _gram_row(dF, slot, m, J, gram):  # type: ignore[no-untyped-def]
    """gram[a, c] = dF_a . dF_c (a >= c) for the pairs with the new column ``slot`` among the
    m kept: the other pairs are unchanged since the last step, so kept, not summed again."""
    for c in range(m):
        a, d = max(slot, c), min(slot, c)
        total = 0.0
        for j in range(J):
            total += dF[a, j] * dF[d, j]
        gram[a, d] = total


@compile_kernel(inline="always")
def _mixing(dF, f, m, J, gram, A, b, gamma):  # type: ignore[no-untyped-def]
    """gamma = (dF dF' + ridge)^{-1} dF f by Cholesky (m x m) from the kept Gram matrix
    ``gram`` (lower triangle); zeros if not positive definite."""
    for a in range(m):
        total = 0.0
        for j in range(J):
            total += dF[a, j] * f[j]
        b[a] = total
        for c in range(a + 1):
            A[a, c] = gram[a, c]
        A[a, a] = A[a, a] * (1.0 + 1e-10) + 1e-300
    for a in range(m):
        pivot = A[a, a]
        for k in range(a):
            pivot -= A[a, k] * A[a, k]
        if not pivot > 0.0:
            for c in range(m):
                gamma[c] = 0.0
            return
        pivot = math.sqrt(pivot)
        A[a, a] = pivot
        for r in range(a + 1, m):
            total = A[r, a]
            for k in range(a):
                total -= A[r, k] * A[a, k]
            A[r, a] = total / pivot
    for a in range(m):
        total = b[a]
        for k in range(a):
            total -= A[a, k] * gamma[k]
        gamma[a] = total / A[a, a]
    for a in range(m - 1, -1, -1):
        total = gamma[a]
        for k in range(a + 1, m):
            total -= A[k, a] * gamma[k]
        gamma[a] = total / A[a, a]


_F2, _I1 = readonly(2), readonly(1, I8)


@compile_kernel((readonly(3), _F2, _F2, _F2, _I1, _I1, _F2, F8, I8, I8))
def _anderson_markets(exp_mu, outside, weights, shares,  # type: ignore[no-untyped-def]
                      product_sizes, agent_sizes, x0, tol, max_evaluations, memory):
    T, J_max, I_max = exp_mu.shape
    out = x0.copy()
    codes = np.ones(T, np.int64)
    evaluations = np.zeros(T, np.int64)
    change = np.full(T, np.inf)
    D, s, e = np.empty(I_max), np.empty(J_max), np.empty(J_max)
    x, g, f = np.empty(J_max), np.empty(J_max), np.empty(J_max)
    x_new, g_new = np.empty(J_max), np.empty(J_max)
    dF, dG = np.zeros((memory, J_max)), np.zeros((memory, J_max))
    A, b, gamma = np.empty((memory, memory)), np.empty(memory), np.empty(memory)
    gram = np.empty((memory, memory))
    patience = 4 * memory
    for t in range(T):
        J, I = product_sizes[t], agent_sizes[t]
        E, c, w, ls = exp_mu[t], outside[t], weights[t], shares[t]
        for j in range(J):
            x[j] = x0[t, j]
        norm, top = _contraction(E, c, w, ls, x, J, I, D, s, e, g)
        count, code = 1, 1
        if norm < max(tol, ULPS * top):
            code = 0
        elif not norm < np.inf:
            code = 2
        for j in range(J):
            f[j] = g[j] - x[j]
        best = checkpoint = norm
        columns, slot, steps, restarted = 0, 0, 0, False
        while code == 1 and count < max_evaluations:
            if columns:
                _mixing(dF, f, columns, J, gram, A, b, gamma)
                for j in range(J):
                    total = g[j]
                    for a in range(columns):
                        total -= gamma[a] * dG[a, j]
                    x_new[j] = total
            else:
                for j in range(J):
                    x_new[j] = g[j]
            norm_new, top = _contraction(E, c, w, ls, x_new, J, I, D, s, e, g_new)
            count += 1
            steps += 1
            if norm_new < max(tol, ULPS * top):
                for j in range(J):
                    g[j] = g_new[j]
                norm, code = norm_new, 0
                break
            if not norm_new <= 10.0 * best:  # blown up (or not finite): undo, forget, plain step
                if restarted:
                    code = 2
                    break
                columns, slot, restarted = 0, 0, True
            else:
                for j in range(J):
                    f_new = g_new[j] - x_new[j]
                    dF[slot, j] = f_new - f[j]
                    dG[slot, j] = g_new[j] - g[j]
                    f[j], g[j], x[j] = f_new, g_new[j], x_new[j]
                columns = min(columns + 1, memory)
                _gram_row(dF, slot, columns, J, gram)
                slot = (slot + 1) % memory
                norm, restarted = norm_new, False
                best = min(best, norm_new)
            if steps % patience == 0:
                if not best < checkpoint:
                    break  # stalled: MAX_EVALUATIONS, for the caller's fallback
                checkpoint = best
        if code == 0 or norm < np.inf:
            for j in range(J):
                out[t, j] = g[j]
        codes[t], evaluations[t], change[t] = code, count, norm
    return out, codes, evaluations, change


def solve_markets(exp_mu: FloatArray, outside: FloatArray, weights: FloatArray,
                  shares: FloatArray, product_sizes: IntArray, agent_sizes: IntArray,
                  x0: FloatArray, config: FixedPointConfig) -> FixedPointResult:
    """Solve delta = G(delta) market by market for one block (see the module docstring).

    Parameters
    ----------
    exp_mu : (T_b, J, I) exp(mu_ji - m_i); outside : (T_b, I) exp(-m_i); weights : (T_b, I).
    shares : (T_b, J) s_obs (any positive value in padded slots).
    product_sizes, agent_sizes : (T_b,) real J_t and I_t (padded slots trail each market).
    x0 : (T_b, J) starting delta; padded slots are returned unchanged.
    config : tolerance, evaluation budget and Anderson memory.

    Returns
    -------
    FixedPointResult, as the numpy solvers return it.
    """
    c = as_kernel_array
    x, codes, evaluations, change = _anderson_markets(
        c(exp_mu), c(outside), c(weights), c(shares), c(product_sizes, np.int64),
        c(agent_sizes, np.int64), c(x0), float(config.tol), int(config.max_evaluations),
        int(config.memory))
    return FixedPointResult(x=x, codes=codes, evaluations=evaluations, change=change)
