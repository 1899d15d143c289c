"""Contract: post-estimation (elasticities, diversion, markups, costs, surplus, counterfactual
prices and mergers) names every bad input and every market whose equilibrium is not found.

Reference: each error case breaks one thing by hand (the column, market or firm written in the
test). Numbers: a counterfactual with the observed ownership must return the observed prices
(the costs are implied by those prices, so they are the equilibrium: a fixed point, 1e-8),
and shuffled input rows give the same per-market matrices (1e-10).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import (
    BLPDemandWarning,
    ConvergenceError,
    ConvergenceWarning,
    DataError,
    SpecificationError,
)
from blpdemand.model.simulation import simulate


@pytest.fixture(scope="module")
def sim() -> bd.SimulatedMarkets:
    return simulate(markets=4, products=4, sigma={"x1": 1.0}, draws=20, rng=61)


def _blp(products: pd.DataFrame, sim: bd.SimulatedMarkets, agents: object = None) -> bd.BLPResults:
    problem = bd.Problem(products, linear=sim.linear, nonlinear=sim.nonlinear,
                         agents=sim.agents if agents is None else agents,
                         instruments=list(sim.instruments))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BLPDemandWarning)
        return bd.estimate(problem, sigma=[0.5], config=bd.EstimationConfig(hessian=False))


@pytest.fixture(scope="module", params=["blp", "logit"])
def results(request: pytest.FixtureRequest, sim: bd.SimulatedMarkets) -> object:
    if request.param == "blp":
        return _blp(sim.products, sim)
    return bd.estimate_logit(sim.products, linear=sim.linear, instruments=list(sim.instruments))


N = 16  # 4 markets x 4 products


# ---------------------------------------------------------------- bad arguments
def test_unknown_characteristic(results: object) -> None:
    with pytest.raises(SpecificationError, match="'x9'"):
        bd.compute_elasticities(results, name="x9")
    with pytest.raises(SpecificationError, match="'x9'"):
        bd.compute_diversion_ratios(results, name="x9")


def test_unknown_market(results: object) -> None:
    with pytest.raises(SpecificationError, match=r"no market 99.*\[0, 1, 2, 3\]"):
        bd.compute_elasticities(results).market(99)


@pytest.mark.parametrize("firm_ids, pattern", [
    (np.zeros(N - 1), r"one value per product \(16\)"),
    (np.where(np.arange(N) == 3, np.nan, 1.0), "firm_ids has 1 missing"),
])
def test_bad_firm_ids(results: object, firm_ids: np.ndarray, pattern: str) -> None:
    with pytest.raises(DataError, match=pattern):
        bd.compute_markups(results, firm_ids=firm_ids)


def test_nan_costs(results: object) -> None:
    costs = np.where(np.arange(N) == 3, np.nan, 0.5)
    with pytest.raises(DataError, match="costs.*row 3"):
        bd.compute_prices(results, costs=costs)
    with pytest.raises(DataError, match="costs.*row 3"):
        bd.compute_profits(results, costs=costs)


@pytest.mark.parametrize("kwargs, pattern", [
    ({"ad_valorem_tax": -1.0}, "ad_valorem_tax"),
    ({"keep": np.ones(N - 1, dtype=bool)}, "keep"),
    ({"unit_tax": np.ones(3)}, "unit_tax"),
])
def test_bad_counterfactual_inputs(results: object, kwargs: dict[str, object], pattern: str) -> None:
    with pytest.raises(DataError, match=pattern):
        bd.compute_prices(results, **kwargs)


def test_bad_merger(results: object) -> None:
    with pytest.raises(DataError, match=r"firm\(s\) \[7\]"):
        bd.simulate_merger(results, [0, 7])
    with pytest.raises(DataError, match="at least two firms"):
        bd.simulate_merger(results, [0])


@pytest.mark.parametrize("kwargs, name", [({"method": "bisect"}, "method='bisect'"),
                                          ({"fallback": "brent"}, "fallback='brent'"),
                                          ({"on_failure": "ignore"}, "on_failure='ignore'"),
                                          ({"tol": 0.0}, "tol"),
                                          ({"max_iterations": 0}, "max_iterations")])
def test_bad_pricing_config(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(SpecificationError, match=name):
        bd.PricingConfig(**kwargs)  # type: ignore[arg-type]


def test_not_results() -> None:
    with pytest.raises(TypeError, match="str"):
        bd.compute_elasticities("results")


# ---------------------------------------------------------------- a merger that does not converge
def _tax_on_market_2(sim: bd.SimulatedMarkets) -> np.ndarray:
    # a unit tax of 1,000 in market 2 only: prices there move far and take many iterations
    return np.where(sim.products["market_ids"] == 2, 1e3, 0.0)


def test_merger_failure_status_names_the_market(results: object, sim: bd.SimulatedMarkets) -> None:
    config = bd.PricingConfig(max_iterations=30, fallback="none")
    cf = bd.simulate_merger(results, [0, 1], unit_tax=_tax_on_market_2(sim), config=config)
    assert not cf.converged
    assert list(cf.failed_markets) == [2]
    in_2 = (sim.products["market_ids"] == 2).to_numpy()
    assert np.isnan(cf.prices[in_2]).all() and np.isfinite(cf.prices[~in_2]).all()
    assert "2" in " ".join(map(str, cf.summary().notes))


def test_merger_failure_raises_naming_the_market(results: object, sim: bd.SimulatedMarkets) -> None:
    config = bd.PricingConfig(max_iterations=30, fallback="none", on_failure="raise")
    with pytest.raises(ConvergenceError, match=r"1 market\(s\): 2 \("):
        bd.simulate_merger(results, [0, 1], unit_tax=_tax_on_market_2(sim), config=config)


def test_merger_failure_warns_naming_the_market(results: object, sim: bd.SimulatedMarkets) -> None:
    config = bd.PricingConfig(max_iterations=30, fallback="none", on_failure="warn")
    with pytest.warns(ConvergenceWarning, match=r"1 market\(s\): 2 \("):
        bd.simulate_merger(results, [0, 1], unit_tax=_tax_on_market_2(sim), config=config)


# ---------------------------------------------------------------- valid cases, checked numbers
def test_observed_ownership_is_an_equilibrium(results: object, sim: bd.SimulatedMarkets) -> None:
    # costs implied by the observed prices make those prices the equilibrium: a fixed point
    cf = bd.compute_prices(results)
    assert cf.converged
    np.testing.assert_allclose(cf.prices, sim.products["prices"], rtol=1e-8)
    assert np.isfinite(bd.compute_consumer_surplus(results)).all()


def test_merger_is_finite(results: object) -> None:
    # a merger of firms 0 and 1 raises their prices (a property of Bertrand-Nash with substitutes)
    cf = bd.simulate_merger(results, [0, 1])
    assert cf.converged and np.isfinite(cf.prices).all()
    merged = np.isin(cf.firm_ids_before, [0, 1])
    assert (cf.prices[merged] >= cf.prices_before[merged] - 1e-10).all()


def test_single_product_market(sim: bd.SimulatedMarkets) -> None:
    products = sim.products[~((sim.products["market_ids"] == 1) & (sim.products["product_ids"] > 0))]
    results = bd.estimate_logit(products, linear=sim.linear, instruments=list(sim.instruments))
    matrix = bd.compute_elasticities(results).market(1)
    assert matrix.shape == (1, 1) and np.isfinite(matrix.to_numpy()).all()
    cf = bd.compute_prices(results)
    assert cf.converged
    np.testing.assert_allclose(cf.prices, products["prices"], rtol=1e-8)


def test_row_order_does_not_change_elasticities(sim: bd.SimulatedMarkets) -> None:
    a = bd.compute_elasticities(_blp(sim.products, sim))
    assert sim.agents is not None
    b = bd.compute_elasticities(_blp(sim.products.sample(frac=1.0, random_state=2), sim,
                                     sim.agents.sample(frac=1.0, random_state=3)))
    for market in range(4):
        pd.testing.assert_frame_equal(b.market(market).sort_index().sort_index(axis=1),
                                      a.market(market), check_exact=False, rtol=1e-9, atol=1e-10)
