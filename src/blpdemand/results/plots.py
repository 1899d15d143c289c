"""Display objects for post-estimation: build with ``from_results``, draw with ``plot(ax=None)``.

matplotlib is imported only when drawing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from blpdemand._types import FloatArray
from blpdemand.results.elasticities import MarketMatrices, compute_elasticities


@dataclass(frozen=True, slots=True)
class ElasticityHeatmap:
    """A heatmap of one market's (J_t, J_t) elasticity (or diversion) matrix.

    Attributes
    ----------
    market_id : the market shown. labels : (J_t,) product labels.
    values : (J_t, J_t) entry [j, k] = elasticity of s_j with respect to x_k.
    title : the plot title.

    Examples
    --------
    >>> heatmap = ElasticityHeatmap.from_results(results, market="C01Q1")  # doctest: +SKIP
    >>> ax = heatmap.plot()                                                # doctest: +SKIP
    """

    market_id: object
    labels: tuple[str, ...]
    values: FloatArray
    title: str

    @classmethod
    def from_results(cls, results: Any, *, market: object = None,
                     name: str = "prices") -> ElasticityHeatmap:
        """From estimation results (or a FittedDemand, or precomputed MarketMatrices); the
        first market by default."""
        matrices = results if isinstance(results, MarketMatrices) else compute_elasticities(results, name)
        market_id = matrices.market_ids[0] if market is None else market
        frame: pd.DataFrame = matrices.market(market_id)
        return cls(market_id=market_id, labels=tuple(str(v) for v in frame.index),
                   values=frame.to_numpy(dtype=np.float64),
                   title=f"{matrices.kind.capitalize()} ({matrices.name}), market {market_id}")

    def plot(self, ax: Any = None) -> Any:
        """Draw on ``ax`` (a new figure if None); returns the Axes. Rows j, columns k."""
        import matplotlib.pyplot as plt
        from matplotlib.colors import TwoSlopeNorm

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 5))
        values = self.values
        finite = values[np.isfinite(values)]
        low = float(min(finite.min(initial=0.0), -1e-12))
        high = float(max(finite.max(initial=0.0), 1e-12))
        image = ax.imshow(values, cmap="RdBu_r", norm=TwoSlopeNorm(vcenter=0.0, vmin=low, vmax=high))
        ticks = np.arange(len(self.labels))
        ax.set_xticks(ticks, labels=self.labels, rotation=90, fontsize=6)
        ax.set_yticks(ticks, labels=self.labels, fontsize=6)
        if self.title.lower().startswith("diversion"):
            # D_jk: the share of j's lost sales (j's price rises) that goes to k.
            ax.set_xlabel("k (product that gains the diverted sales)")
            ax.set_ylabel("j (product whose price rises)")
        else:
            ax.set_xlabel("k (price that changes)")
            ax.set_ylabel("j (share that responds)")
        ax.set_title(self.title)
        # Ticks on both sides of zero: the two-slope scale would otherwise label one side only.
        sides = [np.linspace(end, 0.0, 4) for end in (low, high) if abs(end) > 1e-9]
        ticks_bar = np.unique(np.concatenate([[0.0], *sides]))
        ax.figure.colorbar(image, ax=ax, ticks=ticks_bar, format="%.3g")
        return ax
