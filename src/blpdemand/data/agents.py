"""Agent data: integration nodes nu_it, weights w_it and demographics y_it per market.

Rows are sorted by market, in the same market order as the products' ``MarketIndex``, so
market position t means the same market for products and agents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from blpdemand._types import FloatArray
from blpdemand.data.markets import MarketIndex

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True, slots=True)
class AgentData:
    """Validated agents, sorted by market (same market positions as the products).

    Attributes
    ----------
    markets : MarketIndex over agent rows (ids equal to the products' market ids).
    weights : (I,) integration weights w_it (sum to 1 in each market unless the rule says not).
    nodes : (I, K2) standard-normal nodes nu_it, one column per X2 characteristic.
    demographics : (I, D) observed demographics y_it.
    demographic_names : names of the D demographic columns.
    negative_weights : whether some weights may be negative (sparse-grid rules); shares are then
        weighted sums with mixed signs and may leave (0, 1) far from the solution.
    """

    markets: MarketIndex
    weights: FloatArray
    nodes: FloatArray
    demographics: FloatArray
    demographic_names: tuple[str, ...] = ()
    negative_weights: bool = False

    @property
    def I(self) -> int:
        return int(self.weights.shape[0])

    @property
    def D(self) -> int:
        return int(self.demographics.shape[1])

    def with_nodes(self, nodes: FloatArray) -> AgentData:
        """A copy with other nodes (same weights and demographics)."""
        return AgentData(markets=self.markets, weights=self.weights, nodes=np.asarray(nodes),
                         demographics=self.demographics, demographic_names=self.demographic_names,
                         negative_weights=self.negative_weights)


def load_agents(frame: pd.DataFrame, markets: MarketIndex, *,
                demographics: str | None = None,
                allow_negative_weights: bool = False) -> AgentData:
    """Validate an agent DataFrame (``market_ids``, ``weights``, ``nodes0..``, demographics).

    Markets are matched to the products' ``markets``; every product market needs agents, agent
    rows in markets without products are dropped. Weights must be positive unless
    ``allow_negative_weights`` (sparse grids), and each market's weights must have a positive
    sum. Sums away from one are kept (BLP 1995's importance-sampling weights sum to 0.154) but
    raise an `IntegrationWarning` naming the markets: s_jt = sum_i w_it s_ijt scales with them.
    """
    import pandas as pd

    from blpdemand.data.formulation import build_matrix
    from blpdemand.data.validation import (
        require_columns,
        require_finite,
        require_nonempty,
        require_unique_names,
    )
    from blpdemand.errors import DataError

    require_columns(frame, ["market_ids", "weights"], what="agent data")
    require_unique_names(frame, what="agent data")
    require_nonempty(frame, what="agent data")
    node_columns = sorted((c for c in frame.columns if str(c).startswith("nodes")
                           and str(c)[5:].isdigit()), key=lambda c: int(str(c)[5:]))
    require_finite(frame, ["weights", *node_columns], what="agent data", market_column="market_ids")
    if frame["market_ids"].isna().any():
        row = int(np.flatnonzero(frame["market_ids"].isna().to_numpy())[0])
        raise DataError("column 'market_ids' of agent data has missing values "
                        f"(first at row {row}); every agent needs a market")
    lookup = pd.Index(markets.ids)
    codes = lookup.get_indexer(frame["market_ids"].to_numpy())
    keep = codes >= 0
    hint = "" if keep.any() else _id_hint(frame["market_ids"].iloc[0], lookup[0])
    frame = frame.loc[keep]
    codes = codes[keep].astype(np.int64)
    present = np.bincount(codes, minlength=markets.T) > 0
    if not present.all():
        missing = markets.ids[~present]
        raise DataError(
            f"market(s) {', '.join(_label(m) for m in missing[:5])} have products but no "
            "agents in agent data; "
            "every market needs integration nodes and weights" + hint)
    order = np.argsort(codes, kind="stable")
    frame = frame.iloc[order].reset_index(drop=True)
    codes = codes[order]
    agent_markets = MarketIndex.from_sorted_codes(markets.ids, codes)
    weights = frame["weights"].to_numpy(dtype=np.float64)
    _check_weights(weights, agent_markets, allow_negative_weights)
    nodes = (frame[node_columns].to_numpy(dtype=np.float64) if node_columns
             else np.zeros((len(frame), 0)))
    if demographics:
        # the constant is a demographic only when written: "1 + income" (a lognormal mean)
        constant = None if explicit_constant(demographics) else False
        matrix = build_matrix(demographics, frame, intercept=constant, what="demographics formula")
        values, names = matrix.values, matrix.names
    else:
        values, names = np.zeros((len(frame), 0)), ()
    return AgentData(markets=agent_markets, weights=weights, nodes=nodes, demographics=values,
                     demographic_names=tuple(names),
                     negative_weights=bool(allow_negative_weights and np.any(weights < 0)))


def explicit_constant(formula: str) -> bool:
    """Whether a demographics formula writes the constant term ``1`` itself (``"1 + income"``).

    Formulas add a constant unless told otherwise; among demographics it is kept only when
    written, as the demographic of a lognormal coefficient's location (its Pi element).
    """
    terms = [term.strip() for term in formula.split("+")]
    return "1" in terms


def _id_hint(agent_id: object, product_id: object) -> str:
    """When no agent market matches, the ids usually differ in type (1971 vs '1971')."""
    return (f" (no agent market id matches a product market id: agent ids look like "
            f"{_label(agent_id)}, product ids like {_label(product_id)}; make both columns the "
            "same type)")


def _check_weights(weights: FloatArray, markets: MarketIndex, allow_negative: bool) -> None:
    """Weights positive (or negative allowed), positive per-market sums, sums near one (warn)."""
    import warnings

    from blpdemand.errors import DataError, IntegrationWarning

    bad = weights == 0 if allow_negative else weights <= 0
    if np.any(bad):
        t = markets.codes[int(np.flatnonzero(bad)[0])]
        rule = "nonzero" if allow_negative else "positive"
        hint = "" if allow_negative or weights[bad][0] == 0 else (
            "; negative weights come from sparse grids: if these agents are one (e.g. PyBLP's "
            "Integration('grid', level)), pass negative_weights=True to bd.Problem, or let "
            "blpdemand build it: agents=bd.Integration('sparse_grid', level)")
        raise DataError(f"agent weights must be {rule}; found {float(weights[bad][0])!r} in market "
                        f"{_label(markets.ids[t])} ({int(bad.sum())} bad weight(s)){hint}")
    sums = markets.segment_sum(weights)
    if np.any(sums <= 0):
        t = int(np.flatnonzero(sums <= 0)[0])
        raise DataError(f"agent weights in market {_label(markets.ids[t])} sum to {sums[t]:.6g}; "
                        "each market's weights must have a positive sum (ideally one)")
    off = np.abs(sums - 1.0) > 1e-8
    if np.any(off):
        shown = ", ".join(f"{_label(markets.ids[t])}: {sums[t]:.6g}"
                          for t in np.flatnonzero(off)[:5])
        warnings.warn(
            f"agent weights do not sum to one in {int(off.sum())} of {markets.T} market(s) "
            f"({shown}); shares scale with these sums. Kept as given (e.g. BLP 1995 "
            "importance-sampling weights); normalize them per market if that was not intended",
            IntegrationWarning, stacklevel=3)


def _label(market_id: object) -> str:
    """A market id as the user wrote it: 'C01Q1' or 1971, not np.int64(1971)."""
    item = getattr(market_id, "item", None)
    return repr(item() if callable(item) else market_id)
