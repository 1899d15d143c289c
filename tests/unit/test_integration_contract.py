"""One contract for every integration rule: shapes, finiteness, weights, moments, determinism.

Reference: nu ~ N(0, I_K) has E[nu] = 0 and E[nu nu'] = I_K (closed form). Quadrature rules match
these exactly (1e-12); sampling rules with I = 512 draws within 5 standard errors of a sample
moment (5 sqrt(2 / I) = 0.31 for second moments, 5 / sqrt(I) = 0.22 for means; QMC rules are far
inside these bounds, Monte Carlo inside them with this seed).
"""

from __future__ import annotations

import numpy as np
import pytest

from blpdemand.integration import KINDS, Integration

SIZES = {"monte_carlo": 512, "sobol": 512, "halton": 512, "lhs": 512, "product": 4,
         "sparse_grid": 3}


@pytest.mark.parametrize("dimensions", [1, 2, 4, 6])
@pytest.mark.parametrize("kind", KINDS)
def test_rule_contract(kind: str, dimensions: int) -> None:
    rule = Integration(kind, SIZES[kind], rng=123)
    nodes, weights = rule.nodes_weights(dimensions)
    I = weights.shape[0]
    assert nodes.shape == (I, dimensions) and weights.shape == (I,)
    assert nodes.dtype == np.float64 and weights.dtype == np.float64
    assert np.all(np.isfinite(nodes)) and np.all(np.isfinite(weights))
    assert abs(weights.sum() - 1) < 1e-12
    if not rule.negative_weights:
        assert np.all(weights > 0)
    if kind in ("product", "sparse_grid"):
        mean_tol, covariance_tol = 1e-12, 1e-12
    else:
        np.testing.assert_array_equal(weights, np.full(I, 1 / I))
        mean_tol, covariance_tol = 5 / np.sqrt(I), 5 * np.sqrt(2 / I)
    assert np.all(np.abs(weights @ nodes) < mean_tol)
    assert np.all(np.abs((nodes * weights[:, None]).T @ nodes - np.eye(dimensions)) < covariance_tol)
    again = Integration(kind, SIZES[kind], rng=123).nodes_weights(dimensions)
    np.testing.assert_array_equal(nodes, again[0])
    np.testing.assert_array_equal(weights, again[1])


@pytest.mark.parametrize("kind", KINDS)
def test_rule_returns_fresh_arrays(kind: str) -> None:
    # cached rules hand out copies: editing one result never changes the next
    rule = Integration(kind, SIZES[kind], rng=1)
    nodes, weights = rule.nodes_weights(2)
    nodes[:] = 99.0
    weights[:] = 99.0
    fresh_nodes, fresh_weights = rule.nodes_weights(2)
    assert np.all(fresh_nodes != 99.0) and np.all(fresh_weights != 99.0)
