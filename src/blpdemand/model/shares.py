"""Choice probabilities and market shares of the random-coefficients logit, for a block of markets.

s_ijt = exp(delta_jt + mu_ijt) / (1 + sum_k exp(delta_kt + mu_ikt)),  s_jt = sum_i w_it s_ijt
(Berry, Levinsohn and Pakes 1995, eq. 2.7). With E_ji = exp(mu_ji - m_i), c_i = exp(-m_i) and
e_j = exp(delta_j) (see ``model.utility``):

    D_i = c_i + sum_j e_j E_ji,    s_j = e_j sum_i E_ji (w_i / D_i),

two matrix-vector products per market (one batched ``matmul`` each over the block), so shares
cost two reads of exp(mu) and no exponential of a (J, I) array.
"""

from __future__ import annotations

import numpy as np

from blpdemand._types import FloatArray
from blpdemand.model.utility import ExpUtility


def denominators(e_delta: FloatArray, utility: ExpUtility) -> FloatArray:
    """D_i = c_i + sum_j e_j E_ji: e_delta (T_b, J) -> (T_b, I)."""
    out: FloatArray = utility.outside + np.matmul(e_delta[:, None, :], utility.exp_mu)[:, 0, :]
    return out


def block_shares(e_delta: FloatArray, utility: ExpUtility) -> FloatArray:
    """Market shares s_j = e_j sum_i E_ji w_i / D_i: e_delta (T_b, J) -> (T_b, J).

    Padded product slots get share 0; padded agents have weight 0.
    """
    ratio = np.matmul(e_delta[:, None, :], utility.exp_mu)[:, 0, :]
    ratio += utility.outside
    np.divide(utility.weights, ratio, out=ratio)
    out: FloatArray = np.matmul(utility.exp_mu, ratio[:, :, None])[:, :, 0]
    out *= e_delta
    return out


def choice_probabilities(e_delta: FloatArray, utility: ExpUtility) -> FloatArray:
    """Individual choice probabilities s_ji: e_delta (T_b, J) -> (T_b, J, I)."""
    inverse = 1.0 / np.maximum(denominators(e_delta, utility), np.finfo(np.float64).tiny)
    out = utility.exp_mu * e_delta[:, :, None]
    out *= inverse[:, None, :]
    return out


def shares_from_probabilities(probabilities: FloatArray, weights: FloatArray) -> FloatArray:
    """s_j = sum_i w_i s_ji: probabilities (T_b, J, I), weights (T_b, I) -> (T_b, J)."""
    out: FloatArray = np.matmul(probabilities, weights[:, :, None])[:, :, 0]
    return out
