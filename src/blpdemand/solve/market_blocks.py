"""The blocks of markets the inner loop works on: their theta-free data, gathered once, and
the per-block kernels at theta.

A block (``model.utility.MarketBlock``) holds markets of similar (J_t, I_t) padded to dense
(T_b, J, I) arrays. At theta the agents' coefficients are c_i = [nu_i, y_i] [Sigma'; Pi']
(lognormal columns then s_k exp(c_ik)), exp(mu) follows once per block, and
d delta / d theta = -(ds/ddelta)^{-1} ds/dtheta comes from the same exp(mu) (implicit function
theorem; ``model.derivatives``), with dmu_ji/dtheta_p = x2_j,r g_r'(c_ir) V_i,c for the
parameter theta_p at (r, c) of [Sigma, Pi].
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import numpy as np

from blpdemand._types import FloatArray, IntArray
from blpdemand.errors import SpecificationError
from blpdemand.model.derivatives import delta_theta_jacobian, share_jacobians
from blpdemand.model.parameters import ParameterLayout
from blpdemand.model.problem import Problem
from blpdemand.model.utility import (
    ExpUtility,
    MarketBlock,
    exp_utility,
    lognormal_coefficients,
    lognormal_slopes,
    market_blocks,
)
from blpdemand.solve.fixed_point import FixedPointConfig


@dataclass(frozen=True, slots=True, eq=False)
class _Block:
    """Theta-free data of one block, gathered once."""

    block: MarketBlock
    x2: FloatArray  # (T_b, J, K2)
    variables: FloatArray  # (T_b, I, K2 + D): nodes, then demographics
    weights: FloatArray  # (T_b, I)
    shares: FloatArray  # (T_b, J), 1 in padded slots
    pad: FloatArray | None  # (T_b, J) 1.0 in padded slots
    product_sizes: IntArray  # (T_b,) real J_t
    agent_sizes: IntArray  # (T_b,) real I_t


_PREPARED: weakref.WeakKeyDictionary[Problem, dict[tuple[bytes, int], tuple[_Block, ...]]] = (
    weakref.WeakKeyDictionary())
_PREPARED_LOCK = threading.Lock()  # starts on threads fill the cache once (blocks are read-only)


def _prepare(problem: Problem, layout: ParameterLayout, block_bytes: int) -> tuple[_Block, ...]:
    """Blocks and their gathered data (cached per problem, node layout and block size)."""
    if problem.agents is None:
        raise SpecificationError("the inner loop needs agents and a nonlinear formula; pass "
                                 "nonlinear='...' and agents=... to Problem")
    key = (layout.sigma_free.tobytes() + bytes(layout.sigma_free.shape), block_bytes)
    with _PREPARED_LOCK:
        store = _PREPARED.setdefault(problem, {})
        if key in store:
            return store[key]
        agents = problem.agents
        variables = np.hstack([problem.nodes_for(layout), agents.demographics])
        blocks = []
        for block in market_blocks(problem.products.markets, agents.markets,
                                   max_bytes=block_bytes):
            shares = block.gather_products(problem.products.shares)
            pad = None
            if block.product_pad is not None:
                pad = block.product_pad.astype(np.float64)
                shares[block.product_pad] = 1.0
            T_b, J, I = block.shape
            blocks.append(_Block(block=block, x2=block.gather_products(problem.X2.values),
                                 variables=block.gather_agents(variables),
                                 weights=block.gather_agents(agents.weights), shares=shares,
                                 pad=pad,
                                 product_sizes=_sizes(block.product_pad, T_b, J),
                                 agent_sizes=_sizes(block.agent_pad, T_b, I)))
        store[key] = tuple(blocks)
        return store[key]


def _sizes(pad: np.ndarray | None, T_b: int, width: int) -> IntArray:
    """(T_b,) real slots per market (padded slots trail each market)."""
    return np.full(T_b, width, dtype=np.int64) if pad is None else width - pad.sum(axis=1)


def _coefficient_map(layout: ParameterLayout, theta: FloatArray) -> FloatArray:
    """[Sigma'; Pi'] (K2 + D, K2): agent coefficients are variables @ this."""
    sigma, pi = layout.unpack(theta)
    return np.vstack([sigma.T, pi.T])


def _block_utility(data: _Block, mapping: FloatArray,
                   lognormal: FloatArray | None = None,
                   out: FloatArray | None = None) -> ExpUtility:
    """The block's exp(mu) at the coefficient map; ``out``: this block's exp(mu) at an earlier
    theta, unchanged since (its padded cells are not written again)."""
    coefficients = np.matmul(data.variables, mapping)
    if lognormal is not None:
        coefficients = lognormal_coefficients(coefficients, lognormal)
    return exp_utility(data.block, data.x2, coefficients, data.weights, out=out,
                       sizes=(data.product_sizes, data.agent_sizes),
                       padding_written=out is not None)


def _derivative_variables(data: _Block, layout: ParameterLayout, mapping: FloatArray,
                          lognormal: FloatArray | None) -> tuple[FloatArray, IntArray, IntArray]:
    """Agent variables, X2 columns and variable columns with dmu_ji/dtheta_p =
    x2_j,rows[p] variables_i,columns[p].

    For normal coefficients these are [nu, y] and the parameter's own columns. A lognormal
    coefficient g_k(c_ik) = s_k exp(c_ik) adds the chain rule's g_k'(c_ik) per agent, so each
    parameter gets its own column g'_rows[p](c_i) V_i,columns[p]: (T_b, I, P).
    """
    rows, columns = _parameter_index(layout)
    if lognormal is None:
        return data.variables, rows, columns
    slopes = lognormal_slopes(np.matmul(data.variables, mapping), lognormal)
    variables = data.variables[:, :, columns] * slopes[:, :, rows]
    return variables, rows, np.arange(rows.size, dtype=np.int64)


def _block_jacobian(data: _Block, utility: ExpUtility, delta_block: FloatArray,
                    layout: ParameterLayout, *, mapping: FloatArray,
                    lognormal: FloatArray | None, overwrite: bool = False) -> FloatArray:
    """(T_b, J, P) d delta / d theta for one block at its solved delta.

    ``overwrite``: exp(mu) is not needed afterwards (not cached) and may be scaled in place.
    """
    variables, rows, columns = _derivative_variables(data, layout, mapping, lognormal)
    pad = data.block.product_pad
    sizes = None if pad is None else pad.shape[1] - pad.sum(axis=1)
    ds_ddelta, ds_dtheta = share_jacobians(np.exp(delta_block), utility, data.x2,
                                           variables, rows, columns, sizes,
                                           agent_sizes=data.agent_sizes, overwrite=overwrite)
    return delta_theta_jacobian(ds_ddelta, ds_dtheta, data.block.product_pad)


def _block_cap(problem: Problem, config: FixedPointConfig) -> int:
    """Bytes cap on a block's exp(mu): ``config.block_bytes``, lowered with threads so that
    there are about two blocks per thread to share out (markets are independent)."""
    if config.threads == 1 or problem.agents is None:
        return config.block_bytes
    cells = problem.products.markets.sizes * problem.agents.markets.sizes
    return max(1, min(config.block_bytes, int(8 * cells.sum()) // (2 * config.threads)))


def _parameter_index(layout: ParameterLayout) -> tuple[IntArray, IntArray]:
    """X2 column and agent-variable column of each parameter (Sigma's, then Pi's)."""
    sr, sc = layout.sigma_index
    pr, pc = layout.pi_index
    return (np.concatenate([sr, pr]).astype(np.int64),
            np.concatenate([sc, layout.K2 + pc]).astype(np.int64))
