"""Contract: ``bd.estimate`` / ``bd.evaluate`` / ``EstimationConfig`` name every bad option and
every numerical failure (the parameter, the market), and never return NaN as success.

Reference: each case breaks one thing by hand (the option, bound, parameter or market written
in the test); the assertion is the exact error or warning class and the culprit's name.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import (
    BLPDemandError,
    BLPDemandWarning,
    ConvergenceError,
    ConvergenceWarning,
    SpecificationError,
)
from blpdemand.model.simulation import simulate
from blpdemand.solve.fixed_point import FixedPointConfig
from blpdemand.solve.inversion import solve_delta

FAST = {"hessian": False, "max_iterations": 50}
SLOW_INNER = FixedPointConfig(method="squarem", max_evaluations=300)  # market 3 needs far more (SQUAREM)


@pytest.fixture(scope="module")
def sim() -> bd.SimulatedMarkets:
    return simulate(markets=6, products=4, sigma={"x1": 1.0}, draws=20, rng=21)


def _problem(sim: bd.SimulatedMarkets, products: pd.DataFrame | None = None,
             **kwargs: object) -> bd.Problem:
    options: dict[str, object] = {"linear": sim.linear, "nonlinear": sim.nonlinear,
                                  "agents": sim.agents, "instruments": list(sim.instruments)}
    options.update(kwargs)
    return bd.Problem(sim.products if products is None else products, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def problem(sim: bd.SimulatedMarkets) -> bd.Problem:
    return _problem(sim)


@pytest.fixture(scope="module")
def slow_market(sim: bd.SimulatedMarkets) -> bd.Problem:
    """Market 3's inside shares sum to 1 - 1e-6: its contraction is far slower than the others'."""
    products = sim.products.copy()
    rows = products["market_ids"] == 3
    products.loc[rows, "shares"] *= (1 - 1e-6) / products.loc[rows, "shares"].sum()
    return _problem(sim, products)


# ---------------------------------------------------------------- options
@pytest.mark.parametrize("option, value", [
    ("optimizer", "newton"), ("method", "3s"), ("weighting", "hc3"), ("covariance", "hc1"),
    ("on_failure", "ignore"),
])
def test_unknown_option_value(option: str, value: str) -> None:
    with pytest.raises(SpecificationError, match=f"{option}={value!r}"):
        bd.EstimationConfig(**{option: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs, name", [
    ({"gtol": -1.0}, "gtol"), ({"gtol": float("nan")}, "gtol"),
    ({"max_iterations": 0}, "max_iterations"), ({"starts": -1}, "starts"),
    ({"covariance": "clustered"}, "clusters"), ({"weighting": "clustered"}, "clusters"),
])
def test_invalid_option_numbers(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(SpecificationError, match=name):
        bd.EstimationConfig(**kwargs)  # type: ignore[arg-type]


def test_unknown_option_name() -> None:
    with pytest.raises(TypeError, match="'tolerance'"):
        bd.EstimationConfig(tolerance=1e-6)  # type: ignore[call-arg]


def test_unknown_contraction_option(problem: bd.Problem) -> None:
    with pytest.raises(SpecificationError, match="'bogus'"):
        bd.estimate(problem, sigma=[0.5],
                    config=bd.EstimationConfig(contraction={"bogus": 1}, **FAST))


def test_unknown_cluster_column(problem: bd.Problem) -> None:
    config = bd.EstimationConfig(covariance="clustered", clusters="city", **FAST)
    with pytest.raises(SpecificationError, match="'city'"):
        bd.estimate(problem, sigma=[0.5], config=config)


# ---------------------------------------------------------------- starting values and bounds
def test_start_outside_bounds(problem: bd.Problem) -> None:
    config = bd.EstimationConfig(bounds={"sigma[x1, x1]": (1.0, 2.0)}, **FAST)
    with pytest.raises(SpecificationError, match=r"0.5 of sigma\[x1, x1\].*\(1.0, 2.0\)"):
        bd.estimate(problem, sigma=[0.5], config=config)


def test_bounds_for_unknown_parameter(problem: bd.Problem) -> None:
    config = bd.EstimationConfig(bounds={"sigma[x2, x2]": (0.0, 2.0)}, **FAST)
    with pytest.raises(SpecificationError, match=r"'sigma\[x2, x2\]'.*\['sigma\[x1, x1\]'\]"):
        bd.estimate(problem, sigma=[0.5], config=config)


def test_empty_bounds(problem: bd.Problem) -> None:
    config = bd.EstimationConfig(bounds={"sigma[x1, x1]": (2.0, 1.0)}, **FAST)
    with pytest.raises(SpecificationError, match=r"sigma\[x1, x1\].*low < high"):
        bd.estimate(problem, sigma=[0.5], config=config)


@pytest.mark.parametrize("sigma, pattern", [
    ([0.0], "random coefficients"), (None, "random coefficients"),
    ([np.nan], "NaN"), ([0.5, 0.5], r"sigma has 2 elements.*\['x1'\]"),
])
def test_bad_starting_sigma(problem: bd.Problem, sigma: object, pattern: str) -> None:
    with pytest.raises(SpecificationError, match=pattern):
        bd.estimate(problem, sigma=sigma, config=bd.EstimationConfig(**FAST))


def test_fewer_moments_than_parameters(sim: bd.SimulatedMarkets) -> None:
    # K1 = 4 linear + 3 sigma = 7 parameters, 5 moments (1, x1, x2, w1, w2)
    problem = _problem(sim, nonlinear="1 + x1 + x2", agents=bd.Integration("halton", 16, rng=0))
    with pytest.raises(SpecificationError, match=r"5 moment\(s\).*7 parameter\(s\).*sigma\[x2, x2\]"):
        bd.estimate(problem, sigma=[1.0, 1.0, 1.0], config=bd.EstimationConfig(**FAST))


# ---------------------------------------------------------------- the inner loop fails in one market
def test_contraction_status_names_the_market(slow_market: bd.Problem) -> None:
    layout, theta = slow_market.layout(sigma=[1.0])
    result = solve_delta(slow_market, layout, theta, config=SLOW_INNER)
    assert not result.converged
    assert result.failed_markets.tolist() == [3]
    assert result.status.value != "converged"


def test_contraction_failure_raises_naming_the_market(slow_market: bd.Problem) -> None:
    config = bd.EstimationConfig(contraction=SLOW_INNER, on_failure="raise", **FAST)
    with pytest.raises(ConvergenceError, match=r"market\(s\) \[3\]"):
        bd.estimate(slow_market, sigma=[1.0], config=config)


def test_contraction_failure_warns_naming_the_market(slow_market: bd.Problem) -> None:
    config = bd.EstimationConfig(contraction=SLOW_INNER, on_failure="warn",
                                 hessian=False, max_iterations=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = bd.estimate(slow_market, sigma=[1.0], config=config)
    messages = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert any("'3'" in m or "[3]" in m or " 3" in m for m in messages), messages
    assert results.contraction_failures > 0
    assert all(issubclass(w.category, BLPDemandWarning) for w in caught), [
        (w.category, str(w.message)) for w in caught]


# ---------------------------------------------------------------- overflow
@pytest.mark.parametrize("sigma", [50.0, 1e3, 1e6])
def test_huge_sigma_is_finite_or_reported(problem: bd.Problem, sigma: float) -> None:
    # exp(sigma x nu) overflows float64 without care: the result is finite, or the failure is
    # one of ours (error, or a warning and a non-converged status), never NaN or a numpy error.
    config = bd.EstimationConfig(hessian=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            results = bd.evaluate(problem, sigma=[sigma], config=config)
        except BLPDemandError:
            return
    assert all(issubclass(w.category, BLPDemandWarning) for w in caught), [
        (w.category, str(w.message)) for w in caught]
    if results.contraction_failures == 0:
        assert np.all(np.isfinite(results.delta)) and np.all(np.isfinite(results.beta))
        assert np.isfinite(results.objective)
    else:
        assert any(issubclass(w.category, ConvergenceWarning) for w in caught)


def test_huge_sigma_estimate_is_finite_or_reported(problem: bd.Problem) -> None:
    bounds = {"sigma[x1, x1]": (-1e4, 1e4)}
    config = bd.EstimationConfig(hessian=False, max_iterations=5, bounds=bounds)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            results = bd.estimate(problem, sigma=[1e3], config=config)
        except BLPDemandError:
            return
    assert all(issubclass(w.category, BLPDemandWarning) for w in caught)
    if results.converged:
        assert np.all(np.isfinite(results.estimates))


# ---------------------------------------------------------------- valid edge cases
def test_single_product_markets_estimate(sim: bd.SimulatedMarkets) -> None:
    # one market of one product among others: estimation runs and is finite
    products = sim.products[~((sim.products["market_ids"] == 2) & (sim.products["product_ids"] > 0))]
    problem = _problem(sim, products)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BLPDemandWarning)
        results = bd.estimate(problem, sigma=[0.5], config=bd.EstimationConfig(**FAST))
    assert np.all(np.isfinite(results.estimates))
