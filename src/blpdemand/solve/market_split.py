"""Splitting a problem into market shards: contiguous runs of markets, each a Problem of its
own with the rows of its products and agents (``solve.shards`` holds and evaluates them).

Absorbed effects couple markets through the annihilator M unless every group lies in one
shard (e.g. effects that nest within markets, ``C(market_ids)``): then M is block-diagonal and
each shard applies its own; other effects are refused.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from blpdemand.data.absorb import absorb_fixed_effects
from blpdemand.data.agents import AgentData
from blpdemand.data.formulation import DesignMatrix
from blpdemand.data.markets import MarketIndex
from blpdemand.data.products import ProductData
from blpdemand.errors import SpecificationError
from blpdemand.model.problem import Problem

__all__ = ["split_markets"]


def split_markets(problem: Problem, shards: int) -> list[Problem]:
    """Split a problem into ``shards`` sub-problems of contiguous markets (sorted order).

    Each holds the products and agents of its markets only, with the same columns, names and
    instruments; X1~ and ZD~ are the rows of the whole problem's, so that the sum over shards of
    Z_s~'X1_s~ is Z~'X1~. Cuts balance J_t I_t (the size of exp(mu)) across shards.

    Absorbed effects are kept only when every group lies in one shard (they nest within
    markets or shards); otherwise M couples the shards and a SpecificationError says so.

    Examples
    --------
    >>> import blpdemand as bd
    >>> sim = bd.simulate(markets=4, products=3, sigma={"x1": 1.0}, draws=5, rng=0)
    >>> p = bd.Problem(sim.products, linear=sim.linear, nonlinear=sim.nonlinear,
    ...                agents=sim.agents, instruments=sim.instruments)
    >>> [s.T for s in split_markets(p, 2)]
    [2, 2]
    """
    problem.refuse_nests("splitting markets into shards")
    if problem.micro is not None:
        raise SpecificationError("market shards carry the product-level moments only: a "
                                 "problem with micro moments is estimated whole (bd.estimate)")
    if problem.supply is not None:
        raise SpecificationError("market shards carry the demand side only: a problem with a "
                                 "supply side is estimated whole (bd.estimate)")
    T = problem.T
    if (isinstance(shards, bool) or not isinstance(shards, (int, np.integer))
            or not 1 <= shards <= T):
        raise SpecificationError(f"shards={shards!r} must be an integer from 1 to the number of "
                                 f"markets ({T})")
    cells = problem.products.markets.sizes.astype(np.float64)
    if problem.agents is not None:
        cells = cells * problem.agents.markets.sizes
    total = np.cumsum(cells)
    cuts = [0]
    for k in range(1, int(shards)):
        cut = int(np.searchsorted(total, k * total[-1] / shards, side="left")) + 1
        cuts.append(min(max(cut, cuts[-1] + 1), T - (int(shards) - k)))
    cuts.append(T)
    _check_effects(problem, cuts)
    return [_subproblem(problem, a, b) for a, b in itertools.pairwise(cuts)]


def _check_effects(problem: Problem, cuts: list[int]) -> None:
    """Refuse absorbed effects with a group in markets of more than one shard."""
    effects = problem.fixed_effects
    if effects is None:
        return
    offsets = problem.products.markets.offsets
    shard = np.repeat(np.arange(len(cuts) - 1), np.diff(offsets[cuts]))
    for d, column in enumerate(effects.columns):
        ids = effects.ids[:, d]
        first = np.full(int(ids.max()) + 1, -1)
        first[ids[::-1]] = shard[::-1]  # the first shard of each group
        if np.any(first[ids] != shard):
            raise SpecificationError(
                f"absorbed effect C({column}) has groups in markets of more than one shard: the "
                "fixed-effect annihilator M couples the shards, so Q is not a sum over them. "
                "Shard only with effects that nest within markets (e.g. C(market_ids)), fewer "
                "shards, or estimate in one process")


def _rows(index: MarketIndex, a: int, b: int) -> tuple[slice, MarketIndex]:
    """Rows of markets a..b-1 and their MarketIndex (positions from 0)."""
    rows = slice(int(index.offsets[a]), int(index.offsets[b]))
    return rows, MarketIndex.from_sorted_codes(index.ids[a:b], index.codes[rows] - a)


def _subproblem(problem: Problem, a: int, b: int) -> Problem:
    """The Problem of markets a..b-1 (sorted positions): rows sliced, nothing recomputed but
    the fixed effects' group codes."""
    rows, markets = _rows(problem.products.markets, a, b)
    frame = problem.products.frame.iloc[rows].reset_index(drop=True)
    products = ProductData(frame=frame, markets=markets, order=np.arange(len(frame)),
                           shares=problem.products.shares[rows].copy())
    agents = None
    if problem.agents is not None:
        old = problem.agents
        agent_rows, agent_markets = _rows(old.markets, a, b)
        agents = AgentData(markets=agent_markets, weights=old.weights[agent_rows].copy(),
                           nodes=old.nodes[agent_rows].copy(),
                           demographics=old.demographics[agent_rows].copy(),
                           demographic_names=old.demographic_names,
                           negative_weights=old.negative_weights)
    effects = problem.fixed_effects
    if effects is not None:
        effects = absorb_fixed_effects(frame, effects.columns,
                                       iteration_limit=effects.iteration_limit)
    sub = object.__new__(Problem)
    values: dict[str, Any] = {
        "products": products, "agents": agents, "fixed_effects": effects,
        "endogenous": problem.endogenous, "linear_formula": problem.linear_formula,
        "nonlinear_formula": problem.nonlinear_formula, "inputs": dict(problem.inputs),
        "lognormal": problem.lognormal,
        "X1_tilde": np.ascontiguousarray(problem.X1_tilde[rows]),
        "ZD_tilde": np.ascontiguousarray(problem.ZD_tilde[rows])}
    for name in ("X1", "X2", "ZD"):
        matrix: DesignMatrix = getattr(problem, name)
        values[name] = DesignMatrix(values=matrix.values[rows].copy(), names=matrix.names)
    for name, value in values.items():
        object.__setattr__(sub, name, value)
    return sub
