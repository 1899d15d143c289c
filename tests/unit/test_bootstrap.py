"""Parametric bootstrap (results/bootstrap.py) on simulated markets and a plain logit.

References: the normal distribution the draws come from (sample mean and covariance within
Monte Carlo error), the logit's closed-form elasticities, the inner loop run directly on the
dropped draws, and the same computation repeated (determinism).
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

import blpdemand as bd
from blpdemand.errors import ConvergenceWarning, SpecificationError
from blpdemand.solve.contraction import compute_shares
from blpdemand.solve.inversion import solve_delta

B = 2000  # draws for the moment checks
Z = 4.5  # Monte Carlo bound in standard errors (|z| > 4.5: probability ~7e-6 per entry)


@pytest.fixture(scope="module")
def results() -> bd.BLPResults:
    # Two random coefficients in X2, sigma[prices] fixed at zero by the start: P = 1.
    sim = bd.simulate(markets=20, products=5, sigma={"x1": 1.0, "prices": 0.3}, draws=50, rng=0)
    problem = bd.Problem(sim.products, linear=sim.linear, nonlinear=sim.nonlinear,
                         agents=sim.agents, instruments=list(sim.instruments))
    out = bd.estimate(problem, sigma=[0.5, 0.0])
    assert out.converged and out.layout.P == 1
    return out


@pytest.fixture(scope="module")
def logit() -> bd.LogitResults:
    sim = bd.simulate(markets=20, products=5, rng=1)
    return bd.estimate_logit(sim.products, linear=sim.linear, instruments=list(sim.instruments))


def _check_moments(summary: bd.BootstrapSummary, mean: np.ndarray, covariance: np.ndarray) -> None:
    """Sample mean within Z se/sqrt(B); sample covariance S_ij within Z sd(S_ij), where
    Var(S_ij) = (V_ij^2 + V_ii V_jj) / (B - 1) for normal draws."""
    draws = summary.draws
    n = draws.shape[0]
    se = np.sqrt(np.diag(covariance))
    assert np.all(np.abs(summary.mean - mean) < Z * se / np.sqrt(n))
    sample = np.cov(draws, rowvar=False)
    sd = np.sqrt((covariance ** 2 + np.outer(np.diag(covariance), np.diag(covariance))) / (n - 1))
    assert np.all(np.abs(sample - covariance) < Z * sd)
    np.testing.assert_allclose(summary.std, np.sqrt(np.diag(sample)), rtol=1e-12)


def test_draws_reproduce_the_estimate_and_covariance(results) -> None:
    # Reference: N(estimate, covariance) itself; mean and covariance of B = 2000 draws within
    # 4.5 Monte Carlo standard errors (deterministic: fixed rng).
    boot = bd.bootstrap(results, draws=B, rng=7)
    assert boot.draws == B and boot.dropped.size == 0
    summary = boot.apply(lambda f: np.concatenate([f.theta, f.beta]), names=results.names)
    np.testing.assert_array_equal(summary.estimate, results.estimates)
    _check_moments(summary, results.estimates, results.covariance)
    # the parameter fixed at zero by the layout stays zero at every draw
    sigmas = np.array([f.sigma for f in boot.fitted])
    assert np.all(sigmas[:, 1, 1] == 0.0) and np.all(sigmas[:, 0, 0] == boot.theta[:, 0])
    lo, hi = summary.interval(0.9)  # percentile interval: the empirical 5% and 95% quantiles
    np.testing.assert_allclose(lo, np.quantile(summary.draws, 0.05, axis=0), rtol=1e-12)
    np.testing.assert_allclose(hi, np.quantile(summary.draws, 0.95, axis=0), rtol=1e-12)
    table = summary.table(level=0.9)
    assert list(table.body.index) == list(results.names)
    np.testing.assert_array_equal(summary.frame(level=0.9)["std. error"], summary.std)


def test_redrawn_delta_inverts_the_observed_shares(results) -> None:
    # Reference: the share inversion, s(delta_b; theta_b) = s_obs (rel 1e-10), and xi_b
    # recovered from delta_b and beta_b; with hold="xi" delta_b = delta + X1 (beta_b - beta).
    boot = bd.bootstrap(results, draws=5, rng=3)
    problem = results.problem
    for fitted in boot.fitted:
        shares = compute_shares(problem, results.layout, fitted.theta, fitted.delta)
        np.testing.assert_allclose(shares, problem.products.shares, rtol=1e-10)
    held = bd.bootstrap(results, draws=5, rng=3, hold="xi")
    np.testing.assert_array_equal(held.theta, boot.theta)
    for fitted in held.fitted:
        expected = results.fitted.delta + problem.X1.values @ (fitted.beta - results.beta)
        np.testing.assert_allclose(fitted.delta, expected, rtol=1e-14)
        np.testing.assert_allclose(fitted.xi, problem.products.sort(results.xi), atol=1e-10)


def test_logit_draws_and_closed_form_elasticities(logit) -> None:
    # Reference: beta_b ~ N(params, covariance) (Monte Carlo bounds as above) and the logit
    # own-price elasticity alpha_b p (1 - s) at every draw (rel 1e-12); delta is unchanged.
    boot = bd.bootstrap(logit, draws=B, rng=11)
    assert boot.theta.shape == (B, 0)
    beta = boot.apply(lambda f: f.beta)
    _check_moments(beta, logit.params.to_numpy(), logit.covariance.to_numpy())
    assert all(np.array_equal(f.delta, boot.estimate.delta) for f in boot.fitted[:10])
    few = dataclasses.replace(boot, fitted=boot.fitted[:20], theta=boot.theta[:20],
                              beta=boot.beta[:20])
    own = few.apply(lambda f: bd.compute_elasticities(f).diagonal())
    products = logit.problem.products
    prices, shares = products.unsort(products.array("prices")), products.unsort(products.shares)
    k = logit.names.index("prices")
    expected = few.beta[:, [k]] * prices * (1 - shares)
    np.testing.assert_allclose(own.draws, expected, rtol=1e-12)


def test_failed_contractions_are_dropped_counted_and_warned(results) -> None:
    # Reference: the inner loop run directly (solve_delta) at each requested draw: exactly the
    # draws it cannot solve are dropped, the rest are kept; summaries hold no NaN.
    huge = dataclasses.replace(results, covariance=results.covariance * 1e6)
    with pytest.warns(ConvergenceWarning, match=r"failed at \d+ of 12 parameter draws"):
        boot = bd.bootstrap(huge, draws=12, rng=1)
    assert 0 < boot.dropped.size < 12 and boot.draws + boot.dropped.size == 12
    generator = np.random.default_rng(1)  # the same normal draws, to find every theta_b
    values, vectors = np.linalg.eigh(huge.covariance)
    everything = huge.estimates + generator.standard_normal((12, 5)) @ (
        vectors * np.sqrt(np.clip(values, 0, None))).T
    failed = []
    for b in range(12):
        with np.errstate(all="ignore"):
            direct = solve_delta(results.problem, results.layout, everything[b, :1],
                                 delta0=results.fitted.delta)
        if not (direct.converged and np.all(np.isfinite(direct.delta))):
            failed.append(b)
    np.testing.assert_array_equal(boot.dropped, failed)
    np.testing.assert_allclose(boot.theta, np.delete(everything[:, :1], failed, axis=0), rtol=1e-14)
    summary = boot.apply(lambda f: bd.compute_elasticities(f).diagonal())
    assert summary.dropped == boot.dropped.size and np.all(np.isfinite(summary.draws))
    assert any("dropped" in note for note in summary.table().notes)


def test_same_rng_same_results_for_any_workers(results) -> None:
    # Reference: the same computation repeated: bitwise identical draws and summaries.
    def own(f: object) -> np.ndarray:
        return bd.compute_elasticities(f).diagonal()

    one = bd.bootstrap(results, draws=8, rng=5).apply(own)
    again = bd.bootstrap(results, draws=8, rng=np.random.default_rng(5)).apply(own)
    two = bd.bootstrap(results, draws=8, rng=5, workers=2).apply(own, workers=2)
    for other in (again, two):
        np.testing.assert_array_equal(other.draws, one.draws)
        np.testing.assert_array_equal(other.std, one.std)
        np.testing.assert_array_equal(other.interval()[0], one.interval()[0])
    assert not np.array_equal(bd.bootstrap(results, draws=8, rng=6).apply(own).draws, one.draws)


def test_non_finite_function_values_are_warned_not_silent(results) -> None:
    # Reference: hand-made output, NaN at draw 0 only: warned, counted, left out of the mean.
    boot = bd.bootstrap(results, draws=4, rng=2)
    first = boot.fitted[0]
    with pytest.warns(ConvergenceWarning, match="non-finite values at 1 of 4 draws"):
        summary = boot.apply(lambda f: np.array([np.nan if f is first else f.theta[0], 1.0]))
    assert summary.nonfinite.tolist() == [True, False, False, False]
    np.testing.assert_allclose(summary.mean[0], boot.theta[1:, 0].mean(), rtol=1e-14)


def test_errors_name_the_problem(results, logit) -> None:
    # Reference: the documented validation messages.
    for draws in (1, 2.5, True, "10"):
        with pytest.raises(SpecificationError, match="draws"):
            bd.bootstrap(results, draws=draws)  # type: ignore[arg-type]
    with pytest.raises(SpecificationError, match="rng"):
        bd.bootstrap(results, draws=3, rng="seed")  # type: ignore[arg-type]
    with pytest.raises(SpecificationError, match="hold"):
        bd.bootstrap(results, draws=3, hold="prices")  # type: ignore[arg-type]
    with pytest.raises(SpecificationError, match="BLPResults"):
        bd.bootstrap(results.fitted, draws=3)  # type: ignore[arg-type]
    nan = dataclasses.replace(results, covariance=np.full_like(results.covariance, np.nan))
    with pytest.raises(SpecificationError, match="non-finite"):
        bd.bootstrap(nan, draws=3)
    with pytest.raises(SpecificationError, match="positive semi-definite"):
        bd.bootstrap(dataclasses.replace(results, covariance=-np.eye(5)), draws=3)
    with pytest.raises(SpecificationError, match=r"shape \(draws, 1\)"):
        bd.BootstrapDraws.from_parameters(results, np.zeros((3, 2)), np.zeros((3, 4)))
    with pytest.raises(SpecificationError, match="3 draws but beta has 2"):
        bd.BootstrapDraws.from_parameters(results, np.ones((3, 1)), np.zeros((2, 4)))
    boot = bd.bootstrap(results, draws=3, rng=0)
    with pytest.raises(SpecificationError, match="shape"):
        boot.apply(lambda f: np.zeros(1 if f is boot.estimate else 2))
    with pytest.raises(SpecificationError, match="not numbers"):
        boot.apply(lambda f: bd.compute_elasticities(f))
    with pytest.raises(SpecificationError, match="callable"):
        boot.apply("elasticities")  # type: ignore[arg-type]
    with pytest.raises(SpecificationError, match="level"):
        boot.apply(lambda f: f.beta).interval(1.5)
    with pytest.raises(SpecificationError, match="names"):
        boot.apply(lambda f: f.beta, names=["a"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bd.bootstrap(logit, draws=2, rng=0).apply(lambda f: f.alpha).draws.shape == (2,)


def test_a_function_failing_at_some_draws_is_named_or_dropped(results):
    # Reference: a function that raises the library's SpecificationError at chosen draws (as
    # consumer surplus does where a draw gives some agent alpha_i >= 0): by default the error
    # names the draw; with errors="drop" exactly those draws are left out, counted and warned.
    boot = bd.bootstrap(results, draws=6, rng=1)
    calls = {"n": 0}

    def picky(f):
        calls["n"] += 1
        if calls["n"] in (3, 5):  # the 2nd and 4th draws (the 1st call is the estimate)
            raise SpecificationError("alpha_i >= 0 at this draw")
        return f.beta

    with pytest.raises(SpecificationError, match=r"draw 1: alpha_i >= 0.*errors='drop'"):
        boot.apply(picky)
    calls["n"] = 0
    with pytest.warns(ConvergenceWarning, match="raised at 2 of 6 draws"):
        summary = boot.apply(picky, errors="drop")
    assert summary.failed == 2 and summary.draws.shape[0] == 4
    kept = [0, 2, 4, 5]
    np.testing.assert_array_equal(summary.draws, np.stack([boot.fitted[k].beta for k in kept]))
    with pytest.raises(SpecificationError, match="errors"):
        boot.apply(picky, errors="ignore")  # type: ignore[arg-type]


def test_the_results_method_is_the_function(results):
    # Reference: bd.bootstrap itself with the same arguments (bit for bit).
    a = results.bootstrap(5, rng=3)
    b = bd.bootstrap(results, draws=5, rng=3)
    assert np.array_equal(a.theta, b.theta) and np.array_equal(a.beta, b.beta)
    assert all(np.array_equal(x.delta, y.delta) for x, y in zip(a.fitted, b.fitted))


def test_warnings_at_the_draws_are_summarized_once(results):
    # Reference: a function that warns at every draw (as a merger does where consumer surplus is
    # undefined): one warning per category, counting the draws' warnings, not one per draw.
    def noisy(f):
        warnings.warn(f"draw-level note {f.theta[0]:.3f}", UserWarning)
        return f.beta

    boot = bd.bootstrap(results, draws=7, rng=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        boot.apply(noisy)
    notes = [str(w.message) for w in caught if issubclass(w.category, UserWarning)
             and "draw-level" in str(w.message)]
    # the estimate's own call warns once; the 7 draws are summarized in one warning
    assert len(notes) == 2 and "7 warning(s) of this kind over 7 draws" in notes[1]


def test_pandas_results_are_aligned_by_label(results):
    # Reference: the same numbers returned as a Series whose order changes from draw to draw
    # (as a groupby or a dict of markets may): stacked by label, not by position.
    import pandas as pd

    boot = bd.bootstrap(results, draws=6, rng=4)
    calls = {"n": 0}

    def shuffled(f):
        calls["n"] += 1
        values = pd.Series(f.beta, index=[f"b{k}" for k in range(f.beta.size)])
        return values.iloc[::-1] if calls["n"] % 2 == 0 else values

    summary = boot.apply(shuffled)
    np.testing.assert_array_equal(summary.draws, np.stack([f.beta for f in boot.fitted]))
    assert summary.names == tuple(f"b{k}" for k in range(results.beta.size))
    def relabelled(f):
        calls["n"] += 1
        return pd.Series(f.beta, index=np.arange(f.beta.size) + calls["n"])

    with pytest.raises(SpecificationError, match="other labels"):
        boot.apply(relabelled)
