"""One step of the RCNL contraction for a block of markets, compiled.

The damped map of ``solve.nested_loop`` (Grigolon and Verboven 2014),

    G(delta)_j = delta_j + lambda_g(j) [log s_obs,j - log s_j(delta)],

with the shares in the factored form of ``model.rcnl.block_nested_shares``: e_j =
exp(delta_j / lambda_g - c) (c the market's largest delta / lambda), E_ji = exp(mu_ij /
lambda_g - m_gi) (m_gi the nest's largest mu / lambda for agent i), A_gi = sum_{k in g} e_k E_ki,
log D_gi = c + m_gi + log A_gi, s_{g,i} = D_gi^lambda_g / (1 + sum_h D_hi^lambda_h) and
s_j = e_j sum_i w_i E_ji s_{g(j),i} / A_{g(j)i}. The same arithmetic as the numpy version in one
pass per agent with no temporaries of the block's size: numpy's dozen calls per step dominate
at a few agents per market. ``ok`` is False where a present nest's A_gi underflowed to zero or a
share is not positive: the caller then takes the log-sum-exp path.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from blpdemand._types import BoolArray, FloatArray, IntArray
from blpdemand.model.adjoint_compiled import as_kernel_array, compile_kernel, readonly

__all__ = ["nested_step", "prepared"]

_F1, _F2, _F3 = readonly(1), readonly(2), readonly(3)
_I2, _B2 = readonly(2, numba.int64), readonly(2, numba.boolean)


@compile_kernel((_F2, _F3, _F3, _I2, _B2, _F1, _F2, _F2, _F2))
def _step(x, E, m, codes, real, lam, weights, log_shares,  # type: ignore[no-untyped-def]
          lam_j):
    T, J, I = E.shape
    G = lam.shape[0]
    out = np.empty((T, J))
    ok = True
    e = np.empty(J)
    s = np.empty(J)
    A = np.empty(G)
    inclusive = np.empty(G)
    present = np.empty(G, dtype=np.bool_)
    for t in range(T):
        c = -np.inf
        for j in range(J):
            if real[t, j] and x[t, j] / lam_j[t, j] > c:
                c = x[t, j] / lam_j[t, j]
        if not math.isfinite(c):
            c = 0.0
        present[:] = False
        for j in range(J):
            s[j] = 0.0
            if real[t, j]:
                e[j] = math.exp(x[t, j] / lam_j[t, j] - c)
                present[codes[t, j]] = True
            else:
                e[j] = 0.0
        for i in range(I):
            A[:] = 0.0
            for j in range(J):
                if real[t, j]:
                    A[codes[t, j]] += e[j] * E[t, j, i]
            top = 0.0
            for g in range(G):
                inclusive[g] = -np.inf
                if present[g]:
                    if A[g] > 0.0:
                        inclusive[g] = lam[g] * (c + m[t, g, i] + math.log(A[g]))
                        top = max(top, inclusive[g])
                    else:
                        ok = False
            total = math.exp(-top)
            for g in range(G):
                if present[g] and A[g] > 0.0:
                    total += math.exp(inclusive[g] - top)
            log_denominator = top + math.log(total)
            for g in range(G):  # w_i s_{g,i} / A_gi, kept in A
                if present[g] and A[g] > 0.0:
                    A[g] = weights[t, i] * math.exp(inclusive[g] - log_denominator) / A[g]
                else:
                    A[g] = 0.0
            for j in range(J):
                if real[t, j]:
                    s[j] += E[t, j, i] * A[codes[t, j]]
        for j in range(J):
            if real[t, j]:
                share = e[j] * s[j]
                if not share > 0.0 or not math.isfinite(share):
                    ok = False
                    share = 1.0
                out[t, j] = x[t, j] + lam_j[t, j] * (log_shares[t, j] - math.log(share))
            else:
                out[t, j] = x[t, j] + lam_j[t, j] * log_shares[t, j]
    return out, ok


def nested_step(x: FloatArray, E: FloatArray, m: FloatArray, codes: IntArray, real: BoolArray,
                lam: FloatArray, weights: FloatArray, log_shares: FloatArray,
                lam_j: FloatArray) -> tuple[FloatArray, bool]:
    """(T_b, J) G(x) and whether every market resolved (module docstring). x, log_shares,
    lam_j : (T_b, J); E : (T_b, J, I); m : (T_b, G, I); codes : (T_b, J) nest codes; real :
    (T_b, J) product slots; lam : (G,); weights : (T_b, I). Every argument but x must already
    be as the kernel takes it (``prepared``): the contraction map prepares them once."""
    out, ok = _step(as_kernel_array(x), E, m, codes, real, lam, weights, log_shares, lam_j)
    return out, bool(ok)


def prepared(array: FloatArray | IntArray | BoolArray) -> FloatArray | IntArray | BoolArray:
    """``array`` C-contiguous in the kernel's dtype (float64, int64 or bool as it is)."""
    kind = {"b": np.bool_, "i": np.int64, "u": np.int64}.get(array.dtype.kind, np.float64)
    out: FloatArray | IntArray | BoolArray = as_kernel_array(array, kind)
    return out
