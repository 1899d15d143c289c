"""Edge cases of the parametric bootstrap (results/bootstrap.py) and of FixedPointConfig(threads=N).

Bootstrap references: shares computed here market by market from the data frame (plain numpy,
the user's row order), the closed forms of hold="xi" (delta_b = delta + X1 (beta_b - beta),
xi_b = xi) and of the logit inversion (delta = log s - log s_0, product fixed effects removed
by group means), simulated truth (contraction_data: delta that generated the shares), PyBLP
1.3 live on the same data and draws, and numpy's own quantile / std.

Threads references: the sequential inner loop on the same blocks (bit for bit), simulated
truth, and numpy's error state as set by the caller.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from contraction_data import simulated

import blpdemand as bd
from blpdemand.errors import (
    ConvergenceWarning,
    EconomicWarning,
    IdentificationWarning,
    OptimizationWarning,
    SpecificationError,
    WeakInstrumentsWarning,
)
from blpdemand.solve.contraction import InnerLoop, _block_cap, compute_shares
from blpdemand.solve.fixed_point import FixedPointConfig
from blpdemand.solve.inversion import solve_delta

SIGMA0 = np.array([[0.5, 0.0], [0.1, 0.2]])  # lower-triangular (correlated) Sigma start


def _frame(seed: int = 2, markets: int = 10) -> tuple[Any, pd.DataFrame]:
    """Simulated products with extra instruments, rows shuffled (not sorted by market)."""
    sim = bd.simulate(markets=markets, products=4, sigma={"x1": 1.0, "prices": 0.3}, draws=40,
                      rng=seed)
    p = sim.products.copy()
    p["z3"] = p.x1 ** 2
    p["z4"] = p.groupby("market_ids").x1.transform("sum") - p.x1
    p["z5"] = p.groupby("market_ids").w1.transform("sum") - p.w1
    return sim, p.sample(frac=1.0, random_state=seed + 1).reset_index(drop=True)


INSTRUMENTS = ["w1", "w2", "z3", "z4", "z5"]


@pytest.fixture(scope="module")
def fe():
    """BLP with product fixed effects absorbed, a lower-triangular Sigma, shuffled rows."""
    sim, p = _frame()
    problem = bd.Problem(p, linear="0 + prices + x1", nonlinear="0 + x1 + prices",
                         agents=sim.agents, absorb="C(product_ids)", instruments=INSTRUMENTS)
    results = bd.estimate(problem, sigma=SIGMA0)
    assert results.converged and results.layout.P == 3
    return sim, p, results


def _hand_shares(p: pd.DataFrame, agents: pd.DataFrame, sigma: np.ndarray,
                 delta: np.ndarray) -> np.ndarray:
    """s_j = sum_i w_i exp(delta_j + x2_j' Sigma nu_i) / (1 + sum_k ...), per market, user order."""
    out = np.empty(len(p))
    for t, rows in p.groupby("market_ids").indices.items():
        a = agents[agents.market_ids == t]
        nu = a[["nodes0", "nodes1"]].to_numpy()
        x2 = p.loc[rows, ["x1", "prices"]].to_numpy()
        u = delta[rows][:, None] + x2 @ sigma @ nu.T  # (J, I)
        e = np.exp(u)
        out[rows] = (e / (1 + e.sum(axis=0))) @ a.weights.to_numpy()
    return out


def _demean(values: np.ndarray, groups: pd.Series) -> np.ndarray:
    """One-way fixed effects removed by hand: values minus their group mean."""
    frame = pd.DataFrame(values)
    return (frame - frame.groupby(groups.to_numpy()).transform("mean")).to_numpy().squeeze()


# ---------------------------------------------------------------- bootstrap: absorbed FE, order
def test_hold_xi_with_absorbed_fe_in_user_order(fe) -> None:
    # Reference (closed form, hold="xi"): delta_b = delta + X1 (beta_b - beta) with X1 built
    # here from the shuffled frame; xi_b = xi (xi = demean(delta) - demean(X1) beta is linear,
    # the fixed effects are held with xi); rel/abs 1e-12.
    _, p, results = fe
    boot = bd.bootstrap(results, draws=4, rng=1, hold="xi")
    X1 = p[["prices", "x1"]].to_numpy()
    expected = np.asarray(results.delta)[None] + (boot.beta - results.beta) @ X1.T
    np.testing.assert_allclose(boot.delta, expected, rtol=1e-12, atol=1e-12)
    xi = boot.apply(lambda f: f.problem.products.unsort(f.xi))
    np.testing.assert_allclose(xi.draws, np.tile(np.asarray(results.xi), (4, 1)), atol=1e-11)
    by_hand = _demean(np.asarray(results.delta), p.product_ids) - _demean(X1, p.product_ids) @ results.beta
    np.testing.assert_allclose(xi.estimate, by_hand, atol=1e-11)


def test_hold_shares_with_absorbed_fe_inverts_hand_shares_in_user_order(fe) -> None:
    # Reference: shares computed here from the frame (user row order) at (Sigma_b, delta_b)
    # equal the observed shares (rel 1e-10); xi_b = demean(delta_b) - demean(X1) beta_b by hand
    # (atol 1e-10); outputs of results functions at the estimate keep the library's row order.
    sim, p, results = fe
    boot = bd.bootstrap(results, draws=3, rng=2, workers=2)
    assert boot.draws == 3
    X1 = p[["prices", "x1"]].to_numpy()
    for b, fitted in enumerate(boot.fitted):
        shares = _hand_shares(p, sim.agents, fitted.sigma, boot.delta[b])
        np.testing.assert_allclose(shares, p.shares.to_numpy(), rtol=1e-10)
        xi = _demean(boot.delta[b], p.product_ids) - _demean(X1, p.product_ids) @ boot.beta[b]
        np.testing.assert_allclose(fitted.problem.products.unsort(fitted.xi), xi, atol=1e-10)
    costs = boot.apply(bd.compute_costs)
    with pytest.warns(EconomicWarning):  # this simulation implies some costs < 0
        at_estimate = bd.compute_costs(results)
    np.testing.assert_allclose(costs.estimate, np.asarray(at_estimate), rtol=1e-12)
    own = boot.apply(lambda f: bd.compute_elasticities(f).diagonal())
    np.testing.assert_allclose(own.estimate, bd.compute_elasticities(results).diagonal(),
                               rtol=1e-12)


def test_correlated_sigma_shuffled_fe_matches_pyblp_bootstrap(fe) -> None:
    # Reference: PyBLP 1.3 live on the same shuffled frame (lower-triangular Sigma, product FE),
    # its bootstrap's draws fed to from_parameters(hold="xi"): its bootstrapped delta and
    # elasticities in its (= the user's) row order; rel 1e-8 (observed ~1e-14).
    pyblp = pytest.importorskip("pyblp")
    pyblp.options.verbose = False
    sim, p, results = fe
    frame = p.copy()
    for k, z in enumerate(INSTRUMENTS):  # the excluded instruments (x1 is included)
        frame[f"demand_instruments{k}"] = frame[z]
    sigma, _ = results.layout.unpack(results.theta)
    with np.errstate(all="ignore"):
        problem = pyblp.Problem((pyblp.Formulation("0 + prices + x1", absorb="C(product_ids)"),
                                 pyblp.Formulation("0 + x1 + prices")), frame,
                                agent_data=sim.agents)
        theirs = problem.solve(sigma, optimization=pyblp.Optimization("return"), method="1s",
                               check_optimality="gradient")
        boot = theirs.bootstrap(draws=3, seed=0)
        elasticities = boot.compute_elasticities()
    np.testing.assert_allclose(np.asarray(results.delta), theirs.delta.ravel(), rtol=1e-8)
    theta = np.array([results.layout.pack(s, np.zeros((2, 0))) for s in boot.bootstrapped_sigma])
    draws = bd.BootstrapDraws.from_parameters(results, theta, boot.bootstrapped_beta[:, :, 0],
                                              hold="xi")
    np.testing.assert_allclose(draws.delta, boot.bootstrapped_delta[:, :, 0], rtol=1e-8)
    for b, fitted in enumerate(draws.fitted):
        ours = bd.compute_elasticities(fitted).stacked()
        finite = np.isfinite(elasticities[b])
        assert np.array_equal(np.isfinite(ours), finite)
        np.testing.assert_allclose(ours[finite], elasticities[b][finite], rtol=1e-8)


def test_logit_with_absorbed_fe_closed_forms() -> None:
    # Reference (closed forms): logit delta = log s - log s_0 whatever beta_b (hold="shares"),
    # xi_b = demean(delta) - demean(X1) beta_b, own elasticity alpha_b p (1 - s); user order,
    # rel 1e-12. hold="xi": delta_b = delta + X1 (beta_b - beta).
    _, p = _frame(seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WeakInstrumentsWarning)  # F = 8 on this small sample
        logit = bd.estimate_logit(p, linear="prices + x1", absorb="C(product_ids)",
                                  instruments=INSTRUMENTS)
    outside = 1 - p.groupby("market_ids").shares.transform("sum").to_numpy()
    delta = np.log(p.shares.to_numpy()) - np.log(outside)
    X1 = p[["prices", "x1"]].to_numpy()
    boot = bd.bootstrap(logit, draws=5, rng=3)
    np.testing.assert_allclose(boot.delta, np.tile(delta, (5, 1)), rtol=1e-12)
    xi = boot.apply(lambda f: f.problem.products.unsort(f.xi))
    expected = _demean(delta, p.product_ids)[None] - boot.beta @ _demean(X1, p.product_ids).T
    np.testing.assert_allclose(xi.draws, expected, atol=1e-11)
    own = boot.apply(lambda f: bd.compute_elasticities(f).diagonal())
    closed = boot.beta[:, [0]] * (p.prices.to_numpy() * (1 - p.shares.to_numpy()))[None]
    np.testing.assert_allclose(own.draws, closed, rtol=1e-12)
    held = bd.bootstrap(logit, draws=5, rng=3, hold="xi")
    np.testing.assert_allclose(held.delta, delta[None] + (held.beta - logit.fitted.beta) @ X1.T,
                               rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- bootstrap: layouts and truth
def test_pi_only_and_full_layouts_recover_simulated_truth() -> None:
    # Reference: simulated truth (contraction_data): at theta_b = the true theta the re-solved
    # delta_b is the delta that generated the shares (abs 1e-11), whatever beta_b; a Pi-only
    # layout (Sigma fixed at zero) keeps Sigma at zero in every draw and inverts hand shares.
    # 29 products, 4 moments for 3 linear + 4 (or 2) nonlinear parameters: no covariance of
    # (theta, beta) exists (NaN, warned about); the draws' mechanics are tested with a stated V
    problem, layout, theta, truth = simulated(seed=3)
    sigma, pi = layout.unpack(theta)
    with pytest.warns(IdentificationWarning, match="not identified"):
        full = bd.evaluate(problem, sigma=sigma, pi=pi,
                           config=bd.EstimationConfig(hessian=False))
    full = dataclasses.replace(full, covariance=1e-4 * np.eye(7))
    draws = bd.BootstrapDraws.from_parameters(full, np.tile(theta, (2, 1)),
                                              np.tile(full.beta, (2, 1)) + [[0, 1, 0], [2, 0, 1]])
    for fitted in draws.fitted:
        np.testing.assert_allclose(fitted.delta, truth, atol=1e-11)
    with pytest.warns(IdentificationWarning, match="not identified"):
        only_pi = bd.evaluate(problem, sigma=np.zeros((2, 2)), pi=pi,
                              config=bd.EstimationConfig(hessian=False))
    assert only_pi.layout.P == 2 and "pi[1, income]" in only_pi.unidentified
    only_pi = dataclasses.replace(only_pi, covariance=1e-4 * np.eye(5))
    boot = bd.bootstrap(only_pi, draws=3, rng=0)
    for fitted in boot.fitted:
        assert np.all(fitted.sigma == 0.0) and np.all(fitted.pi[:, 0] == fitted.theta)
        np.testing.assert_allclose(compute_shares(problem, only_pi.layout, fitted.theta,
                                                  fitted.delta), problem.products.shares,
                                   rtol=1e-10)


def test_estimate_on_a_bound_is_warned_and_draws_are_not_clipped() -> None:
    # Reference: the bounds themselves; about half of N(bound, V) lies below the bound (the
    # warning reports the share of draws outside; here 30-70% of 200 draws).
    sim, p = _frame(seed=2)
    problem = bd.Problem(p, linear="1 + prices + x1 + x2", nonlinear="0 + x1 + prices",
                         agents=sim.agents, instruments=INSTRUMENTS)
    config = bd.EstimationConfig(bounds={"sigma[x1, x1]": (1.2, 3.0)}, starts=0)
    with pytest.warns(OptimizationWarning, match=r"on a bound: sigma\[x1, x1\] = 1.2"):
        results = bd.estimate(problem, sigma=np.diag([1.5, 0.6]), config=config)
    assert results.theta[0] == pytest.approx(1.2)
    with pytest.warns(ConvergenceWarning, match=r"sigma\[x1, x1\] \(\d+% of draws outside"):
        boot = bd.bootstrap(results, draws=200, rng=0)
    below = float(np.mean(boot.theta[:, 0] < 1.2))
    assert 0.3 < below < 0.7


def test_covariance_checks_singular_and_indefinite(fe) -> None:
    # Reference: a rank-deficient V (one parameter's row and column zero) is positive
    # semi-definite: that parameter stays at its estimate exactly; an indefinite V is refused.
    _, _, results = fe
    V = np.array(results.covariance, copy=True)
    V[0, :] = V[:, 0] = 0.0
    singular = dataclasses.replace(results, covariance=V)
    boot = bd.bootstrap(singular, draws=3, rng=0, hold="xi")
    assert np.all(boot.theta[:, 0] == results.theta[0])
    V = np.array(results.covariance, copy=True)
    V[0, 0] = -V[0, 0]
    with pytest.raises(SpecificationError, match="positive semi-definite"):
        bd.bootstrap(dataclasses.replace(results, covariance=V), draws=3)


# ---------------------------------------------------------------- bootstrap: apply and summaries
def test_function_outputs_names_and_statistics(fe) -> None:
    # Reference: numpy's quantile (linear) and std (ddof=1) on the stored draws (rel 1e-12);
    # labels from a pandas Series, a string naming a scalar, None refused (a function without
    # return), at least 2 draws with 2 requested.
    _, _, results = fe
    boot = bd.bootstrap(results, draws=2, rng=5, hold="xi")
    assert boot.draws == 2
    series = boot.apply(lambda f: pd.Series(f.beta, index=["price", "x1"]))
    assert series.names == ("price", "x1")
    frame = boot.apply(lambda f: pd.DataFrame({"b": f.beta}, index=["p", "x"]))
    assert frame.names == ("p, b", "x, b")
    scalar = boot.apply(lambda f: np.array(f.alpha), names="alpha")
    assert scalar.names == ("alpha",) and scalar.estimate.shape == ()
    with pytest.raises(SpecificationError, match="NoneType"):
        boot.apply(lambda f: None)
    with pytest.raises(SpecificationError, match=r"MarketMatrices .*\.diagonal\(\)"):
        boot.apply(bd.compute_elasticities)
    with pytest.raises(SpecificationError, match="1 names given for 2"):
        boot.apply(lambda f: f.beta, names="ab")  # a string is one label, not two characters
    summary = bd.bootstrap(results, draws=60, rng=6, hold="xi").apply(lambda f: f.beta)
    np.testing.assert_allclose(summary.std, np.std(summary.draws, axis=0, ddof=1), rtol=1e-12)
    for level in (0.9999, np.float32(0.9), 0.5):
        lo, hi = summary.interval(level)
        q = (1 - float(level)) / 2
        np.testing.assert_allclose(lo, np.quantile(summary.draws, q, axis=0), rtol=1e-12)
        np.testing.assert_allclose(hi, np.quantile(summary.draws, 1 - q, axis=0), rtol=1e-12)
    assert list(summary.frame(0.9999).columns)[-2:] == ["[0.00005", "0.99995]"]
    assert list(summary.frame(0.95).columns)[-2:] == ["[0.025", "0.975]"]


def test_shape_change_names_the_kept_draw(fe) -> None:
    # Reference: the draw index in the message is the draw's position among the kept draws
    # (draw 0 raises and is dropped; draw 2 returns another shape).
    _, _, results = fe
    boot = bd.bootstrap(results, draws=4, rng=7, hold="xi")
    first, third = boot.fitted[0], boot.fitted[2]

    def f(fitted: bd.FittedDemand) -> np.ndarray:
        if fitted is first:
            raise SpecificationError("no value here")
        return fitted.beta[:1] if fitted is third else fitted.beta

    with pytest.warns(ConvergenceWarning, match="raised at 1 of 4"), \
            pytest.raises(SpecificationError, match="at draw 2"):
        boot.apply(f, errors="drop")


# ---------------------------------------------------------------- threads
@pytest.mark.parametrize("config", [FixedPointConfig(threads=16),
                                    FixedPointConfig(threads=3, compiled=False),
                                    FixedPointConfig(threads=3, method="newton"),
                                    FixedPointConfig(threads=2, method="squarem", compiled=False)])
def test_threads_reuse_across_thetas_equal_sequence(config) -> None:
    # Reference: the sequential loop on the same blocks, bit for bit, at four thetas with one
    # InnerLoop (warm starts and exp(mu) cache reused; also without the cache); simulated
    # truth at the first (1e-11); a repeated call adds the same Jacobian.
    problem, layout, theta, truth = simulated(seed=5)
    threaded = InnerLoop(problem, layout, config=config)
    uncached = InnerLoop(problem, layout, config=config, cache_bytes=0)
    assert threaded.caches_exp_mu and not uncached.caches_exp_mu
    sequential = InnerLoop(problem, layout, config=dataclasses.replace(
        config, threads=1, block_bytes=_block_cap(problem, config)))
    assert len(threaded.blocks) == problem.products.markets.T  # threads > markets: 1 per block
    v = np.linspace(-1.0, 1.0, problem.N)
    for k, scale in enumerate((1.0, 1.3, 0.7, 1.1)):
        a, b = threaded.solve(theta * scale), sequential.solve(theta * scale)
        assert a.converged and np.array_equal(a.delta, b.delta)
        c = uncached.solve(theta * scale, jacobian=True)
        assert np.array_equal(c.delta, a.delta)
        if k == 0:
            assert np.max(np.abs(a.delta - truth)) < 1e-11
        with_jacobian = threaded.solve(theta * scale, jacobian=True)
        assert np.array_equal(with_jacobian.delta, a.delta)
        assert np.array_equal(with_jacobian.jacobian,
                              sequential.jacobian(theta * scale, b.delta))
        assert np.array_equal(c.jacobian, with_jacobian.jacobian)
        assert np.array_equal(threaded.gradient(theta * scale, a.delta, v),
                              sequential.gradient(theta * scale, b.delta, v))


def test_failed_markets_with_threads_are_the_sequential_ones_sorted() -> None:
    # Reference: the sequential solve; markets started 3 away from the truth cannot close in 6
    # evaluations, those started at the truth do. Ids are sorted and the same as in sequence.
    problem, layout, theta, truth = simulated(seed=5, sizes=(3, 7, 5, 7, 1, 6, 4, 2, 5))
    codes = problem.products.markets.codes
    start = truth + np.where(np.isin(codes, [7, 1, 4]), 3.0, 0.0)
    for method in ("simple", "auto"):
        config = FixedPointConfig(threads=4, max_evaluations=6, method=method)
        a = InnerLoop(problem, layout, config=config).solve(theta, delta0=start)
        b = solve_delta(problem, layout, theta, delta0=start,
                        config=dataclasses.replace(config, threads=1))
        assert a.failed_markets.tolist() == b.failed_markets.tolist() == ["m1", "m4", "m7"]
        assert a.jacobian is None and not a.converged


@pytest.mark.parametrize("threads", [1, 3])
def test_numpy_error_state_is_honoured_on_threads(threads) -> None:
    # Reference: numpy's error state set by the caller (exp(1000) overflows): raise -> the
    # FloatingPointError reaches the caller, ignore -> silent, warn -> RuntimeWarnings surface.
    problem, layout, theta, _ = simulated(seed=5)
    loop = InnerLoop(problem, layout, config=FixedPointConfig(threads=threads))
    delta = np.full(problem.N, 1000.0)
    with np.errstate(all="raise"), pytest.raises(FloatingPointError, match="overflow"):
        loop.shares(theta, delta)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="ignore"):
            assert not np.all(np.isfinite(loop.shares(theta, delta)))
    with warnings.catch_warnings(record=True) as caught, np.errstate(all="warn"):
        warnings.simplefilter("always")
        loop.shares(theta, delta)
    assert any("overflow encountered in exp" in str(w.message) for w in caught)


def test_estimate_threads_with_multistart_workers(fe) -> None:
    # Reference: the same two-step estimation with one start thread and one inner-loop thread:
    # nested pools (2 starts x 2 threads) finish and find the same optimum (rel 1e-6).
    sim, p, _ = fe
    problem = bd.Problem(p, linear="1 + prices + x1 + x2", nonlinear="0 + x1 + prices",
                         agents=sim.agents, instruments=INSTRUMENTS)
    base = {"starts": 1, "method": "2s", "rng": 1}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizationWarning)  # distinct local minima
        one = bd.estimate(problem, sigma=SIGMA0, config=bd.EstimationConfig(**base))
        two = bd.estimate(problem, sigma=SIGMA0, config=bd.EstimationConfig(
            **base, workers=2, contraction={"threads": 2}))
    np.testing.assert_allclose(two.theta, one.theta, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(two.beta, one.beta, rtol=1e-6, atol=1e-8)
    # bootstrap of threaded results with threads inside workers: the same delta_b (1e-12)
    a = bd.bootstrap(two, draws=3, rng=0, workers=2)
    b = bd.BootstrapDraws.from_parameters(
        dataclasses.replace(two, config=dataclasses.replace(two.config, contraction=None)),
        a.theta, a.beta)
    np.testing.assert_allclose(a.delta, b.delta, atol=1e-12)


def test_badly_scaled_covariance_keeps_each_variance(fe) -> None:
    # Reference: N(estimate, V) itself, with standard errors from 1e-8 to 1e4 (a coefficient
    # on income in dollars next to a constant): each sample s.d. within 4.5 Monte Carlo
    # standard errors (sd / sqrt(2 B)) of its own; the correlations within 4.5 / sqrt(B).
    # (A root from V's own eigenvalues puts an absolute error of eps * 1e8 into the 1e-16
    # variance: its draws' s.d. was 1.7 times too large.)
    _, _, results = fe
    sd = np.array([1e-8, 0.1, 1.0, 1e3, 1e4])
    C = 0.3 * np.ones((5, 5)) + 0.7 * np.eye(5)
    scaled = dataclasses.replace(results, covariance=C * np.outer(sd, sd))
    B = 4000
    boot = bd.bootstrap(scaled, draws=B, rng=11, hold="xi")
    draws = np.hstack([boot.theta, boot.beta])
    assert np.all(np.abs(draws.std(axis=0, ddof=1) / sd - 1) < 4.5 / np.sqrt(2 * B))
    assert np.all(np.abs(np.corrcoef(draws, rowvar=False) - C) < 4.5 / np.sqrt(B))


def test_nevo_fe_bootstrap_with_threads_equals_sequential(nevo_products, nevo_agents) -> None:
    # Reference: the same bootstrap with the sequential inner loop (Nevo, product FE, PyBLP's
    # tutorial estimates): threads=2 in the results' contraction options and workers=2 give the
    # same draws and delta_b to 1e-12.
    problem = bd.Problem(nevo_products, linear="0 + prices",
                         nonlinear="1 + prices + sugar + mushy",
                         demographics="0 + income + income_squared + age + child",
                         agents=nevo_agents, absorb="C(product_ids)",
                         instruments=[f"demand_instruments{k}" for k in range(20)])
    sigma = np.diag([0.5588, 3.3124, -0.0058, 0.0934])
    pi = np.array([[2.2919, 0, 1.2842, 0], [588.3252, -30.1920, 0, 11.0546],
                   [-0.3842, 0, 0.0524, 0], [0.7480, 0, -1.3536, 0]])
    one = bd.evaluate(problem, sigma=sigma, pi=pi, config=bd.EstimationConfig(hessian=False))
    two = bd.evaluate(problem, sigma=sigma, pi=pi, config=bd.EstimationConfig(
        hessian=False, contraction={"threads": 2}))
    a = bd.bootstrap(one, draws=4, rng=0)
    b = bd.bootstrap(two, draws=4, rng=0, workers=2)
    assert a.draws == b.draws == 4
    np.testing.assert_array_equal(a.theta, b.theta)
    np.testing.assert_allclose(a.delta, b.delta, atol=1e-12)
