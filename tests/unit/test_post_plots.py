"""The elasticity heatmap display object draws the matrix it was built from (Agg backend)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import blpdemand as bd
from blpdemand.model.fitted import FittedDemand, logit_layout
from blpdemand.results.diversion import compute_diversion_ratios
from blpdemand.results.plots import ElasticityHeatmap


def _fitted() -> FittedDemand:
    data = pd.DataFrame({"market_ids": [1, 1, 1, 2, 2], "product_ids": list("abcab"),
                         "prices": [1.0, 1.5, 2.0, 1.2, 1.1], "z": [0.3, -1.0, 0.2, 0.5, 1.4],
                         "shares": [0.1, 0.2, 0.3, 0.25, 0.15]})
    problem = bd.Problem(data, linear="1 + prices", instruments=["z"])
    return FittedDemand(problem=problem, layout=logit_layout(problem), theta=np.zeros(0),
                        beta=np.array([1.0, -2.0]), delta=problem.products.logit_delta)


def test_heatmap_shows_the_market_matrix() -> None:
    # The image holds the logit closed form: diagonal alpha p (1 - s) for market 2.
    heatmap = ElasticityHeatmap.from_results(_fitted(), market=2)
    assert heatmap.labels == ("a", "b")
    np.testing.assert_allclose(np.diag(heatmap.values), [-2.0 * 1.2 * 0.75, -2.0 * 1.1 * 0.85], rtol=1e-12)
    fig, ax = plt.subplots()
    try:
        out = heatmap.plot(ax=ax)
        assert out is ax
        np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), heatmap.values)
        assert "market 2" in ax.get_title()
    finally:
        plt.close(fig)


def test_heatmap_of_diversion_ratios_default_market() -> None:
    # Rows of a diversion-ratio matrix sum to one (diagonal = outside good).
    heatmap = ElasticityHeatmap.from_results(compute_diversion_ratios(_fitted()))
    assert heatmap.market_id == 1
    np.testing.assert_allclose(heatmap.values.sum(axis=1), 1.0, rtol=1e-12)
    ax = heatmap.plot()
    plt.close(ax.figure)
