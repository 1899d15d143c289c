"""``to_frame()``: every estimator's results as a DataFrame indexed by parameter name, with the
columns of the summary tables (estimate, std. error, t, p-value, 95% interval).

Reference: the results' own arrays (estimates and standard errors, exactly) and the closed
forms t = b / se, p = 2 (1 - Phi(|t|)) (normal, as the summaries), to 1e-12 relative.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import blpdemand as bd

INSTRUMENTS = [f"demand_instruments{k}" for k in range(20)]
COLUMNS = ["estimate", "std. error", "t", "p-value", "[0.025", "0.975]"]


def _check(frame: pd.DataFrame, names: list[str], b: np.ndarray, se: np.ndarray) -> None:
    assert list(frame.columns[:6]) == COLUMNS
    assert list(frame.index) == names
    np.testing.assert_array_equal(frame["estimate"].to_numpy(), b)
    np.testing.assert_array_equal(frame["std. error"].to_numpy(), se)
    t = b / se
    np.testing.assert_allclose(frame["t"].to_numpy(), t, rtol=1e-12)
    np.testing.assert_allclose(frame["p-value"].to_numpy(), 2 * stats.norm.sf(np.abs(t)),
                               rtol=1e-12)
    q = stats.norm.ppf(0.975)
    np.testing.assert_allclose(frame["0.975]"].to_numpy(), b + q * se, rtol=1e-12)


@pytest.fixture(scope="module")
def nevo_problem(nevo_products: pd.DataFrame, nevo_agents: pd.DataFrame) -> bd.Problem:
    return bd.Problem(nevo_products, linear="prices", nonlinear="1 + prices + sugar + mushy",
                      agents=nevo_agents, absorb="C(product_ids)", instruments=INSTRUMENTS)


def test_logit_to_frame(nevo_products: pd.DataFrame) -> None:
    logit = bd.estimate_logit(nevo_products, linear="prices", absorb="C(product_ids)",
                              instruments=INSTRUMENTS)
    _check(logit.to_frame(), list(logit.names), logit.params.to_numpy(), logit.bse.to_numpy())


def test_blp_to_frame(nevo_problem: bd.Problem) -> None:
    results = bd.evaluate(nevo_problem, sigma=[0.5, 2.0, 0.02, 0.2])
    _check(results.to_frame(), list(results.names), results.estimates, results.standard_errors)
    assert results.to_frame().equals(results.summary().to_frame())


def test_approximation_to_frame_adds_t_and_p(nevo_problem: bd.Problem) -> None:
    approx = bd.estimate_approximation(nevo_problem)
    frame = approx.to_frame()
    K1 = nevo_problem.K1
    beta = frame.iloc[:K1]
    _check(beta, list(approx.names[:K1]), approx.beta, approx.beta_se)
    sugar = frame.loc["sigma2[sugar]"]
    assert sugar["estimate"] == approx.sigma_squared[2]
    assert np.isclose(sugar["t"], sugar["estimate"] / sugar["std. error"], rtol=1e-12)
    assert np.isnan(frame.loc["sigma[prices]", "t"])  # sigma^2 < 0: sigma 0 with NaN SE
    assert "note" in frame.columns  # the existing column stays
