"""Display objects for post-estimation: build with ``from_results``, draw with ``plot(ax=None)``.

matplotlib is imported only when drawing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from blpdemand._types import FloatArray
from blpdemand.results.elasticities import MarketMatrices, as_fitted, compute_elasticities
from blpdemand.results.tables import top_by_share
from blpdemand.solve.progress import EvaluationRecord

TOP_PRODUCTS = 25  # products a heatmap or a LaTeX/HTML matrix shows: the largest shares
MAX_TICK_LABELS = 25  # tick labels per heatmap axis (more overlap at the report's size)


#: by the kind of matrix: the labels of columns k and rows j, and what the grey diagonal holds
#: (None: the diagonal is coloured with the rest)
AXES: dict[str, tuple[str, str, str | None]] = {
    "diversion": ("k (product that gains the diverted sales)", "j (product whose price rises)",
                  "outside good"),
    "pass-through": ("k (product whose marginal cost rises)", "j (price that responds)",
                     "own pass-through"),
    "": ("k (price that changes)", "j (share that responds)", None),
}


@dataclass(frozen=True, slots=True)
class ElasticityHeatmap:
    """A heatmap of one market's (J_t, J_t) elasticity (or diversion) matrix.

    Built from estimation results, a large market shows its ``top`` products by share (25 by
    default), largest first; the title says how many of how many.

    Attributes
    ----------
    market_id : the market shown. labels : (n,) product labels.
    values : (n, n) entry [j, k] = elasticity of s_j with respect to x_k (or diversion j -> k).
    title : the plot title. kind : "elasticities", "diversion ratios", ... ("" reads the title).

    Examples
    --------
    >>> heatmap = ElasticityHeatmap.from_results(results, market="C01Q1")  # doctest: +SKIP
    >>> ax = heatmap.plot()                                                # doctest: +SKIP
    """

    market_id: object
    labels: tuple[str, ...]
    values: FloatArray
    title: str
    kind: str = ""

    @classmethod
    def from_results(cls, results: Any, *, market: object = None, name: str = "prices",
                     top: int | None = TOP_PRODUCTS, shares: Any = None) -> ElasticityHeatmap:
        """From estimation results (or a FittedDemand, or precomputed MarketMatrices); the
        first market by default.

        ``top`` products with the largest ``shares`` ((J_t,) in the matrix's order; read from
        the results when not given) are shown; None shows every product. Bare MarketMatrices
        without ``shares`` show every product (tick labels thinned to stay readable).
        """
        given = isinstance(results, MarketMatrices)
        matrices = results if given else compute_elasticities(results, name)
        market_id = matrices.market_ids[0] if market is None else market
        frame: pd.DataFrame = matrices.market(market_id)
        if shares is None and not given:
            shares = market_shares(results, matrices, market_id)
        kept = ""
        if shares is not None:
            frame, kept = top_by_share(frame, shares, top=top)
        heading = matrices.title(market_id) + (f" ({kept})" if kept else "")
        return cls(market_id=market_id, labels=tuple(str(v) for v in frame.index),
                   values=frame.to_numpy(dtype=np.float64),
                   title=f"{heading}\n{matrices.meaning}", kind=matrices.kind)

    def plot(self, ax: Any = None) -> Any:
        """Draw on ``ax`` (a new figure if None); returns the Axes. Rows j, columns k.

        Values of both signs get a diverging scale centred on zero; one-signed values a
        sequential scale over their range. Diversion ratios and pass-through colour the
        product-to-product entries; the diagonal (diversion to the outside good, own
        pass-through: often ten times larger) is grey, its range in the axis label."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 5))
        n = len(self.labels)
        kind = (self.kind or self.title).lower()
        x_label, y_label, greyed = AXES[next((k for k in AXES if k and k in kind), "")]
        diagonal = (np.eye(n, dtype=bool) if greyed and n > 1
                    else np.zeros((n, n), dtype=bool))
        image, ticks_bar = _image(ax, self.values, diagonal)
        step = -(-n // MAX_TICK_LABELS)  # every step-th label: at most MAX_TICK_LABELS
        ticks = np.arange(0, n, step)
        shown = [self.labels[k] for k in ticks]
        size = 6 if n > 15 else 7
        ax.set_xticks(ticks, labels=shown, rotation=90, fontsize=size)
        ax.set_yticks(ticks, labels=shown, fontsize=size)
        if greyed:
            hidden = self.values[diagonal]
            grey = (f"; grey diagonal: {greyed}, {hidden.min():.3g} to {hidden.max():.3g}"
                    if hidden.size else "")
            ax.set_xlabel(f"{x_label}{grey}", fontsize=9)
        else:
            ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.set_title(self.title, fontsize=9)
        ax.figure.colorbar(image, ax=ax, ticks=ticks_bar, format="%.3g")
        return ax


def _image(ax: Any, values: FloatArray, hidden: Any) -> tuple[Any, Any]:
    """imshow with a colour scale fitted to the entries not ``hidden`` ((n, n) bool; those are
    drawn grey); returns the image and the colorbar ticks."""
    import matplotlib
    from matplotlib.colors import Normalize, TwoSlopeNorm
    from matplotlib.ticker import MaxNLocator

    scaled = values[~hidden]
    finite = scaled[np.isfinite(scaled)]
    low = float(finite.min()) if finite.size else 0.0
    high = float(finite.max()) if finite.size else 1.0
    shown = np.ma.masked_array(values, mask=hidden)
    if low < 0.0 < high:
        cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="lightgrey")
        image = ax.imshow(shown, cmap=cmap, norm=TwoSlopeNorm(vcenter=0.0, vmin=low, vmax=high))
        # Ticks on both sides of zero: the two-slope scale would otherwise label one side only.
        sides = [np.linspace(end, 0.0, 4) for end in (low, high) if abs(end) > 1e-9]
        return image, np.unique(np.concatenate([[0.0], *sides]))
    if low == high:
        pad = max(abs(low) * 1e-3, 1e-12)
        low, high = low - pad, high + pad
    # one sign: a sequential scale over the data's range
    cmap = matplotlib.colormaps["Reds" if low >= 0.0 else "Blues_r"].with_extremes(
        bad="lightgrey")
    image = ax.imshow(shown, cmap=cmap, norm=Normalize(vmin=low, vmax=high))
    ticks = np.asarray(MaxNLocator(nbins=5).tick_values(low, high), dtype=np.float64)
    return image, ticks[(ticks >= low) & (ticks <= high)]


def market_shares(results: Any, matrices: MarketMatrices, market_id: object) -> FloatArray:
    """(J_t,) observed shares of one market, in the order of ``matrices.market(market_id)``."""
    fitted = as_fitted(results, nested=True)
    t = int(np.flatnonzero(matrices.market_ids == market_id)[0])
    shares: FloatArray = fitted.problem.products.shares
    return shares[matrices.offsets[t]:matrices.offsets[t + 1]]


def readable_ticks(fig: Any, *, bins: int = 5) -> None:
    """Numeric axes of ``fig`` with tick labels that do not overlap.

    Axes with matplotlib's default locator get at most ``bins`` + 1 ticks and short numbers
    (powers of ten beyond 1e4 or below 1e-3 go to the axis' offset label); where labels still
    collide after layout, fewer ticks, then x labels rotated. Categorical, log and other
    explicitly set tick locators are left alone. Lays the figure out (``tight_layout``).
    """
    from matplotlib.ticker import AutoLocator, MaxNLocator, ScalarFormatter

    numeric = [axis for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)
               if type(axis.get_major_locator()) is AutoLocator]
    counts = {id(axis): bins for axis in numeric}
    for axis in numeric:
        axis.set_major_locator(MaxNLocator(nbins=bins, steps=_STEPS))
        formatter = axis.get_major_formatter()
        if isinstance(formatter, ScalarFormatter):
            formatter.set_powerlimits((-3, 4))
    renderer = _renderer(fig)
    for _ in range(bins):
        fig.tight_layout()
        fig.draw_without_rendering()  # sets the tick labels' text and positions (no raster)
        crowded = [axis for axis in numeric if _collide(axis, renderer)]
        if not crowded:
            return
        for axis in crowded:
            if counts[id(axis)] > 2:
                counts[id(axis)] -= 1
                axis.set_major_locator(MaxNLocator(nbins=counts[id(axis)], steps=_STEPS))
            elif axis.axis_name == "x":
                axis.set_tick_params(labelrotation=45)
                for label in axis.get_ticklabels():
                    label.set_horizontalalignment("right")
    fig.tight_layout()


_STEPS = [1, 2, 2.5, 5, 10]  # tick spacings times a power of ten


def _renderer(fig: Any) -> Any:
    """The figure's renderer (an Agg canvas attached when it has none)."""
    if not hasattr(fig.canvas, "get_renderer"):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
    return fig.canvas.get_renderer()


def _collide(axis: Any, renderer: Any) -> bool:
    """Whether two of the axis' drawn tick labels overlap (boxes sharing over 0.5 pixel)."""
    low, high = sorted(axis.get_view_interval())
    span = 1e-9 * max(abs(low), abs(high), 1.0)
    ticks = [t for t in axis.get_major_ticks() if low - span <= t.get_loc() <= high + span]
    boxes = [t.label1.get_window_extent(renderer) for t in ticks
             if t.label1.get_visible() and t.label1.get_text()]
    return any(min(p.x1, q.x1) - max(p.x0, q.x0) > 0.5 and min(p.y1, q.y1) - max(p.y0, q.y0) > 0.5
               for k, p in enumerate(boxes) for q in boxes[k + 1:])


@dataclass(frozen=True)
class ConvergencePlot:
    """A drawing of the objective and the gradient inf-norm at each evaluation, per
    (step, start): ``ConvergencePlot(records)(ax)`` (picklable, so drawn in another process)."""

    records: Sequence[EvaluationRecord]

    def __call__(self, ax: Any) -> Any:
        from matplotlib.ticker import MaxNLocator

        runs: dict[tuple[int, int], list[EvaluationRecord]] = {}
        for r in self.records:
            runs.setdefault((r.step, r.start), []).append(r)
        right = ax.twinx()
        for (step, start), rows in runs.items():
            x = [r.evaluation for r in rows]
            label = f"step {step}" + (f", start {start}" if len(runs) > 2 or start else "")
            line = ax.plot(x, [r.objective for r in rows], label=label)[0]
            right.plot(x, [max(r.gradient_norm, 1e-300) for r in rows], linestyle=":",
                       color=line.get_color())
        ax.set_yscale("symlog")
        right.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))  # evaluations count
        ax.set_xlabel("objective evaluation")
        ax.set_ylabel("objective Q(theta) (solid)")
        right.set_ylabel("gradient inf-norm (dotted)")
        ax.set_title("Convergence of the GMM objective")
        ax.legend(loc="upper right", fontsize=7, ncol=2 if len(runs) > 5 else 1)
        return ax
