"""Elasticities and diversion on the blocked engine (results/elasticities.blocked_jacobians,
model/pricing.block_share_jacobians) against the per-market closed form ds_j/dp_k =
sum_i w_i alpha_i s_ij (1{j=k} - s_ik) (model/pricing.share_jacobian on each market's
MarketDemand), on markets of unequal sizes (several blocks, one-product markets), with random
coefficients and for the plain logit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.model.demand import market_demands
from blpdemand.model.pricing import share_jacobian
from blpdemand.results.elasticities import as_fitted, blocked_jacobians


def _unequal_results(random: bool) -> bd.BLPResults | bd.LogitResults:
    sim = bd.simulate(markets=12, products=6, sigma={"x1": 1.0}, draws=25, rng=4)
    products = sim.products
    keep = products["product_ids"] < 6 - products["market_ids"] % 4  # sizes 6, 5, 4, 3
    keep |= products["product_ids"] == 0
    products = products[keep | (products["market_ids"] == 11) & (products["product_ids"] == 0)]
    products = products[~((products["market_ids"] == 11) & (products["product_ids"] > 0))]
    products = pd.DataFrame(products).reset_index(drop=True)  # market 11: one product
    if not random:
        return bd.estimate_logit(products, linear="1 + prices + x1 + x2", instruments=["w1", "w2"])
    problem = bd.Problem(products, linear="1 + prices + x1 + x2", nonlinear="0 + x1",
                         agents=sim.agents, instruments=["w1", "w2"])
    return bd.evaluate(problem, sigma=[[1.0]], config=bd.EstimationConfig(hessian=False))


def test_blocked_jacobians_equal_the_per_market_closed_form() -> None:
    for random in (True, False):
        fitted = as_fitted(_unequal_results(random))
        jacobians, shares = blocked_jacobians(fitted)
        demands = market_demands(fitted)
        assert len(jacobians) == len(demands) == 12
        assert {j.shape[0] for j in jacobians} == {1, 3, 4, 5, 6}
        for jac, s, demand in zip(jacobians, shares, demands):
            expected = share_jacobian(demand.probabilities(), demand.weights, demand.alpha)
            scale = np.abs(expected).max()
            # a J x J Jacobian (J <= 6) two ways: some ulps of its largest element apart
            np.testing.assert_allclose(jac, expected, rtol=0, atol=1e-12 * scale)
            np.testing.assert_allclose(s, demand.shares(), rtol=1e-13)


def test_elasticities_and_diversion_rows_from_the_blocks() -> None:
    # epsilon_jk = (ds_j/dp_k) p_k / s_j from the per-market closed form; diversion rows sum
    # to one (the outside good on the diagonal)
    results = _unequal_results(True)
    fitted = as_fitted(results)
    elasticities = bd.compute_elasticities(fitted)
    diversion = bd.compute_diversion_ratios(fitted)
    for t, demand in enumerate(market_demands(fitted)):
        jac = share_jacobian(demand.probabilities(), demand.weights, demand.alpha)
        expected = jac * demand.prices[None, :] / demand.shares()[:, None]
        np.testing.assert_allclose(elasticities.matrices[t], expected, rtol=1e-12)
        np.testing.assert_allclose(diversion.matrices[t].sum(axis=1), 1.0, rtol=1e-12)


def test_params_and_bse_read_the_same_on_every_estimator() -> None:
    # the labelled estimates and standard errors of BLP and Salanie-Wolak results, as
    # LogitResults.params / .bse name them: the to_frame() columns by parameter name
    results = _unequal_results(True)
    assert isinstance(results, bd.BLPResults)
    assert list(results.params.index) == list(results.names)
    np.testing.assert_array_equal(results.params.to_numpy(), results.estimates)
    np.testing.assert_array_equal(results.bse.to_numpy(), results.standard_errors)
    approximation = bd.estimate_approximation(results.problem)
    frame = approximation.to_frame()
    np.testing.assert_array_equal(approximation.params.to_numpy(), frame["estimate"].to_numpy())
    np.testing.assert_array_equal(approximation.bse.to_numpy(), frame["std. error"].to_numpy())
    assert "prices" in approximation.params.index and "prices" in results.params.index
    logit = _unequal_results(False)
    assert list(logit.params.index) == list(logit.to_frame().index)


def test_long_run_diversion_and_aggregate_elasticities_from_the_blocks() -> None:
    # Reference: the per-market closed forms on each market's MarketDemand: s_k^(-j) =
    # sum_i w_i s_ik / (1 - s_ij) (the outside good on the diagonal), and the aggregate
    # elasticity [sum_j s_j(1.01 p) - sum_j s_j(p)] / (0.01 sum_j s_j(p))
    fitted = as_fitted(_unequal_results(True))
    long_run = bd.compute_long_run_diversion_ratios(fitted)
    aggregate = bd.compute_aggregate_elasticities(fitted)
    for t, demand in enumerate(market_demands(fitted)):
        s_ij = demand.probabilities()
        s, s0 = s_ij @ demand.weights, 1.0 - s_ij.sum(axis=0)
        rescaled = demand.weights[None, :] / (1.0 - s_ij)
        expected = (rescaled @ s_ij.T - s[None, :]) / s[:, None]
        np.fill_diagonal(expected, (rescaled @ s0 - s0 @ demand.weights) / s)
        np.testing.assert_allclose(long_run.matrices[t], expected, rtol=1e-12)
        before, after = s.sum(), demand.shares(demand.prices * 1.01).sum()
        assert aggregate[t] == pytest.approx((after - before) / (0.01 * before), rel=1e-10)
