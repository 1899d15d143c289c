"""The compiled Bertrand-Nash fixed point equals the numpy reference iteration.

Reference: ``model.pricing._zeta_iteration_numpy`` (the same Morrow-Skerlos step in numpy),
market by market: prices to 1e-12 relative (both stop at max |dp| < 1e-12; sums in another
order differ in the last bits), the same status and iteration counts within one step.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.model.demand import market_demands
from blpdemand.model.pricing import (
    PricingConfig,
    PricingStatus,
    _zeta_iteration,
    _zeta_iteration_numpy,
    ownership_matrix,
)


@pytest.fixture(scope="module")
def nevo(nevo_products: pd.DataFrame, nevo_agents: pd.DataFrame) -> bd.BLPResults:
    problem = bd.Problem(nevo_products, linear="prices", nonlinear="1 + prices + sugar + mushy",
                         demographics="income + income_squared + age + child",
                         agents=nevo_agents, absorb="C(product_ids)",
                         instruments=[f"demand_instruments{k}" for k in range(20)])
    sigma = np.diag([0.5580, 3.3124, -0.0058, 0.0934])
    pi = np.array([[2.2918, 0, 1.2840, 0], [588.3252, -30.1920, 0, 11.0546],
                   [-0.3846, 0, 0.0523, 0], [0.7480, 0, -1.3538, 0]])
    return bd.evaluate(problem, sigma=sigma, pi=pi, config=bd.EstimationConfig(
        hessian=False, bounds={"sigma[sugar, sugar]": (-np.inf, np.inf)}))


@pytest.mark.parametrize("kappa", [None, {(1, 2): 0.4, (2, 1): 0.25}])
def test_compiled_zeta_equals_numpy_on_every_nevo_market(nevo: bd.BLPResults, kappa) -> None:
    fitted = nevo.fitted
    products = fitted.problem.products
    firms = products.array("firm_ids")
    merged = np.where(firms == 2, 1, firms) if kappa is None else firms
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        costs = products.sort(bd.compute_costs(nevo))
    config = PricingConfig()
    markets = products.markets
    for t, demand in enumerate(market_demands(fitted)):
        rows = markets.slice(t)
        owners = ownership_matrix(merged[rows], kappa)
        start = demand.prices.copy()
        fast = _zeta_iteration(demand, costs[rows], owners, start, config)
        slow = _zeta_iteration_numpy(demand, costs[rows], owners, start, config)
        assert fast[1] is slow[1] is PricingStatus.CONVERGED
        assert abs(fast[2] - slow[2]) <= 1
        np.testing.assert_allclose(fast[0], slow[0], rtol=1e-12, atol=0)


def test_limits_and_nonfinite_prices_get_the_same_status(nevo: bd.BLPResults) -> None:
    demand = market_demands(nevo.fitted)[0]
    owners = np.eye(demand.J)
    costs = 0.5 * demand.prices
    capped = PricingConfig(max_iterations=2)
    fast = _zeta_iteration(demand, costs, owners, demand.prices.copy(), capped)
    slow = _zeta_iteration_numpy(demand, costs, owners, demand.prices.copy(), capped)
    assert fast[1] is slow[1] is PricingStatus.MAX_ITERATIONS and fast[2] == slow[2] == 2
    np.testing.assert_allclose(fast[0], slow[0], rtol=1e-12)
    broken = np.full(demand.J, np.nan)
    fast = _zeta_iteration(demand, broken, owners, demand.prices.copy(), PricingConfig())
    slow = _zeta_iteration_numpy(demand, broken, owners, demand.prices.copy(), PricingConfig())
    assert fast[1] is slow[1] is PricingStatus.NONFINITE and fast[2] == slow[2] == 1
