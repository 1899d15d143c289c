"""Gauss-Hermite quadrature for standard-normal integrals: one dimension and the product rule."""

from __future__ import annotations

import functools
import math

import numpy as np
from numpy.polynomial.hermite_e import hermegauss

from blpdemand._types import FloatArray

# A product rule with more nodes than this is a mistake (memory), not a choice.
MAX_PRODUCT_NODES = 5_000_000
#: rules whose nodes are the same grid in every market (crossed with demographics, not paired)
QUADRATURE_KINDS = frozenset({"product", "sparse_grid"})


@functools.lru_cache(maxsize=64)
def _gauss_hermite_cached(points: int) -> tuple[FloatArray, FloatArray]:
    nodes, weights = hermegauss(points)
    weights = weights / math.sqrt(2.0 * math.pi)
    nodes.setflags(write=False)
    weights.setflags(write=False)
    return nodes, weights


def gauss_hermite(points: int) -> tuple[FloatArray, FloatArray]:
    """n-point Gauss-Hermite rule for E[f(nu)], nu ~ N(0, 1): (n,) nodes and (n,) weights.

    E[f(nu)] ~ sum_i w_i f(x_i), exact when f is a polynomial of degree <= 2n - 1
    (Golub and Welsch 1969; probabilists' Hermite polynomials, weights sum to one).
    """
    nodes, weights = _gauss_hermite_cached(int(points))
    return nodes.copy(), weights.copy()


def product_rule(dimensions: int, points: int) -> tuple[FloatArray, FloatArray]:
    """Tensor product of n-point Gauss-Hermite rules in K dimensions.

    nu_i = (x_{i_1}, ..., x_{i_K}), w_i = prod_k w_{i_k}: n^K nodes, exact for every monomial
    whose degree in each coordinate is <= 2n - 1 (Judd 1998, ch. 7.5).

    Returns
    -------
    nodes : (n^K, K), the last coordinate varying fastest.
    weights : (n^K,), positive, summing to one.
    """
    total = points ** dimensions
    if total > MAX_PRODUCT_NODES:
        from blpdemand.errors import SpecificationError

        raise SpecificationError(
            f"a product rule with {points} points in {dimensions} dimensions has {total:,} nodes; "
            "use kind='sparse_grid' or a (quasi-)Monte Carlo rule in this many dimensions")
    x, w = gauss_hermite(points)
    grids = np.meshgrid(*([x] * dimensions), indexing="ij")
    nodes = np.column_stack([g.ravel() for g in grids]) if dimensions else np.zeros((1, 0))
    return nodes, tensor_weights([w] * dimensions)


def tensor_weights(factors: list[FloatArray]) -> FloatArray:
    """Weights of a tensor-product rule: w_(i_1..i_K) = prod_k w_k[i_k], last index fastest."""
    weights = np.ones(1)
    for w in factors:
        weights = np.asarray(np.kron(weights, w), dtype=np.float64)
    return weights
