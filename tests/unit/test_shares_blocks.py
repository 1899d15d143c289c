"""Batched shares, probabilities and their derivatives equal per-market formulas.

References: an independent per-market loop written here with the textbook logit formula
(BLP 1995, eq. 2.7), log-sum-exp from scipy for huge utilities, and central finite differences
for d s / d delta.
"""

from __future__ import annotations

import numpy as np
from contraction_data import simulated
from scipy.special import logsumexp

from blpdemand.data.markets import MarketIndex
from blpdemand.model.derivatives import share_delta_jacobian
from blpdemand.model.shares import block_shares, choice_probabilities, shares_from_probabilities
from blpdemand.model.utility import exp_utility, market_blocks
from blpdemand.solve.contraction import compute_shares


def per_market_shares(problem, layout, theta, delta):
    """Textbook loop: s_jt = sum_i w_i exp(u_ji) / (1 + sum_k exp(u_ki)), log-sum-exp safe."""
    sigma, pi = layout.unpack(theta)
    agents = problem.agents
    coef = problem.nodes_for(layout) @ sigma.T + agents.demographics @ pi.T
    out = np.empty(problem.N)
    for t in range(problem.T):
        rows, arows = problem.products.markets.slice(t), agents.markets.slice(t)
        u = delta[rows][:, None] + problem.X2.values[rows] @ coef[arows].T
        log_denominator = logsumexp(np.vstack([np.zeros(u.shape[1]), u]), axis=0)
        out[rows] = np.exp(u - log_denominator) @ agents.weights[arows]
    return out


def test_shares_match_per_market_loop():
    # Reference: the textbook loop above on unequal (padded) markets; 1e-14 relative.
    problem, layout, theta, truth = simulated(seed=6)
    ours = compute_shares(problem, layout, theta, truth)
    reference = per_market_shares(problem, layout, theta, truth)
    assert np.max(np.abs(ours / reference - 1)) < 1e-13
    assert np.max(np.abs(ours / problem.products.shares - 1)) < 1e-13  # shares were built so


def test_shares_survive_huge_utilities():
    # Reference: log-sum-exp loop; utilities near 900 overflow a naive exp (exp(710) = inf).
    problem, layout, theta, truth = simulated(seed=7)
    big = theta * 400.0
    delta = truth + 300.0
    ours = compute_shares(problem, layout, big, delta)
    reference = per_market_shares(problem, layout, big, delta)
    assert np.all(np.isfinite(ours))
    assert np.max(np.abs(ours - reference)) < 1e-12
    assert np.max(np.abs(ours / reference - 1)[reference > 1e-200]) < 1e-10


def test_blocks_partition_markets_with_bounded_padding():
    # Reference: hand counts: every market in exactly one block, padding within the bound.
    codes = np.repeat(np.arange(6), [3, 7, 5, 7, 1, 6])
    products = MarketIndex.from_sorted_codes(np.arange(6), codes)
    agents = MarketIndex.from_sorted_codes(np.arange(6), np.repeat(np.arange(6), 10))
    for max_bytes in (1, 8 * 70, 1 << 20):
        blocks = market_blocks(products, agents, max_bytes=max_bytes, max_waste=0.25,
                               max_waste_cells=0)
        positions = np.sort(np.concatenate([b.positions for b in blocks]))
        assert positions.tolist() == list(range(6))
        for block in blocks:
            T_b, J, I = block.shape
            real = sum(products.sizes[t] * agents.sizes[t] for t in block.positions)
            assert T_b == 1 or (T_b * J * I <= 1.25 * real and 8 * T_b * J * I <= max_bytes)
    # small markets: a little absolute padding is allowed, so all six share one block (7 x 10)
    (block,) = market_blocks(products, agents)
    assert block.shape == (6, 7, 10) and int(block.product_pad.sum()) == 6 * 7 - 29


def test_share_delta_jacobian_matches_finite_differences():
    # Reference: central differences of block shares in delta (step 1e-6); 1e-8 relative.
    problem, layout, theta, truth = simulated(seed=8)
    sigma, pi = layout.unpack(theta)
    coef = problem.nodes_for(layout) @ sigma.T + problem.agents.demographics @ pi.T
    block = market_blocks(problem.products.markets, problem.agents.markets)[0]
    utility = exp_utility(block, block.gather_products(problem.X2.values),
                          block.gather_agents(coef), block.gather_agents(problem.agents.weights))
    e = np.exp(block.gather_products(truth))
    probabilities = choice_probabilities(e, utility)
    analytic = share_delta_jacobian(probabilities, utility.weights)
    assert np.allclose(shares_from_probabilities(probabilities, utility.weights),
                       block_shares(e, utility), rtol=1e-14, atol=0)
    J = utility.exp_mu.shape[1]
    for j in range(J):
        h = 1e-6
        up, down = e.copy(), e.copy()
        up[:, j] *= np.exp(h)
        down[:, j] *= np.exp(-h)
        numeric = (block_shares(up, utility) - block_shares(down, utility)) / (2 * h)
        assert np.max(np.abs(numeric - analytic[:, :, j])) <= 1e-8 * np.max(np.abs(analytic))


def test_exp_space_jacobians_equal_probability_forms():
    # Reference: the textbook forms built from s_ji (share_delta_jacobian/share_theta_jacobian)
    # on shifted (huge) utilities; 1e-12 relative to each array's largest element.
    from blpdemand.model.derivatives import share_jacobians, share_theta_jacobian

    problem, layout, theta, truth = simulated(seed=9)
    theta = theta * 200.0  # utilities in the hundreds: the per-agent shift is in use
    sigma, pi = layout.unpack(theta)
    coef = problem.nodes_for(layout) @ sigma.T + problem.agents.demographics @ pi.T
    variables = np.hstack([problem.nodes_for(layout), problem.agents.demographics])
    block = market_blocks(problem.products.markets, problem.agents.markets)[0]
    utility = exp_utility(block, block.gather_products(problem.X2.values),
                          block.gather_agents(coef), block.gather_agents(problem.agents.weights))
    assert utility.shifted
    e = np.exp(block.gather_products(truth + 50.0))
    x2, v = block.gather_products(problem.X2.values), block.gather_agents(variables)
    sr, sc = layout.sigma_index
    pr, pc = layout.pi_index
    rows, columns = np.concatenate([sr, pr]), np.concatenate([sc, layout.K2 + pc])
    ds_ddelta, ds_dtheta = share_jacobians(e, utility, x2, v, rows, columns)
    probabilities = choice_probabilities(e, utility)
    reference_delta = share_delta_jacobian(probabilities, utility.weights)
    reference_theta = share_theta_jacobian(probabilities, utility.weights, x2, v, rows, columns)
    assert np.max(np.abs(ds_ddelta - reference_delta)) <= 1e-12 * np.max(np.abs(reference_delta))
    assert np.max(np.abs(ds_dtheta - reference_theta)) <= 1e-12 * np.max(np.abs(reference_theta))


def test_symmetric_gram_equals_full_product_across_panel_sizes():
    # Reference: S S' by einsum; J below, inside and above the panelled range, J not a
    # multiple of the panel width.
    from blpdemand.model.derivatives import PANEL_PRODUCTS, symmetric_gram

    rng = np.random.default_rng(3)
    low, high = PANEL_PRODUCTS
    for J in (low - 1, low, 45, high, high + 1):
        S = rng.normal(size=(3, J, 17))
        reference = np.einsum("tji,tki->tjk", S, S)
        gram = symmetric_gram(S)
        assert np.max(np.abs(gram - reference)) <= 1e-12 * np.max(np.abs(reference)), J
        assert np.array_equal(gram, gram.transpose(0, 2, 1)), J


def test_exp_space_jacobians_with_many_products_equal_probability_forms():
    # 45 products (the panelled S S' and Cholesky paths) against the textbook forms.
    from blpdemand.model.derivatives import share_jacobians, share_theta_jacobian
    from blpdemand.model.utility import ExpUtility

    rng = np.random.default_rng(4)
    T, J, I, K2 = 3, 45, 60, 2
    x2 = rng.normal(size=(T, J, K2))
    nodes = rng.normal(size=(T, I, K2))
    mu = np.einsum("tjk,tik->tji", x2, nodes * 0.7)
    weights = np.full((T, I), 1.0 / I)
    utility = ExpUtility(exp_mu=np.exp(mu), outside=np.ones((T, I)), weights=weights,
                         shifted=False)
    e = np.exp(rng.normal(size=(T, J)) - 4.0)
    rows, columns = np.array([0, 1, 1]), np.array([0, 1, 0])
    ds_ddelta, ds_dtheta = share_jacobians(e, utility, x2, nodes, rows, columns)
    probabilities = choice_probabilities(e, utility)
    reference_delta = share_delta_jacobian(probabilities, weights)
    reference_theta = share_theta_jacobian(probabilities, weights, x2, nodes, rows, columns)
    assert np.max(np.abs(ds_ddelta - reference_delta)) <= 1e-12 * np.max(np.abs(reference_delta))
    assert np.max(np.abs(ds_dtheta - reference_theta)) <= 1e-12 * np.max(np.abs(reference_theta))
