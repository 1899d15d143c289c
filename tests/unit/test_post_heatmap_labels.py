"""Heatmap axes say what rows and columns mean for each kind of matrix, with colorbar ticks on
both sides of zero."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np

from blpdemand.results.plots import ElasticityHeatmap


def _heatmap(title: str, values: np.ndarray) -> ElasticityHeatmap:
    return ElasticityHeatmap(market_id="m", labels=("a", "b"), values=values, title=title)


def test_diversion_axes_follow_the_definition() -> None:
    # Reference: D_jk = -(ds_k/dp_j)/(ds_j/dp_j) (results/diversion.py): row j's price rises.
    ax = _heatmap("Diversion ratios (prices), market m", np.array([[0.5, 0.3], [0.2, 0.6]])).plot()
    assert ax.get_ylabel().startswith("j (product whose price rises)")
    assert ax.get_xlabel().startswith("k (product that gains")


def test_elasticity_colorbar_ticks_span_both_signs() -> None:
    # Reference: the data's range [-5, 0.5]; the two-slope scale must label both sides.
    ax = _heatmap("Elasticities (prices), market m", np.array([[-5.0, 0.5], [0.1, -3.0]])).plot()
    assert ax.get_xlabel().startswith("k (price that changes)")
    colorbar_axes = ax.figure.axes[-1]
    ticks = np.asarray(colorbar_axes.get_yticks())
    assert ticks.min() == -5.0 and ticks.max() == 0.5 and np.any(ticks == 0.0)
