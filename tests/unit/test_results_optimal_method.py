"""``BLPResults.optimal_instruments``: the method form of ``blpdemand.optimal_instruments``."""

from __future__ import annotations

import numpy as np
import pytest

import blpdemand as bd


# bd.simulate's cost shifters exactly identify these models; where Q > 0 at the minimum (no
# root) G is singular and no standard error exists (NaN, warned about): not what is tested here
@pytest.mark.filterwarnings("ignore::blpdemand.errors.IdentificationWarning")
def test_method_equals_the_function_on_simulated_markets() -> None:
    # Reference: the module function on the same estimates (tests/reference compares it with
    # PyBLP): the same instruments bit for bit, and the re-estimate's objective to rel 1e-12.
    sim = bd.simulate(markets=30, products=5, sigma={"x1": 1.0}, draws=50, rng=1)
    problem = bd.Problem(sim.products, linear=sim.linear, nonlinear=sim.nonlinear,
                         agents=sim.agents, instruments=list(sim.instruments))
    # one start: the exactly identified re-estimate has two roots here (sigma 0.12 and 6.6, both
    # Q = 0), which the default multi-start rightly warns about; this test compares two routes
    config = bd.EstimationConfig(hessian=False, starts=0)
    results = bd.estimate(problem, sigma=[0.5], config=config)
    method = results.optimal_instruments()
    function = bd.optimal_instruments(results)
    np.testing.assert_array_equal(method.instruments, function.instruments)
    assert method.names == function.names
    assert method.results is not None and function.results is not None
    np.testing.assert_allclose(method.results.objective, function.results.objective, rtol=1e-12)
    only = results.optimal_instruments(method="normal", draws=3, reestimate=False)
    assert only.results is None and only.draws == 3
