"""Covariance restrictions recover the price coefficient with NO excluded price instrument.

Truth: ``bd.simulate(pricing="bertrand", rho=0)``: Bertrand-Nash prices of a logit with
alpha = -2, log marginal costs log c = w' gamma + omega with omega = rho xi + eta, so rho = 0
makes xi and omega independent (E[xi omega] = 0 holds; the simulated sample's correlation is
-0.01). Estimation: Z_D = X1 = [1, x1, x2] and Z_S = X3 = [1, w1, w2], so the demand and supply
blocks exactly identify beta and gamma given alpha; only the covariance moment E[xi omega] = 0
(plus E[xi omega x1] = 0 in the over-identified case) identifies alpha, the mean coefficient on
prices (Pi on a constant demographic, one agent per market).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import OptimizationWarning, SpecificationError

ALPHA, BETA0 = -2.0, -0.5


def markets(rng: int, T: int = 200) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    sim = bd.simulate(markets=T, products=5, firms=2, alpha=ALPHA, rho=0.0, pricing="bertrand",
                      xi_sd=0.5, eta_sd=0.3, rng=rng)
    agents = pd.DataFrame({"market_ids": np.arange(T), "weights": 1.0, "nodes0": 0.0,
                           "one": 1.0})
    assert sim.supply is not None and sim.truth["rho"] == 0.0
    return sim.products, agents, sim.supply


def simulated_problem(rng: int, columns: list[str] | None = None, *, T: int = 200,
                      mean: float = 0.0) -> bd.Problem:
    products, agents, supply = markets(rng, T)
    return bd.Problem(products, linear="1 + x1 + x2", nonlinear="0 + prices",
                      demographics="0 + one", agents=agents, supply=supply, costs="log",
                      covariance_restrictions=columns, covariance_moments_mean=mean)


CONFIG = bd.EstimationConfig(method="2s", starts=0)


def test_recovers_alpha_without_an_excluded_instrument() -> None:
    # Measured (rng 1, 200 markets x 5 products): alpha -2.0058 (SE 0.0168, 0.35 SE from the
    # truth); beta and gamma within 1 SE; Q = 0 (exactly identified). Tolerance: 3 SE.
    results = bd.estimate(simulated_problem(1, ["1"]), pi=[[-1.5]], config=CONFIG)
    assert results.converged
    alpha, se = float(results.theta[0]), float(results.theta_se[0])
    assert np.isfinite(se) and 0 < se < 0.05
    assert abs(alpha - ALPHA) < 3 * se
    truth_linear = np.r_[BETA0, 1.0, -0.5, 0.0, 1.0, 1.0]  # beta (1, x1, x2), gamma (1, w1, w2)
    linear = np.r_[results.beta, results.gamma]
    assert np.all(np.abs(linear - truth_linear) < 3 * results.standard_errors[1:])
    assert results.hansen_j.df == 0
    assert "covariance restrictions" in results.summary().to_text()


def test_without_the_restrictions_alpha_is_not_identified() -> None:
    # the test above can fail: the same problem without covariance moments has 6 moments for
    # 7 parameters, named as under-identified
    with pytest.raises(SpecificationError, match="under-identified"):
        bd.estimate(simulated_problem(1, None), pi=[[-1.5]], config=CONFIG)


def test_the_mean_sets_the_fitted_covariance() -> None:
    # sensitivity analysis: m != 0 moves alpha, and exactly identified the fitted mean of
    # xi * omega equals m (g_C = mean(xi omega) - m = 0; to 1e-10, the contraction's precision
    # times the residuals' scale)
    base = bd.estimate(simulated_problem(1, ["1"]), pi=[[-1.5]], config=CONFIG)
    moved = bd.estimate(simulated_problem(1, ["1"], mean=0.02), pi=[[-1.5]], config=CONFIG)
    assert moved.converged
    assert abs(float(moved.theta[0] - base.theta[0])) > 2 * float(base.theta_se[0])
    assert abs(float(np.mean(moved.xi * moved.omega)) - 0.02) < 1e-10  # type: ignore[operator]


def test_a_bound_on_alpha_excludes_the_upper_root() -> None:
    # MacKay and Miller's second solution: E[xi omega] = 0 also holds near alpha = 0+ (here
    # pi = 0.0007 with Q = 4e-21, reached by the default's random start from 0.82), where
    # demand barely slopes; exactly identified, Q = 0 at both roots, so the lowest Q cannot
    # choose between them. Bounding the price coefficient below zero leaves the lower root:
    # all 5 default starts end at it (measured: within 1e-7 of each other).
    config = bd.EstimationConfig(bounds={"pi[prices, one]": (-10.0, -0.01)})
    results = bd.estimate(simulated_problem(1, ["1"]), pi=[[-1.5]], config=config)
    assert results.converged and len(results.starts) == 5
    assert all(s.same for s in results.starts)
    assert abs(float(results.theta[0]) - ALPHA) < 3 * float(results.theta_se[0])


def test_saved_results_rebuild_the_restrictions(tmp_path: Any) -> None:
    # save_results / load_results(products=..., agents=...) rebuild the Problem with the same
    # covariance instruments and mean, and re-evaluate at the saved estimate (same numbers)
    results = bd.estimate(simulated_problem(1, ["1", "x1"], mean=0.01), pi=[[-1.5]],
                          config=CONFIG)
    path = bd.save_results(results, tmp_path / "covariance.json")
    products, agents, _ = markets(1)
    back = bd.load_results(path, products=products, agents=agents)
    supply = back.problem.supply
    assert supply is not None and supply.covariance is not None
    assert supply.covariance.columns == ("1", "x1") and supply.covariance.mean == 0.01
    np.testing.assert_allclose(back.estimates, results.estimates, rtol=1e-10)
    np.testing.assert_allclose(back.standard_errors, results.standard_errors, rtol=1e-8)
    assert back.hansen_j.df == results.hansen_j.df == 1
    # with_covariance rebuilds S over the three blocks: robust again gives the same matrix
    again = results.with_covariance("robust")
    np.testing.assert_allclose(again.covariance, results.covariance, rtol=1e-12)
    clustered = results.with_covariance("clustered", clusters="market_ids")
    assert np.all(np.isfinite(clustered.standard_errors))


@pytest.mark.slow
def test_monte_carlo_coverage() -> None:
    # 100 samples, over-identified (z_C = [1, x1], J df = 1), 2-step: the 95% intervals of
    # alpha, the demand intercept and the cost intercept cover the truth in 95%, 96% and 94%
    # (measured; the intercept's SE carries alpha's uncertainty, see solve/concentrated_
    # covariance). Tolerance: 95% +- 2.5 binomial SDs (0.022) for 100 draws.
    # One sample of the 100 stops at line-search precision (gradient 1.4e-5 at Q ~ 1.1, a
    # 1-parameter Hessian of ~7e3: theta within 2e-9 of the minimum): warned, counted.
    hits, converged = np.zeros(3), 0
    for rng in range(1, 101):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizationWarning)
            results = bd.estimate(simulated_problem(rng, ["1", "x1"]), pi=[[-1.5]],
                                  config=CONFIG)
        converged += results.converged
        z = (np.r_[results.theta[0], results.beta[0], results.gamma[0]]
             - np.r_[ALPHA, BETA0, 0.0]) / results.standard_errors[[0, 1, 4]]
        hits += np.abs(z) < 1.96
    coverage = hits / 100
    assert converged >= 95
    assert np.all((coverage > 0.89) & (coverage < 1.0))
