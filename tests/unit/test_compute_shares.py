"""``bd.compute_shares``: partial-equilibrium shares at changed prices/characteristics.

References:
- at the observed values the shares are the observed shares (delta solves s(delta) = S: to
  1e-10 relative, well above the contraction's 1e-14 tolerance on delta);
- plain logit on Nevo (2SLS, product effects absorbed): the closed form
  s_j = exp(d_j) / (1 + sum_k exp(d_k)), d_j = delta_j + alpha dp_j, computed with pandas
  (1e-12 relative: a few ulps of exp and a sum over 24 products);
- BLP on Nevo at the published estimates (demographics, bd.evaluate): central differences of
  compute_shares in one product's price (and sugar) equal the column of ds/dx from
  bd.compute_elasticities, epsilon_kj s_k / x_j (1e-5 relative: step 1e-5 relative, truncation
  ~1e-10).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import DataError, SpecificationError

NEVO_Z = [f"demand_instruments{k}" for k in range(20)]


@pytest.fixture(scope="module")
def nevo_logit(nevo_products: pd.DataFrame) -> bd.LogitResults:
    return bd.estimate_logit(nevo_products, linear="prices", instruments=NEVO_Z,
                             absorb="C(product_ids)")


@pytest.fixture(scope="module")
def nevo_blp(nevo_products: pd.DataFrame, nevo_agents: pd.DataFrame) -> bd.BLPResults:
    sigma = np.diag([0.5580, 3.3124, 0.0, 0.0934])
    pi = np.array([[2.2918, 0, 1.2840, 0], [588.3252, -30.1920, 0, 11.0546],
                   [-0.3846, 0, 0.0523, 0], [0.7480, 0, -1.3538, 0]])
    problem = bd.Problem(nevo_products, linear="0 + prices", nonlinear="1 + prices + sugar + mushy",
                         demographics="0 + income + income_squared + age + child",
                         agents=nevo_agents, absorb="C(product_ids)", instruments=NEVO_Z)
    results = bd.evaluate(problem, sigma=sigma, pi=pi, config=bd.EstimationConfig(hessian=False))
    assert results.failed_markets.size == 0
    return results


def test_observed_prices_give_observed_shares(nevo_products, nevo_logit, nevo_blp) -> None:
    observed = nevo_products["shares"].to_numpy()
    for results in (nevo_logit, nevo_blp, nevo_blp.fitted):
        np.testing.assert_allclose(bd.compute_shares(results), observed, rtol=1e-10)
        np.testing.assert_allclose(bd.compute_shares(results, prices=nevo_products["prices"]),
                                   observed, rtol=1e-10)


def test_logit_closed_form(nevo_products, nevo_logit) -> None:
    rng = np.random.default_rng(3)
    dp = 0.02 * rng.normal(size=len(nevo_products))
    # shuffled user rows: inputs and outputs follow the user's order
    data = nevo_products.sample(frac=1.0, random_state=1).reset_index(drop=True)
    results = bd.estimate_logit(data, linear="prices", instruments=NEVO_Z, absorb="C(product_ids)")
    ours = bd.compute_shares(results, prices=data["prices"].to_numpy() + dp)
    alpha = float(results.params["prices"])
    d = np.exp(results.delta + alpha * dp)
    expected = d / (1 + pd.Series(d).groupby(data["market_ids"]).transform("sum").to_numpy())
    np.testing.assert_allclose(ours, expected, rtol=1e-12)
    assert not np.allclose(ours, data["shares"].to_numpy(), rtol=1e-3)  # prices did move shares


@pytest.mark.parametrize("name", ["prices", "sugar"])
def test_blp_derivative_equals_elasticities(nevo_products, nevo_blp, name) -> None:
    market = nevo_products["market_ids"].iloc[0]
    rows = np.flatnonzero(nevo_products["market_ids"].to_numpy() == market)
    j = int(rows[3])
    x = nevo_products[name].to_numpy(dtype=np.float64)
    h = 1e-5 * abs(x[j])
    up, down = x.copy(), x.copy()
    up[j] += h
    down[j] -= h
    if name == "prices":
        s_up = bd.compute_shares(nevo_blp, prices=up, markets=[market])
        s_down = bd.compute_shares(nevo_blp, prices=down, markets=[market])
    else:
        s_up = bd.compute_shares(nevo_blp, characteristics=pd.DataFrame({name: up}),
                                 markets=market)
        s_down = bd.compute_shares(nevo_blp, characteristics={name: down}, markets=market)
    assert np.isnan(s_up[nevo_products["market_ids"].to_numpy() != market]).all()
    derivative = (s_up[rows] - s_down[rows]) / (2 * h)
    e = bd.compute_elasticities(nevo_blp.fitted, name).market(market).to_numpy()
    k = int(np.flatnonzero(rows == j)[0])  # the market's rows are in data order here
    shares = nevo_products["shares"].to_numpy()[rows]
    expected = e[:, k] * shares / x[j]  # ds_m / dx_j = epsilon_mj s_m / x_j
    np.testing.assert_allclose(derivative, expected, rtol=1e-5,
                               atol=1e-5 * np.abs(expected).max())


def test_errors_name_the_fix(nevo_products, nevo_blp) -> None:
    with pytest.raises(DataError, match="one value per product"):
        bd.compute_shares(nevo_blp, prices=np.ones(3))
    with pytest.raises(SpecificationError, match="neither in X1"):
        bd.compute_shares(nevo_blp, characteristics={"calories": np.ones(len(nevo_products))})
    with pytest.raises(SpecificationError, match="given twice"):
        bd.compute_shares(nevo_blp, prices=nevo_products["prices"],
                          characteristics={"prices": nevo_products["prices"]})
    with pytest.raises(DataError, match="not in the data"):
        bd.compute_shares(nevo_blp, markets=["nowhere"])
