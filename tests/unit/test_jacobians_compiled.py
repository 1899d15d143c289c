"""The compiled share Jacobians of padded blocks equal the textbook probability forms.

Reference: ``share_delta_jacobian`` and ``share_theta_jacobian`` (d s / d delta =
diag(s) - (s w) s' and d s / d theta from s_ji formed explicitly, Nevo 2000's appendix) on the
same exp(mu), markets of unequal J_t and I_t in one padded block. Tolerance: 64 ulps of the
largest magnitude summed (both sides sum up to 36 agents' terms, in other orders, and the
exp-space form divides by D_i once where the textbook form divides each s_ji): for
d s / d delta the largest share, for d s / d theta the largest sum_i w_i s_ji (|x2_jr V_ic| +
|xbar_ir V_ic|), whose terms cancel when utilities are large.
"""

from __future__ import annotations

import numpy as np
import pytest
from contraction_data import simulated

from blpdemand.model.derivatives import (
    share_delta_jacobian,
    share_jacobians,
    share_theta_jacobian,
)
from blpdemand.model.shares import choice_probabilities
from blpdemand.model.utility import exp_utility, market_blocks

EPS = np.finfo(np.float64).eps


@pytest.mark.parametrize("scale", [1.0, 30.0, 200.0])  # 30, 200: shifted markets
def test_padded_share_jacobians_equal_probability_forms(scale: float) -> None:
    problem, layout, theta, truth = simulated(seed=11)
    theta = theta * scale
    sigma, pi = layout.unpack(theta)
    coefficients = problem.nodes_for(layout) @ sigma.T + problem.agents.demographics @ pi.T
    variables = np.hstack([problem.nodes_for(layout), problem.agents.demographics])
    (block,) = market_blocks(problem.products.markets, problem.agents.markets)
    assert block.product_pad is not None and block.agent_pad is not None
    x2 = block.gather_products(problem.X2.values)
    utility = exp_utility(block, x2, block.gather_agents(coefficients),
                          block.gather_agents(problem.agents.weights))
    assert (scale == 1.0) == np.all(utility.outside == 1.0)  # the shift is in use
    e = np.exp(block.gather_products(truth))
    e[block.product_pad] = 0.0
    v = block.gather_agents(variables)
    sr, sc = layout.sigma_index
    pr, pc = layout.pi_index
    rows, columns = np.concatenate([sr, pr]), np.concatenate([sc, layout.K2 + pc])
    _, J, I = block.shape
    product_sizes = J - block.product_pad.sum(axis=1)
    agent_sizes = I - block.agent_pad.sum(axis=1)
    ds_ddelta, ds_dtheta = share_jacobians(e, utility, x2, v, rows, columns, product_sizes,
                                           agent_sizes=agent_sizes)
    probabilities = choice_probabilities(e, utility)
    reference_delta = share_delta_jacobian(probabilities, utility.weights)
    reference_theta = share_theta_jacobian(probabilities, utility.weights, x2, v, rows, columns)
    weighted = probabilities * utility.weights[:, None, :]
    xbar = np.matmul(probabilities.transpose(0, 2, 1), x2)  # (T_b, I, K2)
    V = np.abs(v[:, :, columns])  # (T_b, I, P)
    magnitude = (np.abs(x2[:, :, rows]) * np.matmul(weighted, V)
                 + np.matmul(weighted, np.abs(xbar[:, :, rows]) * V))
    bounds = (weighted.sum(axis=2).max(), magnitude.max())
    for got, reference, bound in zip((ds_ddelta, ds_dtheta), (reference_delta, reference_theta),
                                     bounds, strict=True):
        assert np.max(np.abs(got - reference)) <= 64 * EPS * bound
    for t, n in enumerate(product_sizes):  # padded slots are exactly zero
        assert np.all(ds_ddelta[t, n:] == 0.0) and np.all(ds_ddelta[t, :, n:] == 0.0)
        assert np.all(ds_dtheta[t, n:] == 0.0)
