"""Derivatives of shares and of the inverted delta, batched over a block of markets.

With s_ji the choice probabilities and w_i the weights (Berry, Levinsohn and Pakes 1995;
Nevo 2000, appendix):

    d s_j / d delta_k = sum_i w_i s_ji (1[j = k] - s_ki)                         (T_b, J, J)
    d s_j / d theta_p = sum_i w_i s_ji (dmu_ji - sum_k s_ki dmu_ki)                 (T_b, J, P)

where for theta_p = Sigma[r, c], dmu_ji = x2_jr nu_ic, and for theta_p = Pi[r, d],
dmu_ji = x2_jr y_id. With xbar_ir = sum_k s_ki x2_kr and V = [nu, y],
d s_j / d theta_p = x2_jr (s w V)_jc - (s w (xbar_r * V_c))_j: two batched matmuls for all
parameters. The implicit function theorem gives d delta / d theta = -(ds/ddelta)^{-1} ds/dtheta,
one batched ``np.linalg.solve`` over the block.
"""

from __future__ import annotations

from typing import cast

import numpy as np

from blpdemand._types import BoolArray, FloatArray, IntArray


def share_delta_jacobian(probabilities: FloatArray, weights: FloatArray) -> FloatArray:
    """d s / d delta = diag(s) - (s w) s': probabilities (T_b, J, I), weights (T_b, I) -> (T_b, J, J)."""
    weighted = probabilities * weights[:, None, :]
    out: FloatArray = -np.matmul(weighted, probabilities.transpose(0, 2, 1))
    j = np.arange(out.shape[1])
    out[:, j, j] += weighted.sum(axis=2)
    return out


def share_theta_jacobian(probabilities: FloatArray, weights: FloatArray, x2: FloatArray,
                         variables: FloatArray, rows: IntArray, columns: IntArray) -> FloatArray:
    """d s / d theta for parameters acting through dmu_ji = x2_j,rows[p] * variables_i,columns[p].

    Parameters
    ----------
    probabilities : (T_b, J, I) s_ji; weights : (T_b, I).
    x2 : (T_b, J, K2) nonlinear characteristics.
    variables : (T_b, I, V) agent variables [nu, y] (nodes, then demographics).
    rows, columns : (P,) X2 column and variable column of each parameter.

    Returns
    -------
    (T_b, J, P) d s_j / d theta_p.
    """
    weighted = probabilities * weights[:, None, :]
    xbar = np.matmul(probabilities.transpose(0, 2, 1), x2)  # (T_b, I, K2)
    interacted = xbar[:, :, rows] * variables[:, :, columns]  # (T_b, I, P)
    first = np.matmul(weighted, variables)  # (T_b, J, V)
    out: FloatArray = x2[:, :, rows] * first[:, :, columns] - np.matmul(weighted, interacted)
    return out


def delta_theta_jacobian(ds_ddelta: FloatArray, ds_dtheta: FloatArray,
                         pad: BoolArray | None = None) -> FloatArray:
    """d delta / d theta = -(d s / d delta)^{-1} d s / d theta, batched: (T_b, J, P).

    Padded product slots (``pad`` True) get an identity row and derivative 0.
    """
    if pad is not None:
        t, j = np.nonzero(pad)
        ds_ddelta = ds_ddelta.copy()
        ds_ddelta[t, j, j] = 1.0
        ds_dtheta = np.where(pad[:, :, None], 0.0, ds_dtheta)
    return cast(FloatArray, -np.linalg.solve(ds_ddelta, ds_dtheta))
