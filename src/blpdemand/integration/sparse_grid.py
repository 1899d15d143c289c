"""Smolyak sparse grids built from Gauss-Hermite rules (Heiss and Winschel 2008).

A level-L grid in K dimensions combines small tensor products:

    A(L, K) = sum_{q = max(0, L-K)}^{L-1} (-1)^{L-1-q} C(K-1, L-1-q)
              sum_{|l| = K + q, l_k >= 1} (U_{l_1} x ... x U_{l_K}),

with U_l the l-point Gauss-Hermite rule. The grid integrates every polynomial of total degree
<= 2L - 1 exactly, with far fewer nodes than the product rule. Some weights are negative: they
still sum to one, but a weighted average of positive terms can then leave (0, 1).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from math import comb

import numpy as np

from blpdemand._types import FloatArray
from blpdemand.integration.quadrature import gauss_hermite, tensor_weights

# Nodes closer than this (after the sums of different rules) are the same node.
_MERGE_DECIMALS = 12


def _compositions(total: int, parts: int) -> Iterator[tuple[int, ...]]:
    """All tuples of ``parts`` positive integers summing to ``total``."""
    if parts == 1:
        yield (total,)
        return
    for first in range(1, total - parts + 2):
        for rest in _compositions(total - first, parts - 1):
            yield (first, *rest)


@functools.lru_cache(maxsize=32)
def _sparse_grid_cached(dimensions: int, level: int) -> tuple[FloatArray, FloatArray]:
    node_blocks: list[FloatArray] = []
    weight_blocks: list[FloatArray] = []
    for q in range(max(0, level - dimensions), level):
        coefficient = (-1) ** (level - 1 - q) * comb(dimensions - 1, level - 1 - q)
        for levels in _compositions(dimensions + q, dimensions):
            rules = [gauss_hermite(points) for points in levels]
            node_blocks.append(np.array(list(itertools.product(*(x for x, _ in rules)))))
            weight_blocks.append(coefficient * tensor_weights([w for _, w in rules]))
    nodes = np.concatenate(node_blocks)
    weights = np.concatenate(weight_blocks)
    # the same node appears in several tensor products: sum its weights
    keys = np.round(nodes, _MERGE_DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    unique = nodes[first]  # exact nodes, not their rounded keys
    merged = np.bincount(inverse.ravel(), weights=weights,
                         minlength=unique.shape[0]).astype(np.float64)
    keep = np.abs(merged) > 1e-15
    unique, merged = unique[keep], merged[keep]
    unique.setflags(write=False)
    merged.setflags(write=False)
    return unique, merged


def sparse_grid(dimensions: int, level: int) -> tuple[FloatArray, FloatArray]:
    """Level-L Gauss-Hermite Smolyak grid for E[f(nu)], nu ~ N(0, I_K).

    Exact for polynomials of total degree <= 2L - 1 (Heiss and Winschel 2008, GQN rule).

    Returns
    -------
    nodes : (I, K) distinct nodes, sorted lexicographically.
    weights : (I,) weights summing to one; some are negative when K >= 2 and L >= 3.
    """
    if dimensions == 0:
        return np.zeros((1, 0)), np.ones(1)
    nodes, weights = _sparse_grid_cached(int(dimensions), int(level))
    return nodes.copy(), weights.copy()
