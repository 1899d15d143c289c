"""The supply side: Bertrand-Nash markups, marginal costs and their derivatives in theta.

Market t with ownership O_t (conduct) and d s / d p = Lambda - Gamma (``model.pricing``):

    eta_t = -(O_t * (ds_t/dp_t)')^{-1} s_t,      c_t = p_t - eta_t,
    f(c_jt) = x3_jt' gamma + omega_jt,           f(c) = c (linear) or log c (log costs)

(Berry, Levinsohn and Pakes 1995). Conduct: Bertrand (O_jk = 1 when j and k share an owner,
or partial ownership weights kappa), joint monopoly (O = 1), perfect competition (eta = 0).

Derivatives in theta (Sigma and Pi) hold the observed shares fixed: delta(theta) moves with
theta so that s(delta(theta), theta) = S (the implicit function theorem), so with
A = O * (ds/dp)' and A eta = -s,

    d eta / d theta_p = -A^{-1} (dA/dtheta_p eta + ds/dtheta_p),

where d u_ij / d theta_p = d delta_j / d theta_p + d mu_ij / d theta_p moves the choice
probabilities, d s_ij = s_ij (du_ij - sum_k s_ik du_ik), and the price coefficients alpha_i
move with theta_p directly. ``markup_jacobian`` forms d(ds_k/dp_j) for all P parameters at
once (memory O(P J I + P J^2) per market, for standard errors); ``markup_adjoint`` gives the
gradient's w' d eta / d theta for a block of markets in O(J^2 + J I) per market.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from blpdemand._types import AnyArray, BoolArray, FloatArray, IntArray
from blpdemand.model.pricing import (
    MarketDemand,
    block_share_jacobians,
    lambda_gamma,
    markups,
    ownership_matrix,
)


def conduct_ownership(firm_ids: AnyArray | None, J: int, conduct: str,
                      kappa: Mapping[tuple[object, object], float] | None = None) -> FloatArray:
    """(J, J) ownership of one market under ``conduct``: Bertrand from ``firm_ids`` (and partial
    ownership ``kappa``), joint monopoly (all ones), perfect competition (zeros: eta = 0)."""
    if conduct == "monopoly":
        return np.ones((J, J))
    if conduct == "perfect":
        return np.zeros((J, J))
    assert firm_ids is not None
    return ownership_matrix(firm_ids, kappa)


def market_markups(utility: FloatArray, prices: FloatArray, alpha: FloatArray,
                   weights: FloatArray, ownership: FloatArray,
                   market_id: object = None) -> FloatArray:
    """(J,) eta = -(O * ds/dp')^{-1} s in one market (zeros where O = 0, perfect competition).

    utility : (J, I) u_ij; prices : (J,); alpha : (I,) d u_ij / d p_j; weights : (I,).
    Raises DataError naming the market where the first-order conditions are singular.
    """
    if not np.any(ownership):
        return np.zeros(prices.shape[0])
    demand = MarketDemand(market_id=market_id, prices=prices, utility=utility, alpha=alpha,
                          weights=weights)
    return markups(demand, ownership)


def markup_jacobian(probabilities: FloatArray, weights: FloatArray, alpha: FloatArray,
                    ownership: FloatArray, eta: FloatArray, du: FloatArray,
                    dalpha: FloatArray) -> FloatArray:
    """(J, P) d eta / d theta in one market (module docstring).

    Parameters
    ----------
    probabilities : (J, I) s_ij; weights : (I,); alpha : (I,); ownership : (J, J);
    eta : (J,) markups; du : (P, J, I) d u_ij / d theta_p (through delta and mu);
    dalpha : (P, I) d alpha_i / d theta_p.
    """
    P, J = du.shape[0], probabilities.shape[0]
    if not np.any(ownership) or P == 0:
        return np.zeros((J, P))
    s = probabilities
    ds = s[None] * (du - np.sum(s[None] * du, axis=1, keepdims=True))  # (P, J, I)
    lam, gamma = lambda_gamma(s, weights, alpha)
    A = ownership * (np.diag(lam) - gamma).T
    wa = weights * alpha
    # d(ds_j/dp_k) = diag(sum_i w_i (dalpha_i s_ij + alpha_i ds_ij))
    #                - [s (w dalpha) + ds (w alpha)] s' - (s w alpha) ds'
    moved = s[None] * (weights[None] * dalpha)[:, None, :] + ds * wa[None, None, :]  # (P, J, I)
    d_jac = -np.matmul(moved, s.T[None]) - np.matmul((s * wa[None])[None], ds.transpose(0, 2, 1))
    j = np.arange(J)
    d_jac[:, j, j] += moved.sum(axis=2)
    d_shares = ds @ weights  # (P, J): zero at the contraction's delta, up to its tolerance
    dA = ownership[None] * d_jac.transpose(0, 2, 1)
    rhs = np.matmul(dA, eta[None, :, None])[:, :, 0] + d_shares  # (P, J)
    out: FloatArray = -np.linalg.solve(A, rhs.T)
    return out


def transform_costs(costs: FloatArray, kind: str,
                    bounds: tuple[float | None, float | None] | None = None
                    ) -> tuple[FloatArray, FloatArray, BoolArray]:
    """f(c), f'(c) and which costs were clipped, for linear or log costs.

    ``bounds`` (lo, hi) clip c first (either may be None), as users of other tools set; a clipped
    cost does not move with theta (f' = 0 there). Log costs of c <= 0 are NaN: the caller
    records the failure.
    """
    lo, hi = (None, None) if bounds is None else bounds
    clipped = np.zeros(costs.shape, dtype=bool)
    values = np.asarray(costs, dtype=np.float64)
    if lo is not None:
        clipped |= values < lo
        values = np.maximum(values, lo)
    if hi is not None:
        clipped |= values > hi
        values = np.minimum(values, hi)
    if kind == "linear":
        return values, np.where(clipped, 0.0, 1.0), clipped
    positive = values > 0
    safe = np.where(positive, values, 1.0)
    f = np.where(positive, np.log(safe), np.nan)
    derivative = np.where(clipped, 0.0, np.where(positive, 1.0 / safe, np.nan))
    return f, derivative, clipped


def markup_matrix(probabilities: FloatArray, weights: FloatArray, alpha: FloatArray,
                  ownership: FloatArray) -> FloatArray:
    """(T_b, J, J) A = O * (ds/dp)' for a block of markets of equal size, ds/dp = Lambda -
    Gamma; probabilities : (T_b, J, I); weights, alpha : (T_b, I); ownership : (T_b, J, J)."""
    jacobian = block_share_jacobians(probabilities, weights, alpha)
    A: FloatArray = ownership * jacobian.transpose(0, 2, 1)
    return A


def block_markups(probabilities: FloatArray, weights: FloatArray, alpha: FloatArray,
                  ownership: FloatArray) -> tuple[FloatArray, FloatArray]:
    """eta (T_b, J) and A = O * (ds/dp)' (T_b, J, J) for a block of markets of equal size,
    eta = -A^{-1} s by one batched solve (0 where O = 0: perfect competition).

    probabilities : (T_b, J, I); weights, alpha : (T_b, I); ownership : (T_b, J, J).
    Raises np.linalg.LinAlgError where some market's A is singular (the caller names it with
    ``market_markups``).
    """
    A = markup_matrix(probabilities, weights, alpha, ownership)
    j = np.arange(probabilities.shape[1])
    shares = np.matmul(probabilities, weights[:, :, None])[:, :, 0]
    competitive = ~np.any(ownership, axis=(1, 2))
    safe = np.where(competitive[:, None, None], np.eye(j.size)[None], A)
    eta = -np.linalg.solve(safe, shares[:, :, None])[:, :, 0]
    eta[competitive] = 0.0
    return eta, A


def markup_adjoint(probabilities: FloatArray, weights: FloatArray, alpha: FloatArray,
                   ownership: FloatArray, A: FloatArray, eta: FloatArray, w: FloatArray,
                   x2: FloatArray, variables: FloatArray, rows: IntArray, columns: IntArray,
                   dalpha: FloatArray) -> tuple[FloatArray, FloatArray]:
    """w' d eta / d theta = -(direct + r' d delta / d theta) for a block of markets, by one
    adjoint solve A' lambda = w per market instead of P, never forming a (P, J, I) array.

    With C_kj = lambda_j O_jk eta_k, a = C s, b = C' s (J, I), h_ik = C_kk - a_ik - b_ik,
    lambda' dA eta + lambda' ds = sum_i w_i [dalpha_i sum_k s_ik (C_kk - a_ik)
    + sum_k s_ik (alpha_i (h_ik - hbar_i) + lambda_k - lambdabar_i) du_ik], and du_ik =
    d delta_k + x2_k,row V_i,column: the d delta part is r' d delta / d theta (the caller
    adds r to the demand adjoint), the rest is ``direct``. Memory O(J^2 + J I) per market.

    Parameters
    ----------
    probabilities : (T_b, J, I); weights, alpha : (T_b, I); ownership, A : (T_b, J, J) (from
    ``block_markups``); eta, w : (T_b, J); x2 : (T_b, J, K2); variables : (T_b, I, V) agent
    variables [nu, y]; rows, columns : (P,) X2 column and variable column of each parameter;
    dalpha : (T_b, P, I) d alpha_i / d theta_p.

    Returns
    -------
    direct : (T_b, P); r : (T_b, J).
    """
    s = probabilities
    J = s.shape[1]
    competitive = ~np.any(ownership, axis=(1, 2))
    safe = np.where(competitive[:, None, None], np.eye(J)[None], A)
    lam = np.linalg.solve(safe.transpose(0, 2, 1), w[:, :, None])[:, :, 0]
    lam[competitive] = 0.0  # eta = 0 does not move: no contribution
    C = (lam[:, :, None] * ownership * eta[:, None, :]).transpose(0, 2, 1)  # lambda_j O_jk eta_k
    # R_ik = w_i s_ik (alpha_i (h_ik - hbar_i) + lambda_k - lambdabar_i) is never formed: with
    # sab = s * (a + b) (the only (J, I) temporary besides (C + C') s), its row sums and
    # x2' R come from one product [x2 d, x2, x2 lambda, d, lambda]' s and x2' sab
    sab = s * np.matmul(C + C.transpose(0, 2, 1), s)  # s_i' a_i = s_i' (a_i + b_i) / 2
    d = np.diagonal(C, axis1=1, axis2=2)
    K2 = x2.shape[2]
    L = np.concatenate([x2 * d[:, :, None], x2, x2 * lam[:, :, None], d[:, :, None],
                        lam[:, :, None]], axis=2)
    Y = np.matmul(L.transpose(0, 2, 1), s)  # (T_b, 3 K2 + 2, I)
    sab_sum = sab.sum(axis=1)
    hbar = Y[:, 3 * K2] - sab_sum  # sum_k s_ik h_ik, h = d - a - b
    q = Y[:, 3 * K2] - 0.5 * sab_sum  # sum_k s_ik (C_kk - a_ik)
    wa = weights * alpha
    wc = -weights * (Y[:, 3 * K2 + 1] + alpha * hbar)  # w_i (-lambdabar_i - alpha_i hbar_i)
    XR = ((Y[:, :K2] - np.matmul(x2.transpose(0, 2, 1), sab)) * wa[:, None]
          + Y[:, K2:2 * K2] * wc[:, None] + Y[:, 2 * K2:3 * K2] * weights[:, None])
    r = d * _matvec(s, wa) - _matvec(sab, wa) + _matvec(s, wc) + lam * _matvec(s, weights)
    direct = (np.matmul(dalpha, (weights * q)[:, :, None])[:, :, 0]
              + np.sum(variables[:, :, columns].transpose(0, 2, 1) * XR[:, rows], axis=2))
    return direct, r


def _matvec(M: FloatArray, v: FloatArray) -> FloatArray:
    """Batched M v: (T_b, J, I) x (T_b, I) -> (T_b, J)."""
    out: FloatArray = np.matmul(M, v[:, :, None])[:, :, 0]
    return out
