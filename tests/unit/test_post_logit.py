"""Post-estimation on plain logit demand, checked against closed forms (Berry 1994; Nevo 2001).

Logit: ds_j/dp_k = alpha s_j (1{j=k} - s_k), so own elasticity alpha p_j (1 - s_j), cross
-alpha p_k s_k; diversion s_k / (1 - s_j), to the outside good s_0 / (1 - s_j); markups of a
firm f: -1 / (alpha (1 - sum_{k in f} s_k)); consumer surplus -log(s_0) / (-alpha) (+ const).
Tolerances: 1e-12 relative for closed forms, 1e-9 for solver outputs (tol 1e-12).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import ConvergenceError, ConvergenceWarning, SpecificationError
from blpdemand.model.fitted import FittedDemand, logit_layout
from blpdemand.model.pricing import PricingConfig
from blpdemand.results.costs import compute_costs, compute_markups
from blpdemand.results.counterfactual import compute_prices, simulate_merger
from blpdemand.results.diversion import compute_diversion_ratios
from blpdemand.results.elasticities import (
    compute_aggregate_elasticities,
    compute_elasticities,
    own_elasticity_summary,
)
from blpdemand.results.surplus import compute_consumer_surplus

ALPHA = -2.0


def _products() -> pd.DataFrame:
    # Three markets (4, 4, 3 products), listed out of market order to exercise row sorting.
    rng = np.random.default_rng(5)
    market = np.array([2, 1, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    firm = np.array([1, 1, 2, 3, 3, 2, 3, 3, 1, 2, 3])
    return pd.DataFrame({
        "market_ids": market, "firm_ids": firm,
        "product_ids": [f"p{k}" for k in range(market.size)],
        "prices": rng.uniform(1.0, 2.0, market.size), "x": rng.normal(size=market.size),
        "z": rng.normal(size=market.size), "shares": rng.uniform(0.05, 0.2, market.size)})


@pytest.fixture(scope="module")
def logit() -> tuple[FittedDemand, pd.DataFrame]:
    data = _products()
    problem = bd.Problem(data, linear="1 + prices + x", instruments=["z"])
    beta = np.array([0.5, ALPHA, 0.3])
    return FittedDemand(problem=problem, layout=logit_layout(problem), theta=np.zeros(0),
                        beta=beta, delta=problem.products.logit_delta), data


def _market(data: pd.DataFrame, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = np.flatnonzero(data["market_ids"].to_numpy() == m)
    return rows, data["prices"].to_numpy()[rows], data["shares"].to_numpy()[rows]


def test_logit_elasticities_closed_form(logit) -> None:
    fitted, data = logit
    elasticities = compute_elasticities(fitted)
    for m in (1, 2, 3):
        _, p, s = _market(data, m)
        expected = -ALPHA * np.outer(np.ones_like(s), p * s)
        np.fill_diagonal(expected, ALPHA * p * (1 - s))
        np.testing.assert_allclose(elasticities.market(m).to_numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(elasticities.diagonal(), ALPHA * data["prices"] * (1 - data["shares"]),
                               rtol=1e-12)
    table = own_elasticity_summary(fitted)
    assert table.body.loc["all markets", "products"] == len(data)


def test_logit_characteristic_elasticities(logit) -> None:
    # d log s_j / d log x_k with coefficient 0.3: own 0.3 x_j (1 - s_j).
    fitted, data = logit
    own = compute_elasticities(fitted, "x").diagonal()
    np.testing.assert_allclose(own, 0.3 * data["x"] * (1 - data["shares"]), rtol=1e-12)


def test_logit_diversion_closed_form(logit) -> None:
    fitted, data = logit
    ratios = compute_diversion_ratios(fitted)
    for m in (1, 2, 3):
        _, _, s = _market(data, m)
        expected = np.outer(1 / (1 - s), s)
        np.fill_diagonal(expected, (1 - s.sum()) / (1 - s))
        np.testing.assert_allclose(ratios.market(m).to_numpy(), expected, rtol=1e-12)
        np.testing.assert_allclose(ratios.market(m).to_numpy().sum(axis=1), 1.0, rtol=1e-12)


def test_logit_aggregate_elasticity_limit(logit) -> None:
    # As factor -> 0 the aggregate elasticity tends to alpha sum_j p_j s_j s_0 / sum_j s_j.
    fitted, data = logit
    values = compute_aggregate_elasticities(fitted, factor=1e-7)
    for t, m in enumerate((1, 2, 3)):
        _, p, s = _market(data, m)
        np.testing.assert_allclose(values[t], ALPHA * (p * s).sum() * (1 - s.sum()) / s.sum(), rtol=1e-5)


def test_logit_markups_closed_form(logit) -> None:
    fitted, data = logit
    s = data["shares"].to_numpy()
    firm_share = data.groupby(["market_ids", "firm_ids"])["shares"].transform("sum").to_numpy()
    np.testing.assert_allclose(compute_markups(fitted), -1 / (ALPHA * (1 - firm_share)), rtol=1e-12)
    single = np.arange(len(data))
    np.testing.assert_allclose(compute_markups(fitted, firm_ids=single), -1 / (ALPHA * (1 - s)),
                               rtol=1e-12)
    np.testing.assert_allclose(compute_costs(fitted), data["prices"] + 1 / (ALPHA * (1 - firm_share)),
                               rtol=1e-12)


def test_logit_consumer_surplus_closed_form(logit) -> None:
    fitted, data = logit
    outside = 1 - data.groupby("market_ids")["shares"].sum().to_numpy()
    np.testing.assert_allclose(compute_consumer_surplus(fitted), -np.log(outside) / -ALPHA, rtol=1e-12)


def test_merger_of_single_product_firms_raises_both_prices(logit) -> None:
    # Market 3 has three single-product firms; firms 1 and 2 merge there.
    fitted, data = logit
    cf = simulate_merger(fitted, [1, 2])
    assert cf.converged
    rows = np.flatnonzero(data["market_ids"].to_numpy() == 3)
    merged = rows[data["firm_ids"].to_numpy()[rows] != 3]
    assert np.all(cf.prices[merged] > cf.prices_before[merged])
    assert np.all(cf.consumer_surplus_change < 0)
    assert np.all(cf.hhi > cf.hhi_before)
    # The new prices satisfy the merged firm's first-order conditions (closed-form markups).
    firm_share = pd.Series(cf.shares).groupby([data["market_ids"], np.where(
        data["firm_ids"] == 2, 1, data["firm_ids"])]).transform("sum").to_numpy()
    np.testing.assert_allclose(cf.prices - cf.costs, -1 / (ALPHA * (1 - firm_share)), rtol=1e-9)


def test_unchanged_ownership_leaves_prices_unchanged(logit) -> None:
    fitted, data = logit
    for method in ("zeta", "newton"):
        cf = compute_prices(fitted, config=PricingConfig(method=method))
        assert cf.converged
        np.testing.assert_allclose(cf.prices, data["prices"], rtol=1e-10)
        np.testing.assert_allclose(cf.consumer_surplus_change, 0, atol=1e-10)


def test_partial_ownership_and_newton_agree_with_merger(logit) -> None:
    # kappa = 1 between firms 1 and 2 is the merger; Newton finds the same equilibrium.
    fitted, _ = logit
    merger = simulate_merger(fitted, [1, 2])
    common = compute_prices(fitted, kappa={(1, 2): 1.0, (2, 1): 1.0},
                            config=PricingConfig(method="newton"))
    np.testing.assert_allclose(common.prices, merger.prices, rtol=1e-9)


def test_asymmetric_partial_ownership_is_a_fixed_point_at_its_own_costs(logit) -> None:
    # Reference: a fixed point. Costs recovered from observed prices under an asymmetric kappa
    # (markups = -(O * ds/dp')^{-1} s) must make the observed prices the equilibrium under the
    # same kappa, for the zeta iteration and for Newton (rtol 1e-9); a transposed O in one of
    # them would not.
    fitted, data = logit
    kappa = {(1, 2): 0.7, (2, 1): 0.2}
    costs = compute_costs(fitted, kappa=kappa)
    for method in ("zeta", "newton"):
        cf = compute_prices(fitted, kappa=kappa, costs=costs, config=PricingConfig(method=method))
        assert cf.converged
        np.testing.assert_allclose(cf.prices, data["prices"], rtol=1e-9)


def test_taxes_are_cost_shifts(logit) -> None:
    # Unit tax tau: consumer prices equal those with costs c + tau; ad valorem t: costs (1+t) c.
    fitted, _ = logit
    costs = compute_costs(fitted)
    unit = compute_prices(fitted, unit_tax=0.1)
    np.testing.assert_allclose(unit.prices, compute_prices(fitted, costs=costs + 0.1).prices, rtol=1e-9)
    ad = compute_prices(fitted, ad_valorem_tax=0.2)
    shifted = compute_prices(fitted, costs=1.2 * costs)
    np.testing.assert_allclose(ad.prices, shifted.prices, rtol=1e-9)
    np.testing.assert_allclose(ad.profits, shifted.profits / 1.2, rtol=1e-9)
    assert np.all(unit.prices > unit.prices_before)


def test_removed_product(logit) -> None:
    # Removing a product: NaN for it, others re-price, surplus falls; FOC holds on the rest.
    fitted, data = logit
    keep = np.ones(len(data), dtype=bool)
    keep[0] = False
    cf = compute_prices(fitted, keep=keep)
    assert cf.converged and np.isnan(cf.prices[0]) and np.isnan(cf.shares[0])
    market = data["market_ids"].to_numpy() == 2
    assert cf.consumer_surplus_change[1] < 0
    others = market & keep
    firm_share = pd.Series(cf.shares[others]).groupby(data["firm_ids"].to_numpy()[others]).transform("sum")
    np.testing.assert_allclose(cf.prices[others] - cf.costs[others],
                               -1 / (ALPHA * (1 - firm_share.to_numpy())), rtol=1e-9)


def test_failure_names_markets_never_a_wrong_number(logit) -> None:
    fitted, _ = logit
    config = PricingConfig(max_iterations=1, fallback="none")
    cf = simulate_merger(fitted, [1, 2], config=config)
    assert not cf.converged
    assert set(cf.failed_markets) == {1, 2, 3}
    assert np.all(np.isnan(cf.prices)) and np.all(np.isnan(cf.consumer_surplus))
    assert "3 of 3 markets failed" in cf.summary().to_text()
    with pytest.raises(ConvergenceError, match="market"):
        simulate_merger(fitted, [1, 2], config=PricingConfig(max_iterations=1, fallback="none",
                                                             on_failure="raise"))
    with pytest.warns(ConvergenceWarning):
        simulate_merger(fitted, [1, 2], config=PricingConfig(max_iterations=1, fallback="none",
                                                             on_failure="warn"))
    # With the Newton fallback the same limit still converges.
    rescued = simulate_merger(fitted, [1, 2], config=PricingConfig(max_iterations=1))
    assert rescued.converged
    assert {s.name for s in rescued.status} == {"CONVERGED_FALLBACK"}


def test_nonlinear_prices_are_refused() -> None:
    data = _products()
    problem = bd.Problem(data, linear="1 + log(prices) + x", instruments=["z"],
                         endogenous=["log(prices)"])
    fitted = FittedDemand(problem=problem, layout=logit_layout(problem), theta=np.zeros(0),
                          beta=np.array([0.5, -1.0, 0.3]), delta=problem.products.logit_delta)
    with pytest.raises(SpecificationError, match="nonlinearly"):
        compute_elasticities(fitted)


def test_invalid_config_is_named() -> None:
    with pytest.raises(SpecificationError, match="method"):
        PricingConfig(method="bisection")  # type: ignore[arg-type]


def test_merger_overview_table(logit) -> None:
    # Hand check: the table's mean prices are those of the merging firms' products.
    fitted, data = logit
    cf = simulate_merger(fitted, [1, 2])
    body = cf.overview().to_frame()
    inside = data["firm_ids"].isin([1, 2]).to_numpy()
    np.testing.assert_allclose(body.iloc[0]["mean price after"], cf.prices[inside].mean(), rtol=1e-12)
    np.testing.assert_allclose(body.loc["all products", "mean price before"], data["prices"].mean(),
                               rtol=1e-12)
    assert cf.merging == (1, 2)


def test_market_table(logit) -> None:
    # The Table carries the same numbers as the matrix (hand check on one cell).
    fitted, data = logit
    body = compute_elasticities(fitted).table(3).to_frame()
    _, p, s = _market(data, 3)
    np.testing.assert_allclose(body.iloc[0, 0], ALPHA * p[0] * (1 - s[0]), rtol=1e-12)
    assert list(body.columns) == ["p8", "p9", "p10"]
