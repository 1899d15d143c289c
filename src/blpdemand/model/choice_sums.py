"""Expectations over first and second choices of factored values, and their derivatives.

When j is not available, agent i chooses k with probability s_ik(-j) = s_ik / (1 - s_ij)
(logit errors; Berry, Levinsohn and Pakes 2004), so a survey of (first j, second k) choices
weights (i, j, k) by w_i s_ij s_ik / (1 - s_ij), k != j. For values that factor as
A_ijk = a_i c_j e_k (the declarative parts: agent, first-choice and second-choice factors,
j, k = 0 the outside option), with g_j = s_j / (1 - s_j) and Se = sum_k e_k s_k, one agent's
sum is

    X = sum_j c_j g_j (Se - e_j s_j),

and, with d s_j / d V_l = s_j (1[j = l] - s_l) for the utility V_l of an inside good l,

    d X / d V_l = s_l [c_l g'_l (Se - e_l s_l) - c_l g_l e_l - H1 + (e_l - Se) H2 + H3],

H1 = sum_j c_j g'_j s_j (Se - e_j s_j), H2 = sum_j c_j g_j, H3 = sum_j c_j g_j e_j s_j, g' =
1 / (1 - s)^2: O(I J) per row, never the (I, J, J) array.
"""

from __future__ import annotations

import numpy as np

from blpdemand._types import FloatArray


def second_choice_sums(S: FloatArray, a: FloatArray, c: FloatArray, e: FloatArray
                       ) -> FloatArray:
    """X_ri = a_ri sum_j c_rj g_ij (Se_ri - e_rj s_ij): S (I, 1 + J) probabilities [s_i0, s_ij],
    a (R, I), c and e (R, 1 + J) -> (R, I)."""
    g = S / (1.0 - S)
    Se = e @ S.T  # (R, I)
    first = (g * Se[:, :, None]) @ c[:, :, None]  # sum_j c_j g_j Se
    second = (g * S) @ (c * e).T  # (I, R): sum_j c_j e_j g_j s_j
    out: FloatArray = a * (first[:, :, 0] - second.T)
    return out


def second_choice_derivatives(S: FloatArray, a: FloatArray, c: FloatArray, e: FloatArray
                              ) -> FloatArray:
    """d X_ri / d V_il for the inside goods l (module docstring): (R, I, J)."""
    g = S / (1.0 - S)
    gp = 1.0 / (1.0 - S) ** 2
    Se = e @ S.T  # (R, I)
    rest = Se[:, :, None] - e[:, None, :] * S[None]  # (R, I, 1 + J): Se - e_j s_j
    H1 = np.einsum("rj,ij,rij->ri", c, gp * S, rest)
    H2 = g @ c.T  # (I, R)
    H3 = (g * S) @ (c * e).T  # (I, R)
    inside = slice(1, None)
    term = (c[:, None, inside] * gp[None, :, inside] * rest[:, :, inside]
            - c[:, None, inside] * g[None, :, inside] * e[:, None, inside]
            - H1[:, :, None]
            + (e[:, None, inside] - Se[:, :, None]) * H2.T[:, :, None]
            + H3.T[:, :, None])
    out: FloatArray = a[:, :, None] * S[None, :, inside] * term
    return out


def first_choice_sums(S: FloatArray, a: FloatArray, c: FloatArray) -> FloatArray:
    """X_ri = a_ri sum_j c_rj s_ij for factored values A_rij = a_ri c_rj: (R, I)."""
    out: FloatArray = a * (c @ S.T)
    return out


def first_choice_terms(S: FloatArray, w: FloatArray, a: FloatArray, c: FloatArray,
                       x2: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The delta and direct channels of d E_r for factored first-choice values.

    With B_ril = s_il (a_ri c_rl - abar_ri), abar_ri = a_ri sum_j c_rj s_ij (l >= 1):
    returns sum_i w_i B_ril (R, J) and sum_j B_rij x2_jk weighted by w_i, (I, R, K2), whose
    product with the agents' variables gives the direct channel; never the (R, I, J) array.
    """
    inside = S[:, 1:]
    wa = w[None, :] * a
    wabar = wa * (c @ S.T)
    through_delta = c[:, 1:] * (wa @ inside) - wabar @ inside
    R, J, K2 = c.shape[0], inside.shape[1], x2.shape[1]
    scaled = (c[:, 1:, None] * x2[None]).transpose(1, 0, 2).reshape(J, R * K2)
    G = (inside @ scaled).reshape(-1, R, K2) * wa.T[:, :, None]
    G -= wabar.T[:, :, None] * (inside @ x2)[:, None, :]
    return through_delta, G
