"""Post-estimation never turns a failure into a number (issue 16 items 3 and 10).

(1) Results whose contraction failed at the estimate (Nevo at an extreme theta), or whose delta
is not finite, raise ConvergenceError naming the failed markets from every post-estimation
function (they raised numpy's LinAlgError or returned numbers). (2) A singular Bertrand system
O * ds/dp' is a DataError naming the market. (3) Mergers where some consumers have a
non-negative price coefficient alpha_i = alpha + sigma_p nu_i stop after
PricingConfig.capped_iterations zeta iterations there (they ran 10,000 + 100 Newton), with a
status and a warning naming the markets; which markets have such consumers is computed by hand
from the simulation's draws.
"""

from __future__ import annotations

import dataclasses
import types
import warnings

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand._types import Status
from blpdemand.errors import (
    BLPDemandWarning,
    ConvergenceError,
    ConvergenceWarning,
    DataError,
    EconomicWarning,
    SpecificationError,
)
from blpdemand.model.pricing import PricingConfig


@pytest.fixture(scope="module")
def failed_nevo(nevo_products: pd.DataFrame, nevo_agents: pd.DataFrame) -> bd.BLPResults:
    problem = bd.Problem(nevo_products, linear="prices", nonlinear="1 + prices + sugar",
                         agents=nevo_agents, absorb="C(product_ids)",
                         instruments=[f"demand_instruments{k}" for k in range(20)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = bd.evaluate(problem, sigma=[-87.5, 100, -89.6])
    assert any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return results


POST = {
    "costs": lambda r: bd.compute_costs(r),
    "markups": lambda r: bd.compute_markups(r),
    "profits": lambda r: bd.compute_profits(r),
    "elasticities": lambda r: bd.compute_elasticities(r),
    "aggregate elasticities": lambda r: bd.compute_aggregate_elasticities(r),
    "diversion": lambda r: bd.compute_diversion_ratios(r),
    "long-run diversion": lambda r: bd.compute_long_run_diversion_ratios(r),
    "surplus": lambda r: bd.compute_consumer_surplus(r),
    "prices": lambda r: bd.compute_prices(r),
    "merger": lambda r: bd.simulate_merger(r, [1, 2]),
    "method merger": lambda r: r.merger([1, 2]),
    "entry": lambda r: bd.simulate_entry(r, pd.DataFrame(
        {"market_ids": ["C01Q1"], "firm_ids": [9], "sugar": [1.0], "costs": [0.1],
         "fixed_effect": [0.0]})),
    "checks": lambda r: bd.check_economics(r),
}


@pytest.mark.parametrize("name", list(POST))
def test_failed_contraction_raises_convergence_error(failed_nevo: bd.BLPResults,
                                                     name: str) -> None:
    failed = np.asarray(failed_nevo.failed_markets).tolist()
    assert 0 < len(failed) < failed_nevo.problem.T
    with pytest.raises(ConvergenceError) as error:
        POST[name](failed_nevo)
    message = str(error.value)
    assert f"{len(failed)} market(s)" in message and repr(failed[0]) in message


def _healthy() -> tuple[bd.SimulatedMarkets, bd.BLPResults]:
    sim = bd.simulate(markets=6, products=4, firms=2, sigma={"x1": 1.0}, draws=100, rng=5,
                      pricing="bertrand")
    problem = bd.Problem(sim.products, linear=sim.linear, nonlinear=sim.nonlinear,
                         agents=sim.agents, instruments=list(sim.instruments))
    with warnings.catch_warnings():  # about the estimate (e.g. its standard errors): not tested
        warnings.simplefilter("ignore", BLPDemandWarning)
        return sim, bd.evaluate(problem, sigma=[1.0])


def test_results_without_failed_markets_are_checked_by_their_shares() -> None:
    # Results that do not record failed markets but counted contraction failures: the markets
    # whose delta misses the observed shares are named (here market 3, delta moved by 0.5).
    _, results = _healthy()
    fitted = results.fitted
    markets = fitted.problem.products.markets
    delta = fitted.delta.copy()
    delta[markets.slice(3)] += 0.5
    moved = dataclasses.replace(fitted, delta=delta)
    old = types.SimpleNamespace(fitted=moved, contraction_failures=2)
    with pytest.raises(ConvergenceError, match=r"1 market\(s\) \[3\]"):
        bd.compute_costs(old)
    clean = types.SimpleNamespace(fitted=fitted, contraction_failures=2)
    np.testing.assert_allclose(bd.compute_markups(clean), bd.compute_markups(fitted), rtol=0)


def test_non_finite_delta_names_its_market() -> None:
    _, results = _healthy()
    fitted = results.fitted
    delta = fitted.delta.copy()
    delta[fitted.problem.products.markets.slice(4).start] = np.nan
    with pytest.raises(ConvergenceError, match=r"\[4\].*not finite"):
        bd.compute_elasticities(dataclasses.replace(fitted, delta=delta))


def test_singular_bertrand_system_names_the_market() -> None:
    # A custom ownership matrix with a zero row in market 2 makes O * ds/dp' singular there.
    sim, results = _healthy()
    data = sim.products
    firms = data["firm_ids"].to_numpy()
    ownership = np.zeros((len(data), 4))
    for market, rows in data.groupby("market_ids"):
        index = rows.index.to_numpy()
        f = firms[index]
        ownership[index, :4] = f[:, None] == f[None, :]
    ownership[data.index[data["market_ids"] == 2][1], :] = 0.0
    with pytest.raises(DataError, match="market 2: .*singular"):
        bd.compute_markups(results.fitted, ownership=ownership)


# ---------------------------------------------------------------- non-negative price coefficients
@pytest.fixture(scope="module")
def likes_prices() -> bd.SimulatedMarkets:
    # alpha = -1, sigma_p = 1.5: every market has consumers with alpha_i >= 0
    return bd.simulate(markets=4, products=20, firms=5, sigma={"x1": 0.5, "prices": 1.5},
                       draws=100, rng=1)


def _flagged_by_hand(sim: bd.SimulatedMarkets) -> list[int]:
    names = list(sim.truth["sigma"])
    column = f"nodes{names.index('prices')}"
    alpha_i = sim.truth["alpha"] + sim.truth["sigma"]["prices"] * sim.agents[column]
    flagged = (alpha_i >= 0) & (sim.agents["weights"] > 0)
    return sorted(sim.agents.loc[flagged, "market_ids"].unique().tolist())


def test_merger_with_nonnegative_price_coefficients_stops_early(likes_prices) -> None:
    flagged = _flagged_by_hand(likes_prices)
    assert flagged == [0, 1, 2, 3]
    fitted = bd.fitted_from_truth(likes_prices)
    with pytest.warns(EconomicWarning) as caught:
        cf = bd.simulate_merger(fitted, [0, 1])
    config = PricingConfig()
    # before: 10,100 iterations (10,000 zeta + 100 Newton) in every market
    assert np.all(cf.iterations <= config.capped_iterations)
    assert all(s in (Status.NONNEGATIVE_ALPHA, Status.CONVERGED) for s in cf.status)
    failed = [m for m, s in zip(cf.market_ids.tolist(), cf.status) if not s.converged]
    assert failed and np.all(np.isnan(cf.prices[np.isin(likes_prices.products["market_ids"],
                                                         failed)]))
    message = " ".join(str(w.message) for w in caught)
    assert f"{len(flagged)} market(s)" in message and f"failed in {len(failed)}" in message
    assert "price coefficient" in message

    small = PricingConfig(capped_iterations=7)
    with pytest.warns(EconomicWarning):
        cf = bd.simulate_merger(fitted, [0, 1], config=small)
    assert np.all(cf.iterations <= 7)
    with pytest.raises(ConvergenceError, match="stopped early"), warnings.catch_warnings():
        warnings.simplefilter("ignore", EconomicWarning)
        bd.simulate_merger(fitted, [0, 1], config=PricingConfig(on_failure="raise"))


def test_only_markets_with_such_consumers_are_capped() -> None:
    # sigma_p = 0.35: alpha_i >= 0 needs nu_i >= 2.9, so only some markets have such consumers;
    # the others keep the full iteration budget (and converge, iterations unchanged).
    sim = bd.simulate(markets=30, products=5, firms=3, sigma={"x1": 0.5, "prices": 0.35},
                      draws=100, rng=2)
    flagged = _flagged_by_hand(sim)
    assert 0 < len(flagged) < 30
    fitted = bd.fitted_from_truth(sim)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cf = bd.simulate_merger(fitted, [0, 1])
        capped = bd.simulate_merger(fitted, [0, 1], config=PricingConfig(capped_iterations=1))
    ids = cf.market_ids.tolist()
    for t, market in enumerate(ids):
        if market not in flagged:
            assert cf.status[t].converged and capped.status[t].converged
            assert capped.iterations[t] == cf.iterations[t] > 1
        else:
            assert capped.iterations[t] == 1
    assert any(f"in {len(flagged)} market(s)" in str(w.message) for w in caught
               if issubclass(w.category, EconomicWarning))


def test_capped_iterations_must_be_positive() -> None:
    with pytest.raises(SpecificationError, match="capped_iterations"):
        PricingConfig(capped_iterations=0)
