"""Integration rules and agents against PyBLP 1.3.0 (run live), where the definitions coincide.

- Gauss-Hermite product rule: same nodes and weights up to ordering (tolerance 1e-14).
- Smolyak sparse grid (PyBLP's 'grid', non-nested Gauss-Hermite): same nodes and weights up to
  ordering (1e-12 on weights, which are sums of signed products).
- Monte Carlo: PyBLP draws with the legacy ``RandomState`` (MT19937), blpdemand with a
  ``Generator`` (PCG64, what numpy recommends), so the streams cannot coincide; the test compares
  the two samples' distributions instead, and the weights exactly.
- Agents of a Problem with a product rule and Nevo's demographics (node i paired with the
  market's demographic row i): identical nodes, weights and demographics.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyblp
import pytest
from pair_agents import assert_pair_agents_match_pyblp
from scipy import stats

import blpdemand as bd

pyblp.options.verbose = False


def pyblp_rule(kind: str, size: int, dimensions: int, options: dict | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(all="ignore"):
        built = pyblp.build_integration(pyblp.Integration(kind, size, options), dimensions)
    return np.asarray(built.nodes), np.asarray(built.weights).ravel()


def lexsorted(nodes: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort(nodes.T[::-1])
    return nodes[order], weights[order]


def _ulps(ours: np.ndarray, theirs: np.ndarray, ulps: int = 64) -> None:
    """Equal to a few dozen ulps of the array's largest magnitude: Gauss-Hermite nodes and
    weights from two eigen-solvers agree to rounding, not bit for bit."""
    scale = max(float(np.abs(theirs).max()), np.finfo(np.float64).tiny)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=ulps * np.finfo(np.float64).eps * scale)


@pytest.mark.parametrize(("dimensions", "points"), [(1, 5), (2, 3), (3, 4), (4, 2), (5, 3)])
def test_product_rule_matches_pyblp(dimensions: int, points: int) -> None:
    ours = lexsorted(*bd.Integration("product", points).nodes_weights(dimensions))
    theirs = lexsorted(*pyblp_rule("product", points, dimensions))
    assert ours[0].shape == theirs[0].shape
    _ulps(ours[0], theirs[0])
    _ulps(ours[1], theirs[1])


@pytest.mark.parametrize(("dimensions", "level"), [(1, 4), (2, 3), (3, 4), (4, 5), (5, 3)])
def test_sparse_grid_matches_pyblp_grid(dimensions: int, level: int) -> None:
    ours = lexsorted(*bd.Integration("sparse_grid", level).nodes_weights(dimensions))
    theirs = lexsorted(*pyblp_rule("grid", level, dimensions))
    assert ours[0].shape == theirs[0].shape
    _ulps(ours[0], theirs[0])
    np.testing.assert_allclose(ours[1], theirs[1], rtol=0, atol=1e-12)


def test_monte_carlo_matches_pyblp_in_distribution() -> None:
    # 20,000 draws in 3 dimensions from each library (fixed seeds): identical weights 1/I;
    # the two means differ by less than 4 standard errors of a difference (4 sqrt(2 / I) =
    # 0.040; observed 0.022), the covariances by less than 4 sqrt(4 / I) = 0.057 (the variance
    # of a sample variance is 2 / I; observed 0.025), and two-sample Kolmogorov-Smirnov p-values
    # exceed 0.001 in every coordinate (observed 0.02, 0.79, 0.13 with these seeds).
    size = 20_000
    ours, our_weights = bd.Integration("monte_carlo", size, rng=1).nodes_weights(3)
    theirs, their_weights = pyblp_rule("monte_carlo", size, 3, {"seed": 1})
    np.testing.assert_array_equal(our_weights, their_weights)
    assert np.all(np.abs(ours.mean(axis=0) - theirs.mean(axis=0)) < 4 * np.sqrt(2 / size))
    assert np.all(np.abs(np.cov(ours.T) - np.cov(theirs.T)) < 4 * np.sqrt(4 / size))
    for k in range(3):
        assert stats.ks_2samp(ours[:, k], theirs[:, k]).pvalue > 1e-3


def test_problem_agents_match_pyblp_product_rule_with_demographics(
        nevo_products: pd.DataFrame, nevo_agents: pd.DataFrame) -> None:
    # Nevo (2000) cereal data, K2 = 4, a 2-point product rule (16 nodes per market), paired with
    # the first 16 of the market's 20 demographic rows, as PyBLP pairs agent data with a rule.
    # Nodes, weights and demographics agree to 1e-14 after sorting by market.
    assert_pair_agents_match_pyblp(nevo_products, nevo_agents,
                                   ["income", "income_squared", "age", "child"], 2, 16)
