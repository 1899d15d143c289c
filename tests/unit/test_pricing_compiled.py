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
from blpdemand._types import Status
from blpdemand.model.demand import market_demands
from blpdemand.model.pricing import (
    PricingConfig,
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
        assert fast[1] is slow[1] is Status.CONVERGED
        assert abs(fast[2] - slow[2]) <= 1
        np.testing.assert_allclose(fast[0], slow[0], rtol=1e-12, atol=0)


def test_limits_and_nonfinite_prices_get_the_same_status(nevo: bd.BLPResults) -> None:
    demand = market_demands(nevo.fitted)[0]
    owners = np.eye(demand.J)
    costs = 0.5 * demand.prices
    capped = PricingConfig(max_iterations=2)
    fast = _zeta_iteration(demand, costs, owners, demand.prices.copy(), capped)
    slow = _zeta_iteration_numpy(demand, costs, owners, demand.prices.copy(), capped)
    assert fast[1] is slow[1] is Status.MAX_ITERATIONS and fast[2] == slow[2] == 2
    np.testing.assert_allclose(fast[0], slow[0], rtol=1e-12)
    broken = np.full(demand.J, np.nan)
    fast = _zeta_iteration(demand, broken, owners, demand.prices.copy(), PricingConfig())
    slow = _zeta_iteration_numpy(demand, broken, owners, demand.prices.copy(), PricingConfig())
    assert fast[1] is slow[1] is Status.NONFINITE and fast[2] == slow[2] == 1


@pytest.mark.parametrize("case", ["merger", "kappa", "removed", "taxed"])
def test_blocked_equilibrium_equals_market_by_market(nevo: bd.BLPResults, case: str) -> None:
    """compute_prices' blocked engine (one compiled call per block of equal-size markets)
    against the per-market path (MarketDemand objects, ``solve_prices`` market by market):
    prices, shares and surplus to 1e-12 relative, HHI to 1e-12, the same statuses."""
    from blpdemand.results.equilibrium import blocked_equilibrium, market_equilibrium

    fitted = nevo.fitted
    products = fitted.problem.products
    firms = products.unsort(products.array("firm_ids"))
    merged = np.where(firms == 2, 1, firms)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        costs = products.sort(bd.compute_costs(nevo))
    available = np.ones(products.N, dtype=bool)
    kwargs: dict[str, object] = {"firm_ids": merged, "ownership": None, "kappa": None}
    if case == "kappa":
        kwargs = {"firm_ids": None, "ownership": None, "kappa": {(1, 2): 0.4, (2, 1): 0.25}}
    if case == "removed":  # every third product leaves: choice sets of unequal size
        available[::3] = False
    if case == "taxed":
        costs = 1.1 * (costs + 0.01)
    sorted_firms = products.sort(merged) if kwargs["firm_ids"] is not None else None
    args = dict(firms_before=products.array("firm_ids"), firms_after=sorted_firms,
                config=PricingConfig(), **kwargs)
    fast = blocked_equilibrium(fitted, costs, available, **args)
    slow = market_equilibrium(fitted, costs, available, **args)
    assert fast.status == slow.status and all(s.converged for s in fast.status)
    assert np.abs(fast.iterations - slow.iterations).max() <= 1
    for name in ("prices_before", "shares_before", "prices", "shares", "surplus_before",
                 "surplus", "hhi_before", "hhi"):
        np.testing.assert_allclose(getattr(fast, name), getattr(slow, name), rtol=1e-12, atol=0,
                                   err_msg=name)

