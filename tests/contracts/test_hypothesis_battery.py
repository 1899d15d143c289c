"""Hypothesis battery: many small generated problems, values near the edges, through logit and
BLP estimation. The contract (no external reference needed, it is a property):

- the only exceptions that escape are ours (``BLPDemandError`` subclasses); a numpy
  FloatingPointError (the session makes them raise), a LinAlgError or a KeyError is a bug;
- the only warnings are ours (``BLPDemandWarning`` subclasses), never a bare RuntimeWarning;
- a result that says success has no NaN/inf in its estimates, objective or gradient;
- post-estimation on a success (elasticities, a merger of firms 0 and 1) obeys the same rules,
  and a merger's failed markets are named (NaN prices only there).

Default run (CI): 1,000 logit problems + 200 BLP problems, derandomized so that CI is
reproducible. ``-m slow`` runs 5,000 + 1,000 more from other seeds.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import blpdemand as bd
from blpdemand.errors import BLPDemandError, BLPDemandWarning
from blpdemand.solve.fixed_point import FixedPointConfig

SETTINGS = {"deadline": None, "derandomize": True, "database": None,
            "suppress_health_check": list(HealthCheck), "print_blob": True}

SCALES = (1e-8, 1e-3, 1.0, 1e3, 1e8)
DELTA_LEVELS = (-40.0, -12.0, -3.0, 0.0, 3.0, 12.0)
BREAKS = ("none",) * 10 + ("nan_share", "zero_share", "inf_x", "nan_instrument",
          "duplicate_product", "collinear_instrument", "constant_x", "full_market",
          "single_market", "huge_x")


@dataclass(frozen=True)
class Case:
    """One generated problem: sizes, scales and what (if anything) to break."""

    seed: int
    T: int
    J_max: int
    x_scale: float
    w_scale: float
    delta_level: float
    noise: float
    brk: str


cases = st.builds(
    Case, seed=st.integers(0, 2**31 - 1), T=st.integers(1, 10), J_max=st.integers(2, 8),
    x_scale=st.sampled_from(SCALES), w_scale=st.sampled_from(SCALES),
    delta_level=st.sampled_from(DELTA_LEVELS), noise=st.sampled_from((0.0, 1e-12, 0.1, 1.0, 10.0)),
    brk=st.sampled_from(BREAKS))


MUST_FAIL = ("nan_share", "zero_share", "inf_x", "full_market", "huge_x")


def _products(case: Case, rng: np.random.Generator) -> tuple[pd.DataFrame, bool]:
    """Markets of random sizes 1..J_max, logit shares, rows shuffled; and whether it is broken
    in a way that every estimator must reject (the instruments aside)."""
    T = 1 if case.brk == "single_market" else case.T
    sizes = rng.integers(1, case.J_max + 1, size=T)
    N = int(sizes.sum())
    market = np.repeat(np.arange(T), sizes)
    product = np.concatenate([np.arange(s) for s in sizes])
    w = case.w_scale * rng.uniform(size=(N, 5))
    x = case.x_scale * rng.standard_normal(N)
    xi = case.noise * rng.standard_normal(N)
    prices = np.exp(0.5 * rng.standard_normal(N) + w.sum(axis=1) / case.w_scale
                    + 0.3 * xi / max(case.noise, 1.0))
    delta = case.delta_level - prices + np.clip(x, -5, 5) + xi
    shares = np.empty(N)
    for t in range(T):
        rows = market == t
        top = max(float(delta[rows].max()), 0.0)
        e = np.exp(delta[rows] - top)
        shares[rows] = e / (np.exp(-top) + e.sum())
    frame = pd.DataFrame({"market_ids": market, "product_ids": product, "firm_ids": product % 2,
                          "shares": shares, "prices": prices, "x": x})
    for k in range(w.shape[1]):
        frame[f"w{k + 1}"] = w[:, k]
    frame, broken = _break(frame, case, rng)
    return frame.sample(frac=1.0, random_state=case.seed % 1000), broken  # any row order


def _break(frame: pd.DataFrame, case: Case, rng: np.random.Generator) -> tuple[pd.DataFrame, bool]:
    row = int(rng.integers(len(frame)))
    broken = case.brk in MUST_FAIL
    if case.brk == "nan_share":
        frame.loc[row, "shares"] = np.nan
    elif case.brk == "zero_share":
        frame.loc[row, "shares"] = 0.0
    elif case.brk == "inf_x":
        frame.loc[row, "x"] = np.inf
    elif case.brk == "nan_instrument":
        frame.loc[row, "w2"] = np.nan
    elif case.brk == "duplicate_product" and len(frame) > 1:
        frame.loc[1, ["market_ids", "product_ids"]] = frame.loc[0, ["market_ids", "product_ids"]].to_numpy()
        broken = True
    elif case.brk == "collinear_instrument":
        frame["w2"] = 2.0 * frame["w1"]
    elif case.brk == "constant_x":
        frame["x"] = 1.0
    elif case.brk == "full_market":
        rows = frame["market_ids"] == frame.loc[row, "market_ids"]
        frame.loc[rows, "shares"] = 1.0001 / rows.sum()
    elif case.brk == "huge_x":
        frame["x"] = frame["x"] * 1e150 + 1e150
    return frame, broken


def _run(call: Any) -> tuple[Any, list[warnings.WarningMessage]]:
    """Call; our errors are fine (return None); warnings recorded and checked to be ours."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = call()
        except BLPDemandError:
            result = None
    foreign = [(w.category.__name__, str(w.message)) for w in caught
               if not issubclass(w.category, BLPDemandWarning)]
    assert not foreign, foreign
    return result, caught


def _post_estimation(results: Any) -> None:
    """Elasticities and a merger on a successful fit: only our errors; a converged merger has
    finite prices (markets that fail are NaN and named in ``failed_markets``)."""
    _run(lambda: bd.compute_elasticities(results))
    merger, _ = _run(lambda: bd.simulate_merger(results, [0, 1]))
    if merger is not None:
        failed = np.isin(merger.row_markets, list(merger.failed_markets))
        _finite("merger prices", merger.prices[~failed])
        assert merger.converged == (not failed.any())


def _finite(name: str, values: Any) -> None:
    array = np.asarray(values, dtype=np.float64)
    assert np.all(np.isfinite(array)), f"{name} has NaN/inf in a successful result: {array}"


# ---------------------------------------------------------------- logit
LOGIT_OPTIONS = st.tuples(st.sampled_from(("ols", "2sls", "gmm", "2s-gmm")),
                          st.sampled_from(("unadjusted", "robust", "hc1", "clustered")),
                          st.sampled_from((None, None, "C(firm_ids)", "C(market_ids)")))


def _check_logit(case: Case, options: tuple[str, str, str | None]) -> None:
    method, covariance, absorb = options
    rng = np.random.default_rng(case.seed)
    data, broken = _products(case, rng)
    broken = broken or (case.brk == "nan_instrument" and method != "ols")
    clusters = "market_ids" if covariance == "clustered" else None
    instruments = None if method == "ols" else ["w1", "w2"]
    results, _ = _run(lambda: bd.estimate_logit(
        data, linear="prices + x", instruments=instruments, method=method, covariance=covariance,
        clusters=clusters, absorb=absorb))
    if results is None:
        return
    assert not broken, f"bad data accepted: {case.brk}"
    _finite("params", results.params)
    _finite("delta", results.delta)
    # standard errors may be NaN only when there are no residual degrees of freedom
    if results.df_resid > 0:
        assert not np.any(np.isnan(results.bse)), results.bse
    _post_estimation(results)


@settings(max_examples=1000, **SETTINGS)  # type: ignore[arg-type]
@given(case=cases, options=LOGIT_OPTIONS)
def test_logit_battery(case: Case, options: tuple[str, str, str | None]) -> None:
    _check_logit(case, options)


@pytest.mark.slow
@settings(max_examples=5000, **{**SETTINGS, "derandomize": False})  # type: ignore[arg-type]
@given(case=cases, options=LOGIT_OPTIONS)
def test_logit_battery_slow(case: Case, options: tuple[str, str, str | None]) -> None:
    _check_logit(case, options)


# ---------------------------------------------------------------- BLP
BLP_OPTIONS = st.tuples(st.integers(2, 8), st.sampled_from((1e-3, 0.3, 1.0, 3.0, 10.0)),
                        st.sampled_from(("halton", "monte_carlo", "product", "agents")),
                        st.sampled_from(("1s", "2s")), st.booleans(), st.booleans())
BLPOptions = tuple[int, float, str, str, bool, bool]


def _check_blp(case: Case, options: BLPOptions) -> None:
    I, sigma, rule, method, two_sigmas, demographics = options
    rng = np.random.default_rng(case.seed)
    data, broken = _products(case, rng)
    broken = broken or case.brk == "nan_instrument"
    ids = np.unique(data["market_ids"])
    income = case.x_scale * rng.lognormal(size=ids.size * I)  # demographics at the same scale
    if rule == "agents":
        agents: Any = pd.DataFrame({"market_ids": np.repeat(ids, I), "weights": 1.0 / I,
                                    "nodes0": rng.standard_normal(ids.size * I),
                                    "nodes1": rng.standard_normal(ids.size * I),
                                    "income": income})
    else:
        census = pd.DataFrame({"market_ids": np.repeat(ids, I), "income": income})
        agents = bd.Integration(rule, 2 if rule == "product" else I, rng=case.seed,
                                demographics_data=census if demographics else None)
    nonlinear = "0 + prices + x" if two_sigmas else "0 + x"
    K2 = 2 if two_sigmas else 1
    start = [sigma] * K2
    pi = [[sigma / 2]] * K2 if demographics else None
    instruments = [f"w{k + 1}" for k in range(1 + K2 + (K2 if demographics else 0))]
    config = bd.EstimationConfig(method=method, max_iterations=4, hessian=False,
                                 contraction=FixedPointConfig(max_evaluations=300))

    def fit() -> Any:
        problem = bd.Problem(data, linear="1 + prices + x", nonlinear=nonlinear, agents=agents,
                             instruments=instruments,
                             demographics="income" if demographics else None)
        return bd.estimate(problem, sigma=start, pi=pi, config=config)

    results, _ = _run(fit)
    if results is None:
        return
    assert not broken, f"bad data accepted: {case.brk}"
    if results.converged and results.contraction_failures == 0:
        _finite("theta", results.theta)
        _finite("beta", results.beta)
        _finite("delta", results.delta)
        _finite("xi", results.xi)
        _finite("objective", results.objective)
        _finite("gradient", results.gradient)
        _post_estimation(results)
    assert not np.any(np.isnan(results.estimates)) or results.contraction_failures > 0 or \
        not results.converged


@settings(max_examples=200, **SETTINGS)  # type: ignore[arg-type]
@given(case=cases, options=BLP_OPTIONS)
def test_blp_battery(case: Case, options: BLPOptions) -> None:
    _check_blp(case, options)


@pytest.mark.slow
@settings(max_examples=1000, **{**SETTINGS, "derandomize": False})  # type: ignore[arg-type]
@given(case=cases, options=BLP_OPTIONS)
def test_blp_battery_slow(case: Case, options: BLPOptions) -> None:
    _check_blp(case, options)


# ---------------------------------------------------------------- near-unidentified problems
UNIDENTIFIED = ("constant_demographic", "duplicate_x2", "one_node", "absorbed_x2")
#: parameters the closed form says the moments cannot separate (None: weakly identified only)
NOT_IDENTIFIED = {"constant_demographic": "pi[x1, d]", "one_node": "sigma[x1, x1]",
                  "absorbed_x2": "sigma[1, 1]", "duplicate_x2": None}


@dataclass(frozen=True)
class Unidentified:
    """A problem with a parameter the data cannot pin down, at a random theta."""

    seed: int
    T: int
    J: int
    kind: str
    sigma: float


unidentified_cases = st.builds(
    Unidentified, seed=st.integers(0, 2**31 - 1), T=st.integers(8, 30), J=st.integers(3, 8),
    kind=st.sampled_from(UNIDENTIFIED), sigma=st.sampled_from((0.2, 1.0, 2.5)))


def _check_unidentified(case: Unidentified) -> None:
    """No finite standard error below 1e-8 |estimate| without an IdentificationWarning, and the
    closed-form unidentified parameter's standard error is NaN, never a small number."""
    from blpdemand.errors import IdentificationWarning

    sim = bd.simulate(markets=case.T, products=case.J, sigma={"x1": 1.0}, draws=30,
                      rng=case.seed)
    frame = sim.products.copy()
    for column in ("x1", "x2"):
        frame[f"rival_{column}"] = (frame.groupby("market_ids")[column].transform("sum")
                                    - frame[column])
    instruments = [*sim.instruments, "rival_x1", "rival_x2"]
    agents: Any = sim.agents
    nonlinear, demographics, sigma, pi, absorb = "0 + x1", None, [case.sigma], None, None
    if case.kind == "constant_demographic":
        agents, demographics, pi = sim.agents.assign(d=1.0), "0 + d", [[0.5]]
    elif case.kind == "one_node":
        agents = bd.Integration("monte_carlo", 1, rng=case.seed)
    elif case.kind == "duplicate_x2":
        frame["x1_copy"] = frame["x1"]
        nonlinear, sigma = "0 + x1 + x1_copy", [case.sigma, case.sigma]
        agents = bd.Integration("monte_carlo", 30, rng=case.seed)
    elif case.kind == "absorbed_x2":  # a random intercept: sigma nu shifts every inside good
        nonlinear, sigma, absorb = "1 + x1", [case.sigma, case.sigma], "C(market_ids)"
        agents = bd.Integration("product", 3)  # symmetric nodes: the first-order effect is 0
    linear = "prices + x1 + x2" if absorb else sim.linear

    def fit() -> Any:
        problem = bd.Problem(frame, linear=linear, nonlinear=nonlinear, agents=agents,
                             demographics=demographics, instruments=instruments, absorb=absorb)
        return bd.evaluate(problem, sigma=sigma, pi=pi,
                           config=bd.EstimationConfig(hessian=False))

    results, caught = _run(fit)
    if results is None or results.failed_markets.size:
        return
    warned = any(issubclass(w.category, IdentificationWarning) for w in caught)
    se, estimates = results.standard_errors, results.estimates
    tiny = np.isfinite(se) & (se < 1e-8 * np.abs(estimates))
    assert warned or not tiny.any(), dict(zip(results.names, se))
    name = NOT_IDENTIFIED[case.kind]
    if name is not None and name in results.names:
        assert np.isnan(se[results.names.index(name)]), dict(zip(results.names, se))
        assert warned and name in results.unidentified


@settings(max_examples=40, **SETTINGS)  # type: ignore[arg-type]
@given(case=unidentified_cases)
def test_near_unidentified_battery(case: Unidentified) -> None:
    _check_unidentified(case)


@pytest.mark.slow
@settings(max_examples=300, **{**SETTINGS, "derandomize": False})  # type: ignore[arg-type]
@given(case=unidentified_cases)
def test_near_unidentified_battery_slow(case: Unidentified) -> None:
    _check_unidentified(case)
