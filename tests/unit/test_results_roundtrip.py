"""Saved results are usable: save_results, then load_results with the data, then post-estimation.

Reference: the live results the file was written from. The rebuilt results evaluate at the
saved theta (exact: JSON floats round-trip) with the saved W, so delta differs from the live one
only by the contraction's tolerance (1e-14): elasticities and costs agree to 1e-12 relative to
their largest magnitude. Without data, post-estimation raises our SpecificationError naming
``load_results(path, products=..., agents=...)``; other data raise a DataError.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

import blpdemand as bd
from blpdemand.errors import (
    DataError,
    EconomicWarning,
    IdentificationWarning,
    OptimizationWarning,
    SpecificationError,
)

NEVO_Z = [f"demand_instruments{k}" for k in range(20)]


@contextmanager
def _quiet() -> Iterator[None]:
    """The Nevo '1 + prices' estimate lies on sigma[1, 1] = 0 and implies a few negative costs:
    warned about live and again when rebuilt; the numbers are what is compared here."""
    with warnings.catch_warnings():
        for category in (OptimizationWarning, IdentificationWarning, EconomicWarning):
            warnings.simplefilter("ignore", category)
        yield


def _assert_same(a: np.ndarray, b: np.ndarray) -> None:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    finite = np.isfinite(a)
    assert np.array_equal(finite, np.isfinite(b))
    np.testing.assert_allclose(a[finite], b[finite], rtol=1e-12,
                               atol=1e-12 * np.abs(a[finite]).max())


def _post(results: object) -> tuple[np.ndarray, np.ndarray]:
    with _quiet():
        return (bd.compute_elasticities(results).stacked(),
                bd.compute_costs(results))


@pytest.mark.parametrize("method", ["1s", "2s"])
def test_blp_round_trip_post_estimation(tmp_path: Path, nevo_products, nevo_agents,
                                        method) -> None:
    problem = bd.Problem(nevo_products, linear="prices", nonlinear="1 + prices",
                         agents=nevo_agents, absorb="C(product_ids)", instruments=NEVO_Z)
    with _quiet():
        live = bd.estimate(problem, sigma=[0.5, 0.5],
                           config=bd.EstimationConfig(starts=0, method=method))
        path = bd.save_results(live, tmp_path / "blp.json")
        loaded = bd.load_results(path, products=nevo_products, agents=nevo_agents)
    assert isinstance(loaded, bd.BLPResults)
    np.testing.assert_array_equal(loaded.theta, live.theta)
    np.testing.assert_allclose(loaded.beta, live.beta, rtol=1e-12)
    np.testing.assert_array_equal(loaded.W, live.W)
    np.testing.assert_allclose(loaded.standard_errors, live.standard_errors, rtol=1e-8)
    for ours, theirs in zip(_post(loaded), _post(live)):
        _assert_same(ours, theirs)


def test_logit_round_trip_post_estimation(tmp_path: Path, nevo_products) -> None:
    live = bd.estimate_logit(nevo_products, linear="prices + sugar", instruments=NEVO_Z,
                             method="2s-gmm")
    loaded = bd.load_results(bd.save_results(live, tmp_path / "logit.json"),
                             products=nevo_products)
    assert isinstance(loaded, bd.LogitResults)
    np.testing.assert_allclose(loaded.params, live.params, rtol=1e-12)
    for ours, theirs in zip(_post(loaded), _post(live)):
        _assert_same(ours, theirs)


def test_integration_agents_are_remade(tmp_path: Path, nevo_products) -> None:
    problem = bd.Problem(nevo_products, linear="prices", nonlinear="0 + prices",
                         agents=bd.Integration("halton", 50, rng=3), absorb="C(product_ids)",
                         instruments=NEVO_Z)
    with _quiet():
        live = bd.evaluate(problem, sigma=[2.0], config=bd.EstimationConfig(hessian=False))
        loaded = bd.load_results(bd.save_results(live, tmp_path / "halton.json"),
                                 products=nevo_products)
    _assert_same(_post(loaded)[0], _post(live)[0])


def test_without_data_post_estimation_names_the_fix(tmp_path: Path, nevo_products) -> None:
    live = bd.estimate_logit(nevo_products, linear="prices", instruments=NEVO_Z,
                             absorb="C(product_ids)")
    saved = bd.load_results(bd.save_results(live, tmp_path / "logit.json"))
    assert isinstance(saved, bd.SavedResults)
    for compute in (bd.compute_elasticities, bd.compute_costs, bd.compute_shares):
        with pytest.raises(SpecificationError,
                           match=r"load_results\(path, products=\.\.\., agents=\.\.\.\)"):
            compute(saved)


def test_other_data_are_refused(tmp_path: Path, nevo_products, nevo_agents) -> None:
    problem = bd.Problem(nevo_products, linear="prices", nonlinear="0 + prices",
                         agents=nevo_agents, absorb="C(product_ids)", instruments=NEVO_Z)
    with _quiet():
        live = bd.evaluate(problem, sigma=[2.0], config=bd.EstimationConfig(hessian=False))
    path = bd.save_results(live, tmp_path / "blp.json")
    other = nevo_products.copy()
    other.loc[0, "shares"] *= 1.01
    with _quiet(), pytest.raises(DataError, match="data differ"):
        bd.load_results(path, products=other, agents=nevo_agents)
    with pytest.raises(SpecificationError, match="pass agents="):
        bd.load_results(path, products=nevo_products)


def test_resaved_file_keeps_what_rebuilds_it(tmp_path: Path, nevo_products) -> None:
    live = bd.estimate_logit(nevo_products, linear="prices", instruments=NEVO_Z,
                             absorb="C(product_ids)")
    saved = bd.load_results(bd.save_results(live, tmp_path / "a.json"))
    again = bd.load_results(bd.save_results(saved, tmp_path / "b.json"), products=nevo_products)
    np.testing.assert_allclose(again.params, live.params, rtol=1e-12)
