"""Agent data built from an integration rule and empirical demographics (census-like draws).

Agent (i, t) carries a node nu_it from the rule, a weight w_it and a demographic row y_it drawn
from the market's empirical distribution. Nodes and demographics are independent, as in
Nevo (2001) and BLP (1995): y comes from the census, nu is unobserved taste.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from blpdemand._types import AnyArray, FloatArray
from blpdemand.errors import DataError, SpecificationError
from blpdemand.integration.quadrature import QUADRATURE_KINDS

if TYPE_CHECKING:
    from blpdemand.integration.rule import Integration

def build_agent_frame(integration: Integration, market_ids: AnyArray, *, dimensions: int,
                      use_demographics: bool = True) -> pd.DataFrame:
    """Agent data for the given markets: ``market_ids``, ``weights``, ``nodes0..``, demographics.

    The rule gives I nodes and weights per market (``integration.nodes_weights``). When
    ``integration.demographics_data`` is given (and ``use_demographics``), each market's R
    demographic rows meet the nodes by ``integration.pairing``:

    - ``'pair'``: agent i gets node i and row i (R >= I in every market; rows past I unused,
      PyBLP's convention when agent data meet an integration rule);
    - ``'resample'``: agent i gets node i and a row drawn uniformly with replacement;
    - ``'cross'``: agent (i, r) gets node i, row r and weight w_i / R, the exact product of the
      rule and the empirical distribution (I R agents);
    - ``'auto'``: ``'cross'`` for quadrature rules, ``'pair'`` when R = I everywhere (and no
      census weights), else ``'resample'``.

    A ``weights`` column in the demographics (census sampling weights c_r, positive) makes the
    empirical distribution weighted: ``'cross'`` gives agent (i, r) the weight w_i c_r / sum c,
    ``'resample'`` draws row r with probability c_r / sum c; ``'pair'`` cannot use them.
    Weights sum to one in every market whatever the pairing.

    Parameters
    ----------
    integration : the rule.
    market_ids : (N,) market ids of the products (repeats allowed) or (T,) distinct ids.
    dimensions : K, the number of random coefficients (columns of X2).

    Returns
    -------
    DataFrame with sum_t I_t rows, sorted by market, that ``Problem(agents=...)`` accepts.

    Examples
    --------
    >>> from blpdemand.integration.rule import Integration
    >>> frame = build_agent_frame(Integration("halton", 4, rng=1), ["a", "b"], dimensions=2)
    >>> list(frame.columns), len(frame)
    (['market_ids', 'weights', 'nodes0', 'nodes1'], 8)
    """
    ids = pd.Index(pd.unique(pd.Series(np.asarray(market_ids)))).sort_values()
    per_market = integration.market_nodes_weights(dimensions, len(ids))
    demographics = integration.demographics_data if use_demographics else None
    if demographics is None:
        sizes = np.array([w.size for _, w in per_market])
        frame = pd.DataFrame({"market_ids": np.repeat(ids.to_numpy(), sizes),
                              "weights": np.concatenate([w for _, w in per_market])})
        return _with_nodes(frame, np.concatenate([n for n, _ in per_market]))
    return _with_demographics(integration, ids, per_market, demographics)


def _with_nodes(frame: pd.DataFrame, nodes: FloatArray) -> pd.DataFrame:
    node_frame = pd.DataFrame(nodes, columns=[f"nodes{k}" for k in range(nodes.shape[1])],
                              index=frame.index)
    return pd.concat([frame, node_frame], axis=1)


def _with_demographics(integration: Integration, ids: pd.Index,
                       per_market: list[tuple[FloatArray, FloatArray]],
                       demographics: pd.DataFrame) -> pd.DataFrame:
    """Pair each market's nodes with its demographic rows (see `build_agent_frame`)."""
    clash = [c for c in demographics.columns if str(c).startswith("nodes") and str(c)[5:].isdigit()]
    if clash:
        raise SpecificationError(
            f"demographics_data column(s) {clash} clash with agent node columns; rename them "
            "(nodes come from the integration rule)")
    codes = ids.get_indexer(demographics["market_ids"].to_numpy())
    counts = np.bincount(codes[codes >= 0], minlength=len(ids))
    if np.any(counts == 0):
        missing = ids[counts == 0][:5].tolist()
        raise DataError(
            f"demographics_data has no rows for market(s) {missing} "
            f"({int(np.sum(counts == 0))} market(s) in all); every market with products needs "
            "demographic draws")
    rows = demographics.loc[codes >= 0].drop(columns="market_ids")
    row_codes = codes[codes >= 0]
    order = np.argsort(row_codes, kind="stable")
    rows = rows.iloc[order].reset_index(drop=True)
    starts = np.concatenate([[0], np.cumsum(counts)])
    census = _census_weights(rows, ids, row_codes[order])
    if census is not None:
        rows = rows.drop(columns="weights")
    pairing = _resolve_pairing(integration, ids, counts, per_market, census is not None)
    generator = integration.demographics_generator()
    take: list[AnyArray] = []
    weights: list[FloatArray] = []
    nodes: list[FloatArray] = []
    for t, (nu, w) in enumerate(per_market):
        R, I = int(counts[t]), w.size
        c = np.full(R, 1.0 / R) if census is None else census[starts[t]:starts[t + 1]]
        c = c / c.sum()
        if pairing == "pair":
            take.append(starts[t] + np.arange(I))
            weights.append(w)
            nodes.append(nu)
        elif pairing == "resample":
            drawn = generator.integers(R, size=I) if census is None else generator.choice(R, I, p=c)
            take.append(starts[t] + drawn)
            weights.append(w)
            nodes.append(nu)
        else:  # cross: node i with row r, in node-major order
            take.append(np.tile(starts[t] + np.arange(R), I))
            weights.append(np.outer(w, c).ravel())
            nodes.append(np.repeat(nu, R, axis=0))
    sizes = np.array([w.size for w in weights])
    frame = pd.DataFrame({"market_ids": np.repeat(ids.to_numpy(), sizes),
                          "weights": np.concatenate(weights)})
    frame = _with_nodes(frame, np.concatenate(nodes))
    picked = rows.iloc[np.concatenate(take)].reset_index(drop=True)
    return pd.concat([frame, picked], axis=1)


def _census_weights(rows: pd.DataFrame, ids: pd.Index, codes: AnyArray) -> FloatArray | None:
    """The demographics' own ``weights`` column (positive, finite), or None."""
    if "weights" not in rows.columns:
        return None
    from blpdemand.data.validation import require_finite

    require_finite(rows, ["weights"], what="demographics_data")
    census = np.asarray(rows["weights"].to_numpy(dtype=np.float64), dtype=np.float64)
    if np.any(census <= 0):
        row = int(np.flatnonzero(census <= 0)[0])
        raise DataError(
            f"demographics_data column 'weights' (census sampling weights) must be positive; "
            f"found {float(census[row])!r} in market {ids.tolist()[codes[row]]!r}")
    return census


def _resolve_pairing(integration: Integration, ids: pd.Index, counts: AnyArray,
                     per_market: list[tuple[FloatArray, FloatArray]], weighted: bool) -> str:
    """'auto' becomes a concrete rule; 'pair' checks that R = I in every market."""
    nodes_per_market = np.array([w.size for _, w in per_market])
    pairing = integration.pairing
    if pairing == "auto":
        if integration.kind in QUADRATURE_KINDS:
            return "cross"
        if weighted:
            return "resample"
        return "pair" if np.array_equal(counts, nodes_per_market) else "resample"
    if pairing == "pair" and weighted:
        raise SpecificationError(
            "pairing='pair' cannot use the 'weights' column of demographics_data (census "
            "weights); use pairing='cross' or 'resample', or drop the column")
    if pairing == "pair" and np.any(counts < nodes_per_market):
        t = int(np.flatnonzero(counts < nodes_per_market)[0])
        raise DataError(
            f"pairing='pair' needs at least as many demographic rows as nodes in each market; "
            f"market {ids.tolist()[t]!r} has {int(counts[t])} rows and "
            f"{int(nodes_per_market[t])} nodes; "
            "use pairing='resample' or 'cross', or a smaller size")
    return pairing
