"""What a plain Python REPL shows: short AND informative reprs of tables and estimation results.

Each repr must stay on about one screen (a character bound) and carry the estimates themselves
(the numbers formatted as the tables format them, 4 decimals), as statsmodels' and
linearmodels' results do. Data: a simulated problem (bd.simulate, 100 markets, seed 0, where
the estimated sigma is interior) and Nevo's cereal data evaluated at a fixed theta (no
optimization, so the test is fast).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.results.tables import Table, coefficient_table, format_value

INSTRUMENTS = [f"demand_instruments{k}" for k in range(20)]
SCREEN = 3000  # characters: about 40 lines of 75


@pytest.fixture(scope="module")
def sim() -> bd.SimulatedMarkets:
    return bd.simulate(markets=100, products=5, sigma={"x1": 1.0}, draws=50, rng=0)


@pytest.fixture(scope="module")
def logit(sim: bd.SimulatedMarkets) -> bd.LogitResults:
    return bd.estimate_logit(sim.products, linear=sim.linear, instruments=list(sim.instruments))


@pytest.fixture(scope="module")
def nevo(nevo_products: pd.DataFrame, nevo_agents: pd.DataFrame) -> bd.BLPResults:
    problem = bd.Problem(nevo_products, linear="prices", nonlinear="1 + prices + sugar + mushy",
                         agents=nevo_agents, absorb="C(product_ids)", instruments=INSTRUMENTS)
    return bd.evaluate(problem, sigma=[0.5, 2.0, 0.02, 0.2])


def test_table_repr_and_str_are_its_text() -> None:
    table = coefficient_table(["a", "b"], [1.5, -2.25], [0.5, 0.25], title="demo")
    assert str(table) == table.to_text()
    assert repr(table) == table.to_text()


def test_table_preview_keeps_the_first_rows_and_counts_the_rest() -> None:
    body = pd.DataFrame({"v": np.arange(50, dtype=float)}, index=[f"r{k}" for k in range(50)])
    text = Table(title="long", body=body, notes=("a note",)).preview(rows=5)
    assert "r4 " in text and "r5 " not in text
    assert "45 more rows" in text and "a note" in text


def test_logit_repr_shows_price_coefficient_and_standard_error(logit: bd.LogitResults) -> None:
    text = repr(logit)
    assert len(text) < SCREEN
    assert format_value(logit.params["prices"]) in text
    assert format_value(logit.bse["prices"]) in text
    assert str(logit.nobs) in text


def test_first_stage_report_shows_coefficients_and_f(logit: bd.LogitResults) -> None:
    report = logit.first_stage
    assert report is not None
    stage = report["prices"]
    for text in (repr(report), repr(stage)):
        assert len(text) < SCREEN
        assert f"{stage.params['w1']:.4f}" in text and f"{stage.bse['w1']:.4f}" in text
        assert f"{stage.f_effective:.2f}" in text and f"{stage.f_homoskedastic:.2f}" in text


def test_fitted_prices_first_stage_shows_coefficients(sim: bd.SimulatedMarkets) -> None:
    fs = bd.fit_prices(sim.products, "1 + x1 + x2", ["w1", "w2"])
    text = repr(fs)
    assert len(text) < SCREEN
    for name, value in zip(fs.names, fs.coefficients):
        assert name in text and f"{value:.4f}" in text
    assert f"{fs.r_squared:.4f}" in text


def test_blp_repr_is_one_screen_with_the_estimates(nevo: bd.BLPResults) -> None:
    text = repr(nevo)
    assert len(text) < SCREEN
    for name, value, se in zip(nevo.names, nevo.estimates, nevo.standard_errors):
        assert name in text and format_value(value) in text and format_value(se) in text
    assert str(nevo.problem.N) in text and str(nevo.problem.T) in text
    assert f"{nevo.objective:.6g}" in text
    assert "converged" in text.lower()


def test_blp_repr_of_an_estimate(sim: bd.SimulatedMarkets) -> None:
    problem = bd.Problem(sim.products, linear=sim.linear, nonlinear=sim.nonlinear,
                         agents=sim.agents, instruments=list(sim.instruments))
    results = bd.estimate(problem, sigma=[0.5])
    text = repr(results)
    assert len(text) < SCREEN and format_value(results.theta[0]) in text
    assert str(results) == text


def test_approximation_repr_shows_the_estimates(nevo_products: pd.DataFrame,
                                                nevo_agents: pd.DataFrame) -> None:
    problem = bd.Problem(nevo_products, linear="prices", nonlinear="1 + prices + sugar + mushy",
                         agents=nevo_agents, absorb="C(product_ids)", instruments=INSTRUMENTS)
    approx = bd.estimate_approximation(problem)
    text = repr(approx)
    assert len(text) < SCREEN
    assert f"{approx.beta[0]:.4f}" in text and f"{approx.beta_se[0]:.4f}" in text
    assert "sigma2[sugar]" in text and f"{approx.sigma_squared[2]:.4f}" in text
    assert str(problem.N) in text
