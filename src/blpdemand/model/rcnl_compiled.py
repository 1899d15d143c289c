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

import numpy as np

from blpdemand._compiled import B1, I8, as_kernel_array, compile_kernel, readonly
from blpdemand._types import BoolArray, FloatArray, IntArray

__all__ = ["nested_jacobians", "nested_step", "prepared"]

_F1, _F2, _F3 = readonly(1), readonly(2), readonly(3)
_I1, _I2, _B2 = readonly(1, I8), readonly(2, I8), readonly(2, B1)


@compile_kernel((_F2, _F3, _F3, _I2, _B2, _F1, _F2, _F2, _F2))
def _step(x, E, m, codes, real, lam, weights, log_shares,  # type: ignore[no-untyped-def]
          lam_j):
    T, J, I = E.shape
    G = lam.shape[0]
    out = np.empty((T, J))
    ok = True
    e = np.empty(J)
    A = np.empty((G, I))  # A_gi, then w_i s_{g,i} / A_gi
    L = np.empty(G)  # one agent's inclusive values lambda_g log D_gi, then their exponentials
    present = np.empty(G, dtype=np.bool_)
    for t in range(T):
        c = -np.inf
        for j in range(J):
            if real[t, j] and x[t, j] / lam_j[t, j] > c:
                c = x[t, j] / lam_j[t, j]
        if not math.isfinite(c):
            c = 0.0
        present[:] = False
        A[:, :] = 0.0
        for j in range(J):  # A_gi = sum_{k in g} e_k E_ki: rows of E read in order
            if real[t, j]:
                e[j] = math.exp(x[t, j] / lam_j[t, j] - c)
                g = codes[t, j]
                present[g] = True
                for i in range(I):
                    A[g, i] += e[j] * E[t, j, i]
        for i in range(I):  # nest shares s_{g,i}, overflow-safe across nests: one log and
            top = 0.0  # one exp per (g, i), the inclusive values kept in L
            for g in range(G):
                L[g] = -np.inf
                if present[g]:
                    if A[g, i] > 0.0:
                        L[g] = lam[g] * (c + m[t, g, i] + math.log(A[g, i]))
                        top = max(top, L[g])
                    else:
                        ok = False
            total = math.exp(-top)
            for g in range(G):
                L[g] = math.exp(L[g] - top) if L[g] > -np.inf else 0.0
                total += L[g]
            for g in range(G):  # w_i s_{g,i} / A_gi
                A[g, i] = weights[t, i] * L[g] / total / A[g, i] if L[g] > 0.0 else 0.0
        for j in range(J):  # s_j = e_j sum_i E_ji w_i s_{g(j),i} / A_{g(j)i}
            if real[t, j]:
                g = codes[t, j]
                total = 0.0
                for i in range(I):
                    total += E[t, j, i] * A[g, i]
                share = e[j] * total
                if not share > 0.0 or not math.isfinite(share):
                    ok = False
                    share = 1.0
                out[t, j] = x[t, j] + lam_j[t, j] * (log_shares[t, j] - math.log(share))
            else:
                out[t, j] = x[t, j] + lam_j[t, j] * log_shares[t, j]
    return out, ok


@compile_kernel((_F3, _I2, _B2, _F1, _F2, _F3, _F3, _I1, _I1, B1))
def _jacobians(V, codes, real, lam, weights, x2, variables,  # type: ignore[no-untyped-def]
               rows, columns, per_nest):
    T, J, I = V.shape
    G = lam.shape[0]
    Q = rows.shape[0]
    R = G if per_nest else 1
    ds_ddelta = np.zeros((T, J, J))
    ds_dtheta = np.zeros((T, J, Q + R))
    scaled = np.empty(J)
    within = np.empty(J)
    s = np.empty(J)
    a = np.empty(J)
    top = np.empty(G)
    D = np.empty(G)  # sum_{k in g} exp(V_k / lambda_g - top_g), then nest shares
    log_D = np.empty(G)
    V_bar = np.empty(G)
    slope = np.empty(G)  # I'_g = log D_g - V_bar_g / lambda_g
    sums = np.empty(G)
    for t in range(T):
        for i in range(I):
            w = weights[t, i]
            if w == 0.0:
                continue
            top[:] = -np.inf
            for j in range(J):
                if real[t, j]:
                    g = codes[t, j]
                    scaled[j] = V[t, j, i] / lam[g]
                    top[g] = max(top[g], scaled[j])
            D[:] = 0.0
            for j in range(J):
                if real[t, j]:
                    g = codes[t, j]
                    within[j] = math.exp(scaled[j] - top[g])
                    D[g] += within[j]
            best = 0.0  # the outside good's inclusive value
            for g in range(G):
                if D[g] > 0.0:
                    log_D[g] = top[g] + math.log(D[g])
                    best = max(best, lam[g] * log_D[g])
            total = math.exp(-best)
            for g in range(G):
                if D[g] > 0.0:
                    total += math.exp(lam[g] * log_D[g] - best)
            V_bar[:] = 0.0
            for j in range(J):
                if real[t, j]:
                    within[j] /= D[codes[t, j]]
            for g in range(G):
                D[g] = math.exp(lam[g] * log_D[g] - best) / total if D[g] > 0.0 else 0.0
            for j in range(J):
                if real[t, j]:
                    g = codes[t, j]
                    s[j] = within[j] * D[g]
                    V_bar[g] += within[j] * V[t, j, i]
            for g in range(G):
                slope[g] = log_D[g] - V_bar[g] / lam[g] if D[g] > 0.0 else 0.0
            # d s_j / d delta_k = sum_i w_i s_ij [1{j=k} / lambda_g - 1{g=h} (1/lambda_g - 1)
            #                     s_{k|g,i} - s_ik]
            for j in range(J):
                if not real[t, j]:
                    continue
                g = codes[t, j]
                ws = w * s[j]
                factor = 1.0 / lam[g] - 1.0
                for k in range(J):
                    if real[t, k]:
                        value = -s[k]
                        if codes[t, k] == g:
                            value -= factor * within[k]
                        ds_ddelta[t, j, k] += ws * value
                ds_ddelta[t, j, j] += ws / lam[g]
            # Sigma and Pi: d mu_ij / d theta_q = x2_j,rows[q] variables_i,columns[q]
            for q in range(Q):
                v = variables[t, i, columns[q]]
                mean = 0.0
                sums[:] = 0.0
                for j in range(J):
                    if real[t, j]:
                        a[j] = x2[t, j, rows[q]] * v
                        mean += s[j] * a[j]
                        sums[codes[t, j]] += within[j] * a[j]
                for j in range(J):
                    if real[t, j]:
                        g = codes[t, j]
                        inner = a[j] / lam[g] - (1.0 / lam[g] - 1.0) * sums[g] - mean
                        ds_dtheta[t, j, q] += w * s[j] * inner
            # rho: d s_ij / d lambda_h = s_ij (1{g=h} own_j - s_{h,i} I'_h), d lambda = -d rho
            across = 0.0
            for g in range(G):
                across += D[g] * slope[g]
            for j in range(J):
                if real[t, j]:
                    g = codes[t, j]
                    own = -(V[t, j, i] - V_bar[g]) / lam[g] ** 2 + slope[g]
                    ws = w * s[j]
                    if per_nest:
                        for h in range(G):
                            ds_dtheta[t, j, Q + h] += ws * D[h] * slope[h]
                        ds_dtheta[t, j, Q + g] -= ws * own
                    else:
                        ds_dtheta[t, j, Q] += ws * (across - own)
    return ds_ddelta, ds_dtheta


def nested_jacobians(V: FloatArray, codes: IntArray, real: BoolArray, lam: FloatArray,
                     weights: FloatArray, x2: FloatArray, variables: FloatArray,
                     rows: IntArray, columns: IntArray, per_nest: bool
                     ) -> tuple[FloatArray, FloatArray]:
    """(T_b, J, J) d s / d delta and (T_b, J, Q + R) d s / d [theta_q..., rho] of a block, in
    one pass per agent (``model.rcnl``'s nested_delta_jacobian, nested_theta_jacobian and
    nested_rho_jacobian, without their (T_b, J, I) temporaries). V : (T_b, J, I) utilities
    delta + mu; d mu_ij / d theta_q = x2_j,rows[q] variables_i,columns[q]; R = G rho per nest
    (``per_nest``) or one common rho."""
    out: tuple[FloatArray, FloatArray] = _jacobians(
        prepared(V), prepared(codes), prepared(real), prepared(lam), prepared(weights),
        prepared(x2), prepared(variables), prepared(rows), prepared(columns), bool(per_nest))
    return out


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
