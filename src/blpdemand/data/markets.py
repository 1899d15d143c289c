"""Markets stored once, sorted, with offsets and sizes: the `MarketIndex`.

Every kernel in blpdemand works on all markets at once. Rows of product (or agent) data are
sorted by market; market t owns rows ``offsets[t]:offsets[t+1]``. Segment sums over markets
are ``np.add.reduceat`` over those offsets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from blpdemand._types import AnyArray, FloatArray, IntArray


@dataclass(frozen=True, slots=True)
class MarketIndex:
    """Sorted markets with offsets: rows ``offsets[t]:offsets[t+1]`` belong to market ``ids[t]``.

    Attributes
    ----------
    ids : (T,) market identifiers in sorted order.
    offsets : (T+1,) start of each market's rows, ``offsets[-1] == N``.
    codes : (N,) market position ``t`` of every row.
    """

    ids: AnyArray
    offsets: IntArray
    codes: IntArray

    @classmethod
    def from_sorted_codes(cls, ids: AnyArray, codes: IntArray) -> MarketIndex:
        """Build from per-row codes already sorted ascending (0..T-1)."""
        counts = np.bincount(codes, minlength=len(ids)).astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(ids=np.asarray(ids), offsets=offsets, codes=np.asarray(codes, dtype=np.int64))

    @property
    def T(self) -> int:
        """Number of markets."""
        return len(self.ids)

    @property
    def N(self) -> int:
        """Number of rows (products or agents) over all markets."""
        return int(self.offsets[-1])

    @property
    def sizes(self) -> IntArray:
        """(T,) rows per market (J_t for products, I_t for agents)."""
        return np.diff(self.offsets)

    def segment_sum(self, values: FloatArray) -> FloatArray:
        """Sum rows within each market: (N, ...) -> (T, ...)."""
        values = np.asarray(values, dtype=np.float64)
        out = np.add.reduceat(values, self.offsets[:-1], axis=0)
        empty = self.sizes == 0
        if np.any(empty):
            out[empty] = 0.0
        return out

    def expand(self, per_market: AnyArray) -> AnyArray:
        """Broadcast a per-market array to rows: (T, ...) -> (N, ...)."""
        return np.asarray(per_market)[self.codes]

    def slice(self, t: int) -> slice:
        """Row slice of market position ``t``."""
        return slice(int(self.offsets[t]), int(self.offsets[t + 1]))

    def position(self, market_id: object) -> int:
        """Position t of a market id; raises KeyError if unknown."""
        hits = np.flatnonzero(self.ids == market_id)
        if hits.size == 0:
            raise KeyError(market_id)
        return int(hits[0])


def sort_by_market(frame: pd.DataFrame, column: str) -> tuple[pd.DataFrame, MarketIndex, IntArray]:
    """Stable-sort rows by market id; return (sorted frame, index, order).

    ``order[k]`` is the original row position of sorted row ``k``, so results can be put back in
    the user's order with ``out[order] = sorted_values``.
    """
    codes, uniques = pd.factorize(frame[column], sort=True)
    order = np.argsort(codes, kind="stable").astype(np.int64)
    sorted_frame = frame.iloc[order].reset_index(drop=True)
    index = MarketIndex.from_sorted_codes(np.asarray(uniques), codes[order].astype(np.int64))
    return sorted_frame, index, order
