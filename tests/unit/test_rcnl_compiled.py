"""The compiled RCNL contraction step (model/rcnl_compiled.py) against its numpy twin
(model.rcnl.block_nested_shares) and against shares summed directly over (j, i) from the
closed-form nested-logit probabilities (model.rcnl.nested_probabilities), on blocks with padded
product slots, a nest absent from a market and unequal agent weights."""

from __future__ import annotations

import numpy as np

from blpdemand.model.rcnl import (
    block_nested_shares,
    nest_maxima,
    nest_membership,
    nested_probabilities,
)
from blpdemand.model.rcnl_compiled import nested_step, prepared


def _block(rng: np.random.Generator, T: int = 5, J: int = 7, I: int = 9, G: int = 3):
    codes = rng.integers(0, G, (T, J))
    codes[0] = np.where(codes[0] == 2, 1, codes[0])  # market 0 has no product in nest 2
    pad = np.zeros((T, J), dtype=bool)
    pad[1, -2:] = True  # market 1 has two padded slots
    onehot = nest_membership(codes, G, pad)
    real = onehot.any(axis=2)
    lam = np.array([0.3, 0.7, 1.0])
    mu = rng.normal(scale=1.5, size=(T, J, I))
    weights = rng.uniform(0.5, 1.5, (T, I))
    weights /= weights.sum(axis=1, keepdims=True)
    shares = np.where(real, rng.uniform(0.01, 0.05, (T, J)), 1.0)
    x = rng.normal(scale=2.0, size=(T, J))
    return x, mu, onehot, real, lam, weights, shares, codes


def test_the_compiled_step_equals_the_closed_form_and_the_numpy_twin() -> None:
    rng = np.random.default_rng(7)
    x, mu, onehot, real, lam, weights, shares, codes = _block(rng)
    membership = onehot.astype(np.float64)
    lam_j = np.where(real, membership @ lam, 1.0)
    scaled = mu / lam_j[:, :, None]
    m = nest_maxima(scaled, onehot)
    E = np.exp(scaled - membership @ m) * real[:, :, None]
    log_shares = np.log(shares)
    out, ok = nested_step(x, *(prepared(a) for a in (E, m, codes, real, lam, weights,
                                                     log_shares, lam_j)))
    assert ok
    # reference 1: s_j = sum_i w_i s_ij from the closed-form probabilities
    p = nested_probabilities(x[:, :, None] + mu, onehot, lam)
    direct = np.where(real, np.einsum("tji,ti->tj", p.probabilities, weights), 1.0)
    expected = x + lam_j * (log_shares - np.log(direct))
    scale = np.abs(expected).max()
    np.testing.assert_allclose(out, expected, rtol=0, atol=64 * np.finfo(float).eps * scale)
    # reference 2: the numpy twin of the factored form
    c = np.where(real, x / lam_j, -np.inf).max(axis=1)
    e = np.exp(x / lam_j - c[:, None]) * real
    twin, resolved = block_nested_shares(e, E, membership, lam, weights, c[:, None, None] + m)
    assert resolved
    np.testing.assert_allclose(np.where(real, twin, 1.0), direct, rtol=1e-13)


def test_an_underflowed_nest_is_reported_not_returned() -> None:
    # every product of nest 0 in market 2 lies ~2,000 below the market's best: A_g = 0
    rng = np.random.default_rng(3)
    x, mu, onehot, real, lam, weights, shares, codes = _block(rng)
    x[2] = np.where(codes[2] == 0, -2000.0, x[2])
    assert (codes[2] == 0).any()
    membership = onehot.astype(np.float64)
    lam_j = np.where(real, membership @ lam, 1.0)
    scaled = mu / lam_j[:, :, None]
    m = nest_maxima(scaled, onehot)
    E = np.exp(scaled - membership @ m) * real[:, :, None]
    _, ok = nested_step(x, *(prepared(a) for a in (E, m, codes, real, lam, weights,
                                                   np.log(shares), lam_j)))
    assert not ok


import pytest

from blpdemand.model.rcnl import (
    nested_delta_jacobian,
    nested_rho_jacobian,
    nested_theta_jacobian,
)
from blpdemand.model.rcnl_compiled import nested_jacobians


@pytest.mark.parametrize("per_nest", [False, True])
def test_the_compiled_jacobians_equal_the_numpy_twins(per_nest: bool) -> None:
    # d s / d delta, d s / d theta (two Sigma/Pi-like parameters) and d s / d rho on a block
    # with padded slots and a nest absent from a market; tolerance: 1e-12 of each matrix's
    # largest entry (sums over I = 9 agents of products of probabilities, in another order)
    rng = np.random.default_rng(11)
    x, mu, onehot, real, lam, weights, _, codes = _block(rng)
    V = x[:, :, None] + mu
    x2 = rng.normal(size=(*x.shape, 2))
    variables = rng.normal(size=(x.shape[0], mu.shape[2], 3))
    rows, columns = np.array([0, 1]), np.array([2, 0])
    p = nested_probabilities(V, onehot, lam)
    expected_delta = nested_delta_jacobian(p, weights)
    expected_theta = np.concatenate([nested_theta_jacobian(p, weights, x2, variables, rows,
                                                           columns),
                                     nested_rho_jacobian(p, weights, lam, per_nest)], axis=2)
    got_delta, got_theta = nested_jacobians(V, codes, real, lam, weights, x2, variables, rows,
                                            columns, per_nest)
    mask = real[:, :, None] & real[:, None, :]
    np.testing.assert_allclose(np.where(mask, got_delta, 0.0), np.where(mask, expected_delta,
                                                                         0.0),
                               rtol=0, atol=1e-12 * np.abs(expected_delta).max())
    rows_real = real[:, :, None]
    assert got_theta.shape == expected_theta.shape
    np.testing.assert_allclose(np.where(rows_real, got_theta, 0.0),
                               np.where(rows_real, expected_theta, 0.0),
                               rtol=0, atol=1e-12 * np.abs(expected_theta).max())
