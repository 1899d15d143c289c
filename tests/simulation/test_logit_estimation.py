"""estimate_logit on simulated markets with known truth (blpdemand.model.simulation)."""

from __future__ import annotations

import numpy as np
import pytest

from blpdemand.errors import WeakInstrumentsWarning
from blpdemand.model.simulation import simulate
from blpdemand.results.logit import estimate_logit


@pytest.fixture(scope="module")
def sim():
    return simulate(markets=200, products=10, rng=12)


def test_iv_recovers_truth_and_ols_is_biased_toward_zero(sim) -> None:
    # Reference: the true alpha = -1 and beta of the simulation; IV within 4 standard errors,
    # OLS biased toward zero because prices rise with xi (rho > 0).
    iv = estimate_logit(sim.products, linear=sim.linear, instruments=list(sim.instruments))
    ols = estimate_logit(sim.products, linear=sim.linear, method="ols")
    alpha = sim.truth["alpha"]
    assert abs(iv.params["prices"] - alpha) < 4 * iv.bse["prices"]
    for name, value in sim.truth["beta"].items():
        assert abs(iv.params[name] - value) < 4 * iv.bse[name]
    assert alpha < ols.params["prices"] < 0
    assert abs(ols.params["prices"] - alpha) > 10 * ols.bse["prices"]
    gmm = estimate_logit(sim.products, linear=sim.linear, instruments=list(sim.instruments),
                         method="2s-gmm")
    assert abs(gmm.params["prices"] - alpha) < 4 * gmm.bse["prices"]
    assert iv.first_stage["prices"].f_statistic > 100


def test_results_in_user_row_order_and_fitted(sim) -> None:
    # Reference: closed form alpha p (1 - s) computed on the shuffled user rows; FittedDemand's
    # xi equals the results' xi (same within transformation); tolerance 1e-12.
    shuffled = sim.products.sample(frac=1.0, random_state=0).reset_index(drop=True)
    res = estimate_logit(shuffled, linear=sim.linear, instruments=list(sim.instruments),
                         absorb="C(product_ids)")
    expected = res.params["prices"] * shuffled["prices"] * (1 - shuffled["shares"])
    np.testing.assert_allclose(res.own_price_elasticities(), expected, rtol=1e-12)
    fitted = res.fitted
    assert fitted.theta.size == 0 and fitted.layout.P == 0
    np.testing.assert_allclose(res.problem.products.unsort(fitted.xi), res.xi, atol=1e-10)
    # results' delta and xi are in the user's row order: shuffled["xi"] = res.xi lines up
    # (reference: the Berry inversion log s - log s0 computed on the shuffled rows, 1e-12)
    outside = 1 - shuffled.groupby("market_ids")["shares"].transform("sum")
    np.testing.assert_allclose(res.delta, np.log(shuffled["shares"] / outside), rtol=1e-12)
    assert fitted.alpha == res.params["prices"]
    clustered = res.with_covariance("clustered", clusters="market_ids")
    assert clustered.covariance_type == "clustered" and res.covariance_type == "robust"
    assert clustered.clusters == 200
    np.testing.assert_array_equal(clustered.params, res.params)
    with pytest.raises(AttributeError):
        res.method = "ols"  # type: ignore[misc]


def test_weak_instruments_warn() -> None:
    # Reference: prices do not depend on the cost shifters (gamma = 0) -> F is small.
    weak = simulate(markets=20, products=5, gamma=[0.0, 0.0], rng=1)
    with pytest.warns(WeakInstrumentsWarning, match="'prices'"):
        res = estimate_logit(weak.products, linear=weak.linear,
                             instruments=list(weak.instruments))
    assert res.first_stage["prices"].weak


def test_price_units_do_not_matter(sim) -> None:
    # Reference: closed form. Prices in cents (x100) divide alpha and its SE by 100 and leave
    # elasticities unchanged; tolerance 1e-9.
    cents = sim.products.assign(prices=sim.products["prices"] * 100.0)
    base = estimate_logit(sim.products, linear=sim.linear, instruments=list(sim.instruments))
    scaled = estimate_logit(cents, linear=sim.linear, instruments=list(sim.instruments))
    assert scaled.params["prices"] == pytest.approx(base.params["prices"] / 100, rel=1e-9)
    assert scaled.bse["prices"] == pytest.approx(base.bse["prices"] / 100, rel=1e-9)
    np.testing.assert_allclose(scaled.own_price_elasticities(), base.own_price_elasticities(),
                               rtol=1e-9)
