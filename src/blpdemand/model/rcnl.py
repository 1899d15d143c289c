"""The random-coefficients nested logit (RCNL) for a block of markets: choice probabilities and
the derivatives the inner loop needs.

Agent i's utility V_ij = delta_j + mu_ij carries a nested-logit error (Brenkers and Verboven
2006; Grigolon and Verboven 2014): with lambda_g = 1 - rho_g,

    s_ij = s_{j|g,i} s_{g,i},  s_{j|g,i} = exp(V_ij / lambda_g) / D_ig,
    D_ig = sum_{k in g} exp(V_ik / lambda_g),  s_{g,i} = D_ig^lambda_g / (1 + sum_h D_ih^lambda_h).

Its derivatives (k in nest h; 1{.} indicators):

    d s_ij / d V_ik = s_ij [1{j=k} / lambda_g - 1{g=h} (1/lambda_g - 1) s_{k|g,i} - s_ik],
    d log s_ij / d lambda_h = 1{g=h} [-(V_ij - Vbar_ih) / lambda_h^2 + I'_ih] - s_{h,i} I'_ih,

with Vbar_ih = sum_{k in h} s_{k|h,i} V_ik and I'_ih = log D_ih - Vbar_ih / lambda_h (the
derivative of the inclusive value lambda_h log D_ih). Shares are s_j = sum_i w_i s_ij.

Blocks are (T_b, J, I) as in ``model.utility``; padded product slots carry V = -inf (zero
probability) and padded agents weight 0. Nest codes are (T_b, J) in 0..G-1 (G nests in all).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from blpdemand._types import BoolArray, FloatArray, IntArray

#: Scaled utilities up to this size are exponentiated unshifted (exp(300) ~ 2e130).
PLAIN_EXP = 300.0


@dataclass(frozen=True, slots=True, eq=False)
class NestedProbabilities:
    """Agents' RCNL choice probabilities in a block and the pieces their derivatives reuse.

    Attributes
    ----------
    probabilities : (T_b, J, I) s_ij; within : (T_b, J, I) s_{j|g,i}.
    nest_shares : (T_b, G, I) s_{g,i}; log_D : (T_b, G, I) log D_ig (-inf for an empty nest).
    V : (T_b, J, I) utilities (0 in padded slots); lam_j : (T_b, J) lambda of each product's nest.
    onehot : (T_b, J, G) nest membership (False in padded slots).
    """

    probabilities: FloatArray
    within: FloatArray
    nest_shares: FloatArray
    log_D: FloatArray
    V: FloatArray
    lam_j: FloatArray
    onehot: BoolArray


def nest_membership(codes: IntArray, G: int, pad: BoolArray | None) -> BoolArray:
    """(T_b, J, G) 1{g(j) = g}, all False in padded product slots."""
    onehot: BoolArray = codes[:, :, None] == np.arange(G)[None, None, :]
    if pad is not None:
        onehot[pad] = False
    return onehot


def nested_probabilities(V: FloatArray, onehot: BoolArray, lam: FloatArray
                         ) -> NestedProbabilities:
    """s_ij and s_{j|g,i} of a block, overflow-safe (log-sum-exp within nests and across).

    V : (T_b, J, I) utilities delta_j + mu_ij; onehot : (T_b, J, G) membership (padded slots in
    no nest); lam : (G,) lambda_g = 1 - rho_g. Where every |V_ij / lambda_g| is at most
    ``PLAIN_EXP`` the exponentials are taken as they are; otherwise each nest is shifted by its
    largest scaled utility per agent.
    """
    real: BoolArray = np.asarray(onehot.any(axis=2))  # (T_b, J)
    membership = onehot.astype(np.float64)
    to_nests = membership.transpose(0, 2, 1)  # (T_b, G, J): sums within nests
    lam_j = np.where(real, membership @ lam, 1.0)  # (T_b, J)
    V = np.where(real[:, :, None], V, 0.0)
    scaled = V / lam_j[:, :, None]
    if np.abs(scaled).max(initial=0.0) <= PLAIN_EXP:
        exp_scaled = np.exp(scaled)
        if not real.all():
            exp_scaled *= real[:, :, None]
        with np.errstate(divide="ignore"):
            log_D = np.log(np.matmul(to_nests, exp_scaled))  # (T_b, G, I)
    else:
        top = np.stack([np.where(onehot[:, :, g][:, :, None], scaled, -np.inf).max(
            axis=1, initial=-np.inf) for g in range(lam.size)], axis=1)  # (T_b, G, I)
        top = np.where(np.isfinite(top), top, 0.0)
        exp_scaled = np.exp(scaled - membership @ top) * real[:, :, None]
        with np.errstate(divide="ignore"):
            log_D = top + np.log(np.matmul(to_nests, exp_scaled))
    inclusive = lam[None, :, None] * log_D
    shift = np.maximum(inclusive.max(axis=1, initial=0.0), 0.0)  # (T_b, I)
    log_denominator = shift + np.log(np.exp(-shift) + np.exp(inclusive - shift[:, None]).sum(1))
    nest_shares = np.exp(inclusive - log_denominator[:, None, :])
    finite_D = np.where(np.isfinite(log_D), log_D, 0.0)
    # s_{j|g} = exp(scaled_j - log D_g); s_ij = s_{j|g} s_g = exp(scaled_j - log D_g + log s_g)
    within = np.exp(scaled - membership @ finite_D) * real[:, :, None]
    probabilities = within * (membership @ nest_shares)
    return NestedProbabilities(probabilities=probabilities, within=within,
                               nest_shares=nest_shares, log_D=log_D, V=V, lam_j=lam_j,
                               onehot=onehot)


def nest_maxima(values: FloatArray, onehot: BoolArray) -> FloatArray:
    """(T_b, G, ...) max over the products of each nest of ``values`` (T_b, J, ...), 0 for a
    nest with no product in the market."""
    G = onehot.shape[2]
    shape = onehot.shape[:2] + (1,) * (values.ndim - 2)
    top = np.stack([np.where(onehot[:, :, g].reshape(shape), values, -np.inf).max(
        axis=1, initial=-np.inf) for g in range(G)], axis=1)
    out: FloatArray = np.where(np.isfinite(top), top, 0.0)
    return out


def block_nested_shares(e: FloatArray, E: FloatArray, membership: FloatArray, lam: FloatArray,
                        weights: FloatArray, log_shift: FloatArray
                        ) -> tuple[FloatArray, bool]:
    """(T_b, J) shares s_j = sum_i w_i s_ij in two reads of the (T_b, J, I) array, no
    exponential of it, and whether no nest's sum underflowed:

        D_ig = e^{c_gi} A_ig,  A_ig = sum_{k in g} e_k E_ki,  s_{g,i} = D_ig^lambda_g /
        (1 + sum_h D_ih^lambda_h),  s_j = e_j sum_i E_ji w_i s_{g(j),i} / A_{g(j)i}.

    e : (T_b, J) exp(delta / lambda - shift) (0 in padded slots); E : (T_b, J, I)
    exp(mu / lambda - shift) (each at most 1: shifted by their maxima within nests);
    log_shift : (T_b, G, I) c, the sum of those shifts; membership : (T_b, J, G) nest
    indicators; lam : (G,); weights : (T_b, I).
    """
    A = np.matmul(membership.transpose(0, 2, 1) * e[:, None, :], E)  # (T_b, G, I)
    present = np.asarray(membership.any(axis=1))[:, :, None]  # (T_b, G, 1)
    if np.any(present & (A <= 0)):  # every product of a nest underflowed: not resolvable here
        return np.zeros(e.shape), False
    with np.errstate(divide="ignore"):
        inclusive = np.where(present, lam[None, :, None] * (log_shift + np.log(A)), -np.inf)
    top = np.maximum(inclusive.max(axis=1, initial=0.0), 0.0)  # (T_b, I)
    log_denominator = top + np.log(np.exp(-top) + np.exp(inclusive - top[:, None]).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(present, np.exp(inclusive - log_denominator[:, None]) / A, 0.0)
    r *= weights[:, None, :]
    out: FloatArray = e * (np.matmul(E, r.transpose(0, 2, 1)) * membership).sum(axis=2)
    return out, True


def _codes(onehot: BoolArray) -> IntArray:
    """(T_b, J) nest code of each slot (0 in padded slots)."""
    out: IntArray = onehot.argmax(axis=2)
    return out


def nested_delta_jacobian(p: NestedProbabilities, weights: FloatArray) -> FloatArray:
    """(T_b, J, J) d s_j / d delta_k = sum_i w_i d s_ij / d V_ik."""
    weighted = p.probabilities * weights[:, None, :]
    same = np.matmul(p.onehot.astype(np.float64), p.onehot.transpose(0, 2, 1))  # (T_b, J, J)
    out: FloatArray = -np.matmul(weighted, p.probabilities.transpose(0, 2, 1))
    out -= same * (1.0 / p.lam_j - 1.0)[:, :, None] * np.matmul(weighted,
                                                                 p.within.transpose(0, 2, 1))
    j = np.arange(out.shape[1])
    out[:, j, j] += weighted.sum(axis=2) / p.lam_j
    return out


def nested_theta_jacobian(p: NestedProbabilities, weights: FloatArray, x2: FloatArray,
                          variables: FloatArray, rows: IntArray, columns: IntArray
                          ) -> FloatArray:
    """(T_b, J, P) d s_j / d theta_p for Sigma and Pi elements, dmu_ij / d theta_p =
    x2_j,rows[p] variables_i,columns[p] (see ``model.derivatives``)."""
    weighted = p.probabilities * weights[:, None, :]
    membership = p.onehot.astype(np.float64)
    out = np.empty((x2.shape[0], x2.shape[1], rows.size))
    for q, (r, c) in enumerate(zip(rows.tolist(), columns.tolist())):
        a = x2[:, :, r][:, :, None] * variables[:, :, c][:, None, :]  # (T_b, J, I) dmu/dtheta
        nest_sum = np.matmul(membership.transpose(0, 2, 1), p.within * a)  # (T_b, G, I)
        within_term = np.matmul(membership, nest_sum)  # (T_b, J, I): sum_{k in g(j)}
        total = (p.probabilities * a).sum(axis=1, keepdims=True)  # (T_b, 1, I)
        inner = a / p.lam_j[:, :, None] - (1.0 / p.lam_j - 1.0)[:, :, None] * within_term - total
        out[:, :, q] = (weighted * inner).sum(axis=2)
    return out


def nested_rho_jacobian(p: NestedProbabilities, weights: FloatArray, lam: FloatArray,
                        per_nest: bool) -> FloatArray:
    """(T_b, J, G) d s_j / d rho_g, or (T_b, J, 1) for one common rho (d lambda = -d rho)."""
    membership = p.onehot.astype(np.float64)
    V_bar = np.matmul(membership.transpose(0, 2, 1), p.within * p.V)  # (T_b, G, I)
    empty = p.nest_shares <= 0
    derivative = np.where(empty, 0.0, np.where(np.isfinite(p.log_D), p.log_D, 0.0)
                          - V_bar / lam[None, :, None])  # I'_ig
    codes = _codes(p.onehot)[:, :, None]
    own = (-(p.V - np.take_along_axis(V_bar, codes, axis=1)) / (p.lam_j ** 2)[:, :, None]
           + np.take_along_axis(derivative, codes, axis=1))  # (T_b, J, I)
    weighted = p.probabilities * weights[:, None, :]
    across = np.matmul(weighted, (p.nest_shares * derivative).transpose(0, 2, 1))  # (T_b, J, G)
    d_lambda = membership * (weighted * own).sum(axis=2)[:, :, None] - across
    out: FloatArray = -d_lambda if per_nest else -d_lambda.sum(axis=2, keepdims=True)
    return out
