"""Post-estimation objects in a plain REPL: one screen, and the numbers they hold.

Each repr stays under a character bound (about one screen) and contains the object's leading
numbers formatted as the tables format them (4 decimals). Data: a simulated problem
(bd.simulate, 100 markets, seed 0, where the estimated sigma is interior).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.results.io import capture
from blpdemand.results.tables import format_value

SCREEN = 3000


@pytest.fixture(scope="module")
def results() -> bd.BLPResults:
    sim = bd.simulate(markets=100, products=5, sigma={"x1": 1.0}, draws=50, rng=0)
    problem = bd.Problem(sim.products, linear=sim.linear, nonlinear=sim.nonlinear,
                         agents=sim.agents, instruments=list(sim.instruments))
    return bd.estimate(problem, sigma=[0.5])


def test_market_matrices(results: bd.BLPResults) -> None:
    matrices = results.elasticities()
    text = repr(matrices)
    assert len(text) < SCREEN
    assert "elasticities" in text and "prices" in text and str(len(matrices.market_ids)) in text
    assert format_value(matrices.matrices[0][0, 0]) in text  # first market, own elasticity
    assert format_value(matrices.matrices[0][0, 1]) in text  # and a cross elasticity


def test_counterfactual(results: bd.BLPResults) -> None:
    merger = results.merger([0, 1])
    text = repr(merger)
    assert len(text) < SCREEN
    row = merger.overview().to_frame().loc["all products"]
    assert format_value(row["mean price after"]) in text
    assert format_value(row["mean price before"]) in text


def test_bootstrap_draws_and_summary(results: bd.BLPResults) -> None:
    draws = results.bootstrap(draws=10, rng=0)
    text = repr(draws)
    assert len(text) < SCREEN
    assert "10" in text and draws.hold in text
    assert f"{draws.theta[:, 0].mean():.4f}" in text and f"{draws.theta[:, 0].std(ddof=1):.4f}" in text
    summary = draws.apply(lambda f: bd.compute_elasticities(f).diagonal())
    text = repr(summary)
    assert len(text) < SCREEN  # 500 entries: the first rows only
    assert format_value(summary.estimate[0]) in text and format_value(summary.std[0]) in text


def test_optimal_instruments(results: bd.BLPResults) -> None:
    optimal = bd.optimal_instruments(results)
    text = repr(optimal)
    assert len(text) < SCREEN
    assert optimal.method in text and all(name in text for name in optimal.names)
    assert optimal.results is not None and format_value(optimal.results.theta[0]) in text


def test_saved_results(results: bd.BLPResults, tmp_path: Path) -> None:
    saved = bd.load_results(bd.save_results(results, tmp_path / "r.json"))
    for obj in (saved, capture(results)):
        text = repr(obj)
        assert len(text) < SCREEN
        assert "blp" in text and format_value(results.theta[0]) in text
        assert format_value(results.beta[1]) in text


def test_objective_profile(results: bd.BLPResults) -> None:
    profile = bd.ObjectiveProfile.from_results(results, points=5)
    text = repr(profile)
    assert len(text) < SCREEN
    assert profile.names[0] in text and format_value(profile.estimate[0]) in text
    assert format_value(float(profile.values.min())) in text


def test_draws_stability(results: bd.BLPResults) -> None:
    stability = bd.DrawsStability.from_results(results, bd.Integration("monte_carlo", 20, rng=0),
                                               factors=(1, 2))
    text = repr(stability)
    assert len(text) < SCREEN
    values = stability.report.values
    assert format_value(values[0, 0]) in text and format_value(values[-1, 0]) in text
    assert np.all(np.isfinite(values))


def test_objective_contour(nevo_products: pd.DataFrame, nevo_agents: pd.DataFrame) -> None:
    problem = bd.Problem(nevo_products, linear="prices", nonlinear="1 + prices",
                         agents=nevo_agents, absorb="C(product_ids)",
                         instruments=[f"demand_instruments{k}" for k in range(20)])
    results = bd.evaluate(problem, sigma=[0.5, 2.0])
    contour = bd.ObjectiveContour.from_results(results, points=3)
    text = repr(contour)
    assert len(text) < SCREEN and all(name in text for name in contour.names)
    assert f"{contour.values.min():.6g}" in text and f"{contour.values.max():.6g}" in text
