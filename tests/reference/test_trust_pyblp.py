"""Trustworthy defaults against PyBLP run live and closed forms.

- Hansen's J on Nevo 2-step: PyBLP's objective at the same theta with the same W (its objective
  is N g'Wg, Hansen's J with the efficient W); the p-value is the chi-squared tail with
  M - (K1 + P) degrees of freedom (scipy).
- The sparse-grid Nevo case where a failed contraction used to win (Q = 133.8 at a box corner,
  below the optimum): the default estimate reaches the optimum, which lies at Sigma = 0, where Q
  is the plain logit's GMM objective, computed here in closed form with numpy (product effects
  removed by demeaning, 2SLS, Q = N g'(Z'Z/N)^{-1} g).
- Simulated data with Pi x income, 2-step GMM: our default estimate from sigma 0.5 equals
  PyBLP's L-BFGS-B estimate under its default bounds (sigma >= 0), to 1e-6.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2

import blpdemand as bd
from blpdemand.errors import IdentificationWarning, OptimizationWarning

pyblp = pytest.importorskip("pyblp")
pyblp.options.verbose = False

NEVO_Z = [f"demand_instruments{k}" for k in range(20)]


def test_hansen_j_on_nevo_two_step_is_pyblps_objective(nevo_products, nevo_agents) -> None:
    sigma = np.diag([0.5580, 3.3124, 0.0, 0.0934])
    pi = np.array([[2.2918, 0, 1.2840, 0], [588.3252, -30.1920, 0, 11.0546],
                   [-0.3846, 0, 0.0523, 0], [0.7480, 0, -1.3538, 0]])
    problem = bd.Problem(nevo_products, linear="0 + prices",
                         nonlinear="1 + prices + sugar + mushy",
                         demographics="0 + income + income_squared + age + child",
                         agents=nevo_agents, absorb="C(product_ids)", instruments=NEVO_Z)
    ours = bd.evaluate(problem, sigma=sigma, pi=pi,
                       config=bd.EstimationConfig(method="2s", hessian=False))
    theirs = pyblp.Problem(
        (pyblp.Formulation("0 + prices", absorb="C(product_ids)"),
         pyblp.Formulation("1 + prices + sugar + mushy")), nevo_products,
        pyblp.Formulation("0 + income + income_squared + age + child"), nevo_agents)
    with np.errstate(all="ignore"):
        ref = theirs.solve(sigma=sigma, pi=pi, method="1s", W=ours.W,
                           optimization=pyblp.Optimization("return"))
    j = ours.hansen_j
    assert j.statistic == pytest.approx(float(ref.objective), rel=1e-8)
    assert j.df == 20 - 1 - 12 and j.efficient
    assert j.p_value == pytest.approx(chi2.sf(float(ref.objective), 7), rel=1e-12)
    assert str(j) in ours.summary().to_text()
    one = bd.evaluate(problem, sigma=sigma, pi=pi, config=bd.EstimationConfig(hessian=False))
    assert not one.hansen_j.efficient and "not a test" in str(one.hansen_j)


def test_sparse_grid_nevo_reaches_the_optimum_not_a_failed_corner(nevo_products) -> None:
    problem = bd.Problem(nevo_products, linear="prices", nonlinear="1 + prices + sugar",
                         agents=bd.Integration("sparse_grid", 4), absorb="C(product_ids)",
                         instruments=NEVO_Z)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = bd.estimate(problem, sigma=[0.5, 0.5, 0.5])
    # closed form at Sigma = 0: the logit GMM objective with product effects demeaned out
    data = nevo_products
    outside = 1 - data.groupby("market_ids")["shares"].transform("sum")
    y = np.log(data["shares"]) - np.log(outside)
    ids = data["product_ids"]
    demean = lambda v: v - v.groupby(ids).transform("mean")
    Y = demean(y).to_numpy()
    X = demean(data["prices"]).to_numpy()[:, None]
    Z = np.column_stack([demean(data[c]).to_numpy() for c in NEVO_Z])
    W = np.linalg.inv(Z.T @ Z / len(Y))
    ZX, ZY = Z.T @ X, Z.T @ Y
    beta = np.linalg.solve(ZX.T @ W @ ZX, ZX.T @ W @ ZY)
    g = Z.T @ (Y - X @ beta) / len(Y)
    logit_q = float(len(Y) * g @ W @ g)
    assert logit_q == pytest.approx(189.943177, rel=1e-8)
    assert results.objective == pytest.approx(logit_q, rel=1e-8)
    assert results.failed_markets.size == 0 and results.converged
    np.testing.assert_allclose(results.theta, 0.0, atol=1e-8)
    np.testing.assert_allclose(results.beta, beta, rtol=1e-7)
    # starts that ended where the contraction failed carry no objective and cannot win
    for start in results.starts:
        if start.optimization.status.value == "contraction failed at the estimate":
            assert np.isnan(start.optimization.objective)
    # at Sigma = 0 with a symmetric grid the moments do not move with Sigma: no SEs, said so
    assert any(issubclass(w.category, IdentificationWarning) for w in caught)
    assert any(issubclass(w.category, OptimizationWarning) and "on a bound" in str(w.message)
               for w in caught)


@pytest.fixture(scope="module")
def income_markets() -> tuple[pd.DataFrame, pd.DataFrame]:
    """60 markets x 8 products, a random coefficient on x1 and its interaction with income."""
    rng = np.random.default_rng(11)
    T, J, I = 60, 8, 60
    markets = np.repeat(np.arange(T), J)
    x1, x2 = rng.normal(size=T * J), rng.normal(size=T * J)
    w = rng.uniform(size=(T * J, 2))
    xi = 0.3 * rng.normal(size=T * J)
    prices = 1 + 0.5 * w.sum(axis=1) + 0.3 * xi + 0.1 * rng.normal(size=T * J) + 0.2 * x1
    nodes = rng.normal(size=(T * I, 1))
    income = rng.lognormal(size=T * I) - np.exp(0.5)
    agent_markets = np.repeat(np.arange(T), I)
    delta = -1 - 2 * prices + x1 - 0.5 * x2 + xi
    shares = np.zeros(T * J)
    for t in range(T):
        rows, people = markets == t, agent_markets == t
        mu = np.outer(x1[rows], 0.9 * nodes[people, 0] + 0.6 * income[people])
        u = np.exp(delta[rows][:, None] + mu)
        shares[rows] = (u / (1 + u.sum(axis=0))).mean(axis=1)
    rivals = pd.Series(x1).groupby(markets).transform("sum").to_numpy() - x1
    products = pd.DataFrame({
        "market_ids": markets, "firm_ids": np.tile(np.arange(J) % 3, T), "shares": shares,
        "prices": prices, "x1": x1, "x2": x2, "demand_instruments0": w[:, 0],
        "demand_instruments1": w[:, 1], "demand_instruments2": rivals,
        "demand_instruments3": x1 ** 2, "demand_instruments4": rivals ** 2})
    agents = pd.DataFrame({"market_ids": agent_markets, "weights": 1 / I,
                           "nodes0": nodes[:, 0], "income": income})
    return products, agents


def test_pi_income_two_step_default_equals_pyblp_lbfgsb(income_markets) -> None:
    products, agents = income_markets
    instruments = [f"demand_instruments{k}" for k in range(5)]
    problem = bd.Problem(products, linear="1 + prices + x1 + x2", nonlinear="0 + x1",
                         demographics="0 + income", agents=agents, instruments=instruments)
    results = bd.estimate(problem, sigma=[0.5], pi=[[0.5]],
                          config=bd.EstimationConfig(method="2s"))
    theirs = pyblp.Problem((pyblp.Formulation("1 + prices + x1 + x2"),
                            pyblp.Formulation("0 + x1")), products,
                           pyblp.Formulation("0 + income"), agents)
    with np.errstate(all="ignore"):
        ref = theirs.solve(sigma=[[0.5]], pi=[[0.5]], method="2s",
                           optimization=pyblp.Optimization("l-bfgs-b", {"gtol": 1e-8}))
    assert results.converged and results.failed_markets.size == 0
    np.testing.assert_allclose(results.theta, [float(ref.sigma[0, 0]), float(ref.pi[0, 0])],
                               rtol=1e-6)
    np.testing.assert_allclose(results.beta, np.asarray(ref.beta).ravel(), rtol=1e-6)
    assert results.objective == pytest.approx(float(ref.objective), rel=1e-8)
    assert results.sigma[0, 0] >= 0
