"""Salanie-Wolak approximation on simulated markets with known truth (bd.simulate and a
hand-built demographic simulation): close to the truth and to full BLP for small sigma, and
visibly biased (attenuated) for large sigma, as Salanie and Wolak (2019, section 6) report.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.instruments.demographic import build_demographic_instruments
from blpdemand.instruments.differentiation import build_differentiation_instruments
from blpdemand.results.approximation import estimate_approximation


def _problem(sigma: float, seed: int, markets: int = 400) -> tuple[bd.Problem, dict]:
    """bd.simulate with a random coefficient on x1; cost shifters, quadratic differentiation
    instruments on (x1, x2) and x1^2 as instruments."""
    sim = bd.simulate(markets=markets, products=10, sigma={"x1": sigma}, draws=1000, rng=seed)
    products = sim.products
    gh = build_differentiation_instruments(products, "x1 + x2", version="quadratic")
    products = pd.concat([products, gh], axis=1).assign(x1sq=products["x1"] ** 2)
    instruments = list(sim.instruments) + list(gh.columns) + ["x1sq"]
    problem = bd.Problem(products, linear=sim.linear, nonlinear="0 + x1", agents=sim.agents,
                         instruments=instruments)
    truth = {**sim.truth["beta"], "prices": sim.truth["alpha"], "sigma": sigma}
    return problem, truth


@pytest.fixture(scope="module")
def small() -> tuple[bd.Problem, dict]:
    return _problem(0.5, seed=0)


def test_small_sigma_is_close_to_the_truth(small: tuple[bd.Problem, dict]) -> None:
    # Known truth (sigma_x1 = 0.5, 400 markets x 10 products): every linear coefficient within
    # 3 standard errors of the truth, sigma within 3 SEs and 0.06 (seed 0 gives 0.468 (0.015)).
    problem, truth = small
    approx = estimate_approximation(problem)
    for name, b, se in zip(problem.X1.names, approx.beta, approx.beta_se):
        assert abs(b - truth[name]) < 3 * se, name
    sigma, se = approx.sigma[0, 0], approx.sigma_se[0]
    assert abs(sigma - truth["sigma"]) < max(3 * se, 0.06)
    assert approx.negative_variance == ()


def test_small_sigma_is_close_to_full_blp(small: tuple[bd.Problem, dict]) -> None:
    # Full BLP (bd.estimate with the simulation's own draws, started at the approximation) on
    # the same data: sigma and beta agree within 2 BLP standard errors (the approximation error
    # at sigma = 0.5 is O(sigma^4) ~ 0.03 on sigma, about 1-2 SEs here).
    problem, _ = small
    approx = estimate_approximation(problem)
    sigma0, _ = approx.start(np.array([1.0]))
    with np.errstate(all="ignore"):
        blp = bd.estimate(problem, sigma=sigma0, config=bd.EstimationConfig(hessian=False))
    assert blp.converged
    assert abs(approx.sigma[0, 0] - abs(blp.sigma[0, 0])) < 2 * blp.sigma_se[0, 0]
    assert np.all(np.abs(approx.beta - blp.beta) < 2 * blp.beta_se)


def test_large_sigma_bias_is_shown_not_hidden() -> None:
    # Documented limitation: the expansion is in small sigma. With sigma_x1 = 2 the
    # approximation attenuates sigma to about 1.13 (seed 0; 1.12 on seed 1), some 60 standard
    # errors below the truth, and the mean x1 coefficient drops from 1.0 to about 0.92.
    # At sigma = 1 it gives about 0.81. Asserted: sigma_hat < 0.65 * 2 and > 20 SEs below.
    problem, truth = _problem(2.0, seed=0)
    approx = estimate_approximation(problem)
    sigma, se = approx.sigma[0, 0], approx.sigma_se[0]
    assert sigma < 0.65 * truth["sigma"]
    assert (truth["sigma"] - sigma) / se > 20


def _demographic_markets(seed: int, markets: int = 500, products: int = 10, agents: int = 500
                         ) -> tuple[bd.Problem, dict]:
    """Hand-built markets with beta_i(x1) = 1 + pi y_i + sigma nu_i, y_it ~ N(m_t, sd_t^2)."""
    rng = np.random.default_rng(seed)
    T, J, I = markets, products, agents
    truth = {"1": -1.0, "prices": -1.0, "x1": 1.0, "sigma": 0.3, "pi": 0.4}
    x1 = rng.normal(size=(T, J))
    w = rng.uniform(size=(T, J))
    xi = 0.3 * rng.normal(size=(T, J))
    prices = np.exp(0.3 * w + 0.5 * xi + 0.1 * rng.normal(size=(T, J)))
    delta = truth["1"] + truth["prices"] * prices + truth["x1"] * x1 + xi
    m = rng.uniform(-1, 1, size=T)
    sd = rng.uniform(0.5, 1.5, size=T)
    y = m[:, None] + sd[:, None] * rng.normal(size=(T, I))
    nu = rng.normal(size=(T, I))
    beta_i = truth["pi"] * y + truth["sigma"] * nu  # (T, I)
    u = np.exp(delta[:, :, None] + x1[:, :, None] * beta_i[:, None, :])
    shares = (u / (1 + u.sum(axis=1, keepdims=True))).mean(axis=2)
    frame = pd.DataFrame({"market_ids": np.repeat(np.arange(T), J), "shares": shares.ravel(),
                          "prices": prices.ravel(), "x1": x1.ravel(), "w": w.ravel()})
    agent_frame = pd.DataFrame({"market_ids": np.repeat(np.arange(T), I),
                                "weights": 1.0 / I, "nodes0": nu.ravel(), "income": y.ravel()})
    frame["firm_ids"] = np.tile(np.arange(J), T)
    gh = build_differentiation_instruments(frame, "x1", version="quadratic", split=False)
    demo = build_demographic_instruments(frame, agent_frame, "0 + x1 + w", "income")
    frame = pd.concat([frame, gh, demo], axis=1).assign(x1sq=frame["x1"] ** 2)
    instruments = ["w", "x1sq", *gh.columns, *demo.columns]
    problem = bd.Problem(frame, linear="1 + prices + x1", nonlinear="0 + x1", agents=agent_frame,
                         demographics="income", instruments=instruments)
    return problem, truth


def test_demographics_small_pi_is_close_to_the_truth() -> None:
    # Known truth pi = 0.4, sigma = 0.3 on x1 with market-varying demographic means and
    # variances (500 markets): pi and the linear coefficients within 3 SEs, sigma within
    # 3 SEs or 0.08. The nonlinear 2SLS (with Pi's quadratic term) converges.
    problem, truth = _demographic_markets(seed=1)
    approx = estimate_approximation(problem, sigma=[1.0], pi=[[1.0]])
    assert approx.converged
    for name, b, se in zip(problem.X1.names, approx.beta, approx.beta_se):
        assert abs(b - truth[name]) < 3 * se, name
    assert abs(approx.pi[0, 0] - truth["pi"]) < 3 * approx.pi_se[0, 0]
    assert abs(approx.sigma[0, 0] - truth["sigma"]) < max(3 * approx.sigma_se[0], 0.08)


def test_dropping_pis_quadratic_term_biases_sigma() -> None:
    # Without Q(Pi) = pi^2 v_t d_jt the variance of pi * income is loaded onto sigma^2:
    # seed 1 gives sigma 0.48 (truth 0.3) instead of 0.24 with the term; asserted > 0.4.
    problem, truth = _demographic_markets(seed=1)
    linear = estimate_approximation(problem, sigma=[1.0], pi=[[1.0]], quadratic_pi=False)
    assert linear.iterations == 1
    assert linear.sigma[0, 0] > 0.4 > truth["sigma"]
