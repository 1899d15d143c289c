"""Diagnostics display objects: objective profiles, contour and draws stability (Agg backend).

References: at a local minimum found by the optimizer, Q at the estimate is the smallest value
on each profile and on the contour grid (the estimate is the grid's center); the center value
equals results.objective (same W, rel 1e-10). Draws stability: factor 1 re-estimates the
original problem, so its row equals the first estimate (rel 1e-6).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.instruments.differentiation import build_differentiation_instruments
from blpdemand.results.diagnostics import (
    DrawsStability,
    ObjectiveContour,
    ObjectiveProfile,
)


def _problem(agents: object) -> bd.Problem:
    sim = bd.simulate(markets=30, products=6, sigma={"x1": 1.0, "prices": 0.4}, draws=50, rng=5)
    gh = build_differentiation_instruments(sim.products, "0 + x1 + x2", version="quadratic",
                                           split=False)
    frame = pd.concat([sim.products, gh], axis=1)
    agents = sim.agents if agents is None else agents
    return bd.Problem(frame, linear=sim.linear, nonlinear=sim.nonlinear, agents=agents,
                      instruments=list(sim.instruments) + list(gh.columns))


@pytest.fixture(scope="module")
def results() -> bd.BLPResults:
    return bd.estimate(_problem(None), sigma=[0.5, 0.5],
                       config=bd.EstimationConfig(hessian=False))


def test_profiles_and_contour_are_smallest_at_the_estimate(results: bd.BLPResults) -> None:
    profile = ObjectiveProfile.from_results(results, points=5)
    assert profile.values.shape == (2, 5)
    np.testing.assert_allclose(profile.values[:, 2], results.objective, rtol=1e-10)
    assert np.all(profile.values >= results.objective * (1 - 1e-12))
    contour = ObjectiveContour.from_results(results, points=5)
    np.testing.assert_allclose(contour.values[2, 2], results.objective, rtol=1e-10)
    assert contour.values.min() >= results.objective * (1 - 1e-12)
    assert len(profile.table().to_frame()) == 10
    figure = profile.plot()
    assert len(figure.axes) == 2
    ax = contour.plot()
    assert ax.get_xlabel() == results.layout.names[0]
    matplotlib.pyplot.close("all")


def test_profile_lines_and_contour_rows_are_jobs_with_the_same_values(
        results: bd.BLPResults) -> None:
    # Reference: the sequential run. Each line (row) is evaluated with its own objective from
    # the estimate's delta, so threads change nothing; Q alone (no gradient) equals the Q the
    # estimator computes with its gradient.
    one = ObjectiveProfile.from_results(results, points=5)
    two = ObjectiveProfile.from_results(results, points=5, workers=2)
    np.testing.assert_array_equal(one.values, two.values)
    grid = ObjectiveContour.from_results(results, points=3, workers=2)
    np.testing.assert_array_equal(grid.values, ObjectiveContour.from_results(
        results, points=3).values)
    from blpdemand.results.diagnostics import _objective

    point = results.theta * 1.1
    q = _objective(results)
    alone = q.objective(point)
    # recomputed with the gradient, from the converged delta: equal to the inner loop's noise
    assert q.evaluate(point, adjoint=True).objective == pytest.approx(alone, rel=1e-12)
    assert np.all(np.isfinite(q.evaluate(point, adjoint=True).gradient))


def test_draws_stability_reestimates_with_refined_rules() -> None:
    rule = bd.Integration("sobol", 64, rng=0)
    base = bd.estimate(_problem(rule), sigma=[0.5, 0.5], config=bd.EstimationConfig(hessian=False))
    stability = DrawsStability.from_results(base, rule, factors=(1, 2))
    values = stability.report.values
    assert values.shape == (2, len(base.names))
    np.testing.assert_allclose(values[0], base.estimates, rtol=1e-6)
    assert "relative change" in stability.table().to_frame().columns
    stability.plot()
    matplotlib.pyplot.close("all")
