"""Economic sanity checks after estimation (issue 15 item 5): counts and worst products of
positive own-price elasticities, negative marginal costs and Lerner indices above one.

References: the plain logit closed form for single-product firms, p_j - c_j = -1 / (alpha
(1 - s_j)) (Berry 1994), and the own-price elasticity integrated by hand over the simulation's
agents, epsilon_jj = (p_j / s_j) sum_i w_i alpha_i s_ij (1 - s_ij) with alpha_i = alpha +
sigma_p nu_i (rtol 1e-10; the counts must be equal).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import BLPDemandWarning, EconomicWarning


@pytest.fixture(scope="module")
def inelastic_logit() -> tuple[bd.SimulatedMarkets, object]:
    # alpha = -0.3 with prices from the cost rule: logit markups 1 / (0.3 (1 - s)) exceed most
    # prices, so most implied costs are negative.
    sim = bd.simulate(markets=20, products=4, firms=4, alpha=-0.3, rng=7)
    return sim, bd.estimate_logit(sim.products, linear=sim.linear, instruments=list(sim.instruments))


def test_logit_negative_costs_and_lerner_match_the_closed_form(inelastic_logit) -> None:
    sim, logit = inelastic_logit
    data = sim.products
    alpha = logit.fitted.alpha
    p, s = data["prices"].to_numpy(), data["shares"].to_numpy()
    costs = p + 1.0 / (alpha * (1.0 - s))  # single-product firms (firms = products = 4)
    lerner = (p - costs) / p
    negative, above = int(np.sum(costs < 0)), int(np.sum(lerner > 1))
    assert 0 < negative < len(data) and above == negative  # p > 0: L > 1 <=> c < 0
    with pytest.warns(EconomicWarning) as caught:
        ours = bd.compute_costs(logit)
    np.testing.assert_allclose(ours, costs, rtol=1e-10)
    messages = [str(w.message) for w in caught]
    assert any(f"negative marginal costs: {negative} of {len(data)} products" in m for m in messages)
    assert any(f"Lerner index above one: {above} of {len(data)} products" in m for m in messages)
    with pytest.warns(EconomicWarning) as caught:
        bd.compute_markups(logit)
    assert any(f"Lerner index above one: {above} of" in str(w.message) for w in caught)

    checks = bd.check_economics(logit)
    assert not checks.passed
    assert checks["negative marginal costs"].count == negative
    assert checks["Lerner index above one"].count == above
    assert checks["positive own-price elasticities"].count == 0  # alpha p (1 - s) < 0
    worst = checks["negative marginal costs"].worst
    order = np.argsort(costs)[:5]
    np.testing.assert_allclose(worst["value"], costs[order], rtol=1e-10)
    assert worst["market"].tolist() == data["market_ids"].to_numpy()[order].tolist()
    assert worst["product"].tolist() == data["product_ids"].to_numpy()[order].tolist()
    frame = checks.to_frame()
    assert frame.loc["Lerner index above one", "count"] == above
    np.testing.assert_allclose(frame.loc["Lerner index above one", "worst"], lerner.max(), rtol=1e-10)
    assert len(checks.table().notes) == 2
    with pytest.warns(EconomicWarning):
        checks.warn()


def test_fitted_demand_is_checked_on_request_only(inelastic_logit) -> None:
    # A bare FittedDemand (bootstrap draws, simulated truth) gives numbers without warnings.
    _, logit = inelastic_logit
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        costs = bd.compute_costs(logit.fitted)
        bd.compute_elasticities(logit.fitted)
    assert bd.check_economics(logit.fitted)["negative marginal costs"].count == np.sum(costs < 0)


def test_random_price_coefficient_positive_own_elasticities_counted() -> None:
    # sigma_p = 1.5 around alpha = -1: about a quarter of the consumers like higher prices, and
    # for about half the products their demand dominates: epsilon_jj > 0.
    sim = bd.simulate(markets=10, products=5, firms=5, alpha=-1.0,
                      sigma={"prices": 1.5, "x1": 0.5}, draws=200, rng=3)
    problem = bd.Problem(sim.products, linear=sim.linear, nonlinear=sim.nonlinear,
                         agents=sim.agents, instruments=list(sim.instruments))
    names = list(sim.truth["sigma"])
    assert list(problem.X2.names) == names == ["prices", "x1"]
    with warnings.catch_warnings():  # about the estimate (e.g. its standard errors): not tested
        warnings.simplefilter("ignore", BLPDemandWarning)
        results = bd.evaluate(problem, sigma=[sim.truth["sigma"][n] for n in names])
    assert results.failed_markets.size == 0

    # by hand: u_ij = delta_j + sigma_p p_j nu_ip + sigma_x x1_j nu_ix
    data, agents = sim.products, sim.agents
    alpha, sp, sx = results.fitted.alpha, *(sim.truth["sigma"][n] for n in names)
    expected = np.empty(len(data))
    for market, rows in data.groupby("market_ids"):
        draws = agents[agents["market_ids"] == market]
        nu_p, nu_x, w = (draws[k].to_numpy() for k in ("nodes0", "nodes1", "weights"))
        p, x1 = rows["prices"].to_numpy(), rows["x1"].to_numpy()
        u = (results.delta[rows.index.to_numpy()][:, None] + sp * np.outer(p, nu_p)
             + sx * np.outer(x1, nu_x))
        e = np.exp(u)
        s_ij = e / (1 + e.sum(axis=0))
        s = s_ij @ w
        expected[rows.index.to_numpy()] = p / s * (((alpha + sp * nu_p) * s_ij * (1 - s_ij)) @ w)
    count = int(np.sum(expected > 0))
    assert 5 < count < 45

    with pytest.warns(EconomicWarning) as caught:
        own = bd.compute_elasticities(results).diagonal()
    np.testing.assert_allclose(own, expected, rtol=1e-10)
    assert int(np.sum(own > 0)) == count
    assert len(caught) == 1
    assert f"positive own-price elasticities: {count} of 50 products" in str(caught[0].message)
    checks = bd.check_economics(results)  # a record; .warn() to warn
    check = checks["positive own-price elasticities"]
    assert check.count == count
    np.testing.assert_allclose(check.worst["value"].iloc[0], expected.max(), rtol=1e-10)
    top = int(np.argmax(expected))
    assert check.worst["market"].iloc[0] == data["market_ids"].iloc[top]
    assert check.worst["product"].iloc[0] == data["product_ids"].iloc[top]
    # every market has consumers with alpha_i = alpha + sigma_p nu_i >= 0 (nodes0 > 2/3)
    by_hand = agents.groupby("market_ids")["nodes0"].max() * sp + alpha >= 0
    assert checks["consumers with a non-negative price coefficient"].count == int(by_hand.sum())


def test_checks_pass_on_well_behaved_truth() -> None:
    # Bertrand prices of the true logit demand: costs are the simulated (positive) costs.
    sim = bd.simulate(markets=5, products=4, firms=2, alpha=-1.5, rng=4, pricing="bertrand")
    checks = bd.check_economics(bd.fitted_from_truth(sim))
    assert checks.passed and checks.table().notes == ("all checks passed",)
    assert isinstance(checks.to_frame(), pd.DataFrame)
