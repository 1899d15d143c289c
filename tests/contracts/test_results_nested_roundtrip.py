"""Saved nested-logit results rebuild (issue 17: saved results are usable): load_results with
the data gives the same estimates and post-estimation (tolerance 0: the same computation from
the same inputs), the formula saved as the user wrote it (the log within-nest shares are added
again by nesting=, not read from a column the data do not have)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import blpdemand as bd


def test_nested_logit_results_rebuild(tmp_path: Path) -> None:
    sim = bd.simulate(markets=40, products=8, nests=2, nesting_rho=0.6, rng=4, xi_sd=0.3)
    products = sim.products
    cell = products.groupby(["market_ids", "nesting_ids"])
    products = products.assign(other_x1=cell["x1"].transform("sum") - products["x1"],
                               other_w1=cell["w1"].transform("sum") - products["w1"])
    results = bd.estimate_logit(products, linear=sim.linear, nesting="nesting_ids",
                                instruments=["w1", "w2", "other_x1", "other_w1"])
    path = tmp_path / "nested.json"
    bd.save_results(results, path)
    rebuilt = bd.load_results(path, products=products)
    assert isinstance(rebuilt, bd.LogitResults)
    np.testing.assert_array_equal(rebuilt.params.to_numpy(), results.params.to_numpy())
    np.testing.assert_array_equal(rebuilt.bse.to_numpy(), results.bse.to_numpy())
    np.testing.assert_array_equal(bd.compute_elasticities(rebuilt).stacked(),
                                  bd.compute_elasticities(results).stacked())
    assert rebuilt.params.index.tolist() == results.params.index.tolist()
