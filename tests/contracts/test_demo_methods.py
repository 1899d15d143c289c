"""Post-estimation methods on LogitResults and BLPResults are the pure functions, delegated."""

from __future__ import annotations

import numpy as np
import pytest

import blpdemand as bd
from blpdemand.cli.demo import DemoReport, run_demo


@pytest.fixture(scope="module")
def demo() -> DemoReport:
    return run_demo(markets=30, products=12, rng=2)


@pytest.mark.parametrize("which", ["rc_iv", "blp"])
def test_methods_equal_the_functions(demo: DemoReport, which: str) -> None:
    # Reference: the public function each method delegates to, on the same results (exact).
    results = getattr(demo, which)
    for method, function in (("elasticities", bd.compute_elasticities),
                             ("diversion_ratios", bd.compute_diversion_ratios)):
        got, want = getattr(results, method)(), function(results)
        assert got.kind == want.kind and got.name == want.name
        for a, b in zip(got.matrices, want.matrices, strict=True):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(results.elasticities("hp").stacked(),
                                  bd.compute_elasticities(results, "hp").stacked())
    np.testing.assert_array_equal(results.markups(), bd.compute_markups(results))
    np.testing.assert_array_equal(results.costs(), bd.compute_costs(results))
    merged = np.where(demo.rc_simulation.products["firm_ids"] == 1, 0,
                      demo.rc_simulation.products["firm_ids"])
    np.testing.assert_array_equal(results.costs(firm_ids=merged),
                                  bd.compute_costs(results, firm_ids=merged))
    np.testing.assert_array_equal(results.consumer_surplus(), bd.compute_consumer_surplus(results))
    got_cf, want_cf = results.merger([0, 1]), bd.simulate_merger(results, [0, 1])
    np.testing.assert_array_equal(got_cf.prices, want_cf.prices)
    np.testing.assert_array_equal(got_cf.consumer_surplus, want_cf.consumer_surplus)
    assert got_cf.merging == (0, 1)
