"""Readable plots of large markets (issue 17): heatmaps show the top products by share with tick
labels that do not overlap, colour scales span the data, and the report's figures (profiles,
convergence) get ticks that do not collide.

References: the top products are the largest observed shares of the market (sorted here); the
values shown are the API's matrix at those rows and columns (the same numbers, exact); overlap
is measured on the label boxes that matplotlib's Agg renderer draws.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import blpdemand as bd
from blpdemand.results.diagnostics import ObjectiveProfile
from blpdemand.results.figures import render
from blpdemand.results.plots import ConvergencePlot, ElasticityHeatmap
from blpdemand.solve.progress import EvaluationRecord

J = 60


@pytest.fixture(scope="module")
def logit() -> tuple[Any, pd.DataFrame]:
    products = bd.simulate(markets=2, products=J, rng=7).products
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = bd.estimate_logit(products, linear="prices + x1 + x2",
                                    instruments=["w1", "w2"], method="2sls")
    return results, products


def _drawn(heatmap: ElasticityHeatmap) -> Any:
    """The heatmap drawn as the report draws it (7 x 5 inches, tight layout)."""
    fig = Figure(figsize=(7, 5))
    FigureCanvasAgg(fig)
    ax = heatmap.plot(fig.subplots())
    fig.tight_layout()
    fig.canvas.draw()
    return ax


def _overlapping(texts: list[Any], renderer: Any) -> list[tuple[str, str]]:
    """Pairs of visible, non-empty text artists whose drawn boxes intersect (0.5 px slack)."""
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts
             if t.get_visible() and t.get_text()]
    out = []
    for a in range(len(boxes)):
        for b in range(a + 1, len(boxes)):
            p, q = boxes[a][1], boxes[b][1]
            if (min(p.x1, q.x1) - max(p.x0, q.x0) > 0.5
                    and min(p.y1, q.y1) - max(p.y0, q.y0) > 0.5):
                out.append((boxes[a][0], boxes[b][0]))
    return out


def _visible_ticks(axis: Any) -> list[Any]:
    low, high = sorted(axis.get_view_interval())
    return [t.label1 for t in axis.get_major_ticks()
            if t.label1.get_visible() and low - 1e-9 <= t.get_loc() <= high + 1e-9]


def _top(products: pd.DataFrame, market: int, top: int = 25) -> list[Any]:
    rows = products[products["market_ids"] == market]
    return rows.sort_values("shares", ascending=False, kind="stable")["product_ids"].head(top).tolist()


def test_large_market_heatmap_shows_the_top_products_by_share(logit: tuple[Any, pd.DataFrame]
                                                              ) -> None:
    results, products = logit
    heatmap = ElasticityHeatmap.from_results(results, market=1)
    top = _top(products, 1)
    assert heatmap.labels == tuple(str(v) for v in top)
    full = bd.compute_elasticities(results).market(1)
    np.testing.assert_array_equal(heatmap.values, full.loc[top, top].to_numpy())
    assert "top 25 of 60 products" in heatmap.title


@pytest.mark.parametrize("source", ["results", "matrices"])
def test_heatmap_tick_labels_do_not_overlap(logit: tuple[Any, pd.DataFrame], source: str) -> None:
    # From results (top 25 by share) and from bare matrices (no shares: every product, labels
    # thinned): either way no two tick labels share pixels, and at most 25 are drawn per axis.
    results, _ = logit
    given = results if source == "results" else bd.compute_elasticities(results)
    ax = _drawn(ElasticityHeatmap.from_results(given, market=1))
    renderer = ax.figure.canvas.get_renderer()
    for axis in (ax.xaxis, ax.yaxis):
        labels = _visible_ticks(axis)
        assert 0 < len([t for t in labels if t.get_text()]) <= 25
        assert _overlapping(labels, renderer) == []


def test_titles_say_what_the_entries_mean(logit: tuple[Any, pd.DataFrame]) -> None:
    results, _ = logit
    assert bd.own_elasticity_summary(results).title.startswith("Own-price elasticities")
    elasticities = ElasticityHeatmap.from_results(results, market=1)
    assert "% change in j's share when k's price rises 1%" in elasticities.title
    diversion = ElasticityHeatmap.from_results(bd.compute_diversion_ratios(results), market=1)
    assert "outside good" in diversion.title


def test_colour_scales_span_the_data(logit: tuple[Any, pd.DataFrame]) -> None:
    # Logit diversion ratios are all positive: the colour scale runs from the minimum to the
    # maximum of the product-to-product entries (no half of the scale kept for negative values
    # that do not occur); the diagonal, diversion to the outside good, is masked (grey) and its
    # range given in the axis label. Elasticities have both signs: a diverging scale, zero in
    # the middle colour.
    results, _ = logit
    diversion = ElasticityHeatmap.from_results(bd.compute_diversion_ratios(results), market=1)
    diagonal = np.eye(len(diversion.labels), dtype=bool)
    between = diversion.values[~diagonal]
    assert between.min() > 0
    ax = _drawn(diversion)
    norm = ax.images[0].norm
    assert float(norm(between.min())) == pytest.approx(0.0, abs=1e-12)
    assert float(norm(between.max())) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_array_equal(np.ma.getmaskarray(ax.images[0].get_array()), diagonal)
    assert f"{diversion.values[diagonal].max():.3g}" in ax.get_xlabel()
    elasticities = ElasticityHeatmap.from_results(results, market=1)
    assert elasticities.values.min() < 0 < elasticities.values.max()
    norm = _drawn(elasticities).images[0].norm
    assert float(norm(0.0)) == pytest.approx(0.5, abs=1e-12)
    assert float(norm(elasticities.values.min())) == pytest.approx(0.0, abs=1e-12)
    assert float(norm(elasticities.values.max())) == pytest.approx(1.0, abs=1e-12)


class _Captured:
    """Report.figure's figure, kept when it is saved."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.figures: list[Any] = []
        original = Figure.savefig

        def savefig(fig: Any, *args: Any, **kwargs: Any) -> None:
            self.figures.append(fig)
            original(fig, *args, **kwargs)

        monkeypatch.setattr(Figure, "savefig", savefig)


def test_profile_panels_ticks_do_not_overlap(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # Grids like Nevo's profiles (pi[sugar, age] from -0.025 to 0.13, Q up to 9e5): 13 panels.
    spans = [(0.07, 1.05), (-0.7, 7.4), (-0.046, 0.034), (-0.47, 0.66), (-1.3, 5.9),
             (-230.0, 1400.0), (-0.75, -0.02), (-1.7, 3.2), (-72.0, 12.0), (-0.6, 3.2),
             (-0.0262, 0.1311), (-3.4, 0.7), (-1.4, 23.5)]
    grids = np.array([np.linspace(a, b, 11) for a, b in spans])
    values = 4.56 + np.array([(np.linspace(-1, 1, 11) ** 2) * s
                              for s in (20, 17, 17, 9, 270, 9e5, 320, 28, 7e5, 160, 27, 107, 27)])
    profile = ObjectiveProfile(names=tuple(f"p{k}" for k in range(13)), estimate=grids[:, 5],
                               objective=4.56, grids=grids, values=values)
    captured = _Captured(monkeypatch)
    render(tmp_path / "objective_profiles.png", profile.plot, panels=13)
    (fig,) = captured.figures
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.canvas.draw()
    for ax in fig.axes[:13]:
        for axis in (ax.xaxis, ax.yaxis):
            assert _overlapping(_visible_ticks(axis), renderer) == []


def test_convergence_evaluations_are_whole_numbers(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Three evaluations: the x axis counts evaluations, so its ticks are integers.
    records = [EvaluationRecord(step=1, start=0, evaluation=k, iteration=k, time=0.1 * k,
                                contraction_iterations=10, contraction_evaluations=10,
                                objective=10.0 / k, gradient_norm=1.0 / k,
                                theta=np.array([0.5]))
               for k in (1, 2, 3)]
    captured = _Captured(monkeypatch)
    render(tmp_path / "convergence.png", ConvergencePlot(records))
    (fig,) = captured.figures
    ticks = [t.get_loc() for t in fig.axes[0].xaxis.get_major_ticks()]
    low, high = sorted(fig.axes[0].get_xlim())
    shown = [x for x in ticks if low <= x <= high]
    assert shown and all(float(x).is_integer() for x in shown)
