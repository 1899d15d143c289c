"""Micro moments: the declarative API, its errors, the model's parts against a direct sum, and
the analytic derivatives against central finite differences.

References: v_p by the definition sum_t sum_i sum_j w_i s_ij w_dij v_pij / sum(w s w_d) computed
directly from the simulation's true choice probabilities (exact up to rounding: rel 1e-12);
d f / d theta and dQ/dtheta against central differences with h = 1e-5 max(1, |theta_k|)
(truncation O(h^2) ~ 1e-10, rounding ~ eps / h ~ 1e-11 with the inner loop at 1e-14), 1e-6
relative to the largest element.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import blpdemand as bd
from blpdemand.errors import DataError, SpecificationError
from blpdemand.solve.covariance import weighting_matrix
from blpdemand.solve.estimate import EstimationConfig, updated_weighting
from blpdemand.solve.gmm import DemandObjective

sys.path.insert(0, str(Path(__file__).parents[1] / "simulation"))
from micro_data import BETA, PI, SIGMA, simulate_micro

micro = bd.micro
KW = {"linear": "1 + prices + x1", "nonlinear": "0 + prices + x1", "demographics": "income",
      "instruments": ["w", "w2", "rival_x1", "rival_w"]}
THETA = np.array([SIGMA, PI])  # sigma[x1, x1], pi[prices, income]


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    return simulate_micro(markets=12, products=5, agents=80, rng=5)


def _problem(data, moments):  # type: ignore[no-untyped-def]
    return bd.Problem(data.products, agents=data.agents, micro=moments, **KW)


def _layout(problem):  # type: ignore[no-untyped-def]
    return problem.layout(np.diag([0.0, SIGMA]), np.array([[PI], [0.0]]))


# ---------------------------------------------------------------------- the API
def test_helpers_state_the_statistic_as_parts() -> None:
    survey = micro.Survey("s", 100)
    m = micro.mean("income", given=micro.chose("x1 > 1"), value=0.3, survey=survey)
    assert len(m.parts) == 2 and m.evaluate([0.2, 0.5]) == pytest.approx(0.4, rel=1e-15)
    c = micro.covariance("income", "prices", value=0.1, survey=survey)
    v = np.array([0.7, 0.2, 1.5, 0.9])
    assert c.evaluate(v) == pytest.approx(0.7 / 0.9 - 0.2 * 1.5 / 0.81, rel=1e-14)
    # the stated gradient of f against central differences of f
    for moment, at in ((m, np.array([0.2, 0.5])), (c, v)):
        numeric = [(moment.evaluate(at + h) - moment.evaluate(at - h)) / 2e-7
                   for h in 1e-7 * np.eye(at.size)]
        np.testing.assert_allclose(moment.derivative(at), numeric, rtol=1e-6)
    p = micro.probability(chose=micro.inside(), value=0.5, observations=10)
    assert len(p.parts) == 1 and p.parts[0].survey.observations == 10


def test_bad_descriptions_are_refused() -> None:
    with pytest.raises(SpecificationError):
        micro.mean("income", value=1.0)  # no survey size
    with pytest.raises(SpecificationError):
        micro.Survey("s", observations=0)
    with pytest.raises(SpecificationError):
        micro.chose("x1 >")  # not an expression
    with pytest.raises(SpecificationError):
        micro.MicroMoment(name="m", value=1.0, parts=(micro.MicroPart("a", micro.Survey("s", 1)),
                                                     micro.MicroPart("b", micro.Survey("s", 1))))


@pytest.mark.parametrize("moment, culprit", [
    (lambda: micro.mean("incme", value=0.0, observations=10), "incme"),
    (lambda: micro.probability(chose=micro.chose("minivan == 1"), value=0.1, observations=10),
     "minivan"),
    (lambda: micro.probability(chose=micro.inside(), given=micro.demographic("age > 3"),
                               value=0.1, observations=10), "age"),
])
def test_unknown_names_are_named(data, moment, culprit) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SpecificationError, match=culprit):
        _problem(data, [moment()])


def test_unknown_survey_market_is_named(data) -> None:  # type: ignore[no-untyped-def]
    m = micro.mean("income", value=0.0, observations=10, markets=[999])
    with pytest.raises(DataError, match="999"):
        _problem(data, [m])


# ---------------------------------------------------------------------- the model
def test_parts_equal_the_direct_sum(data) -> None:  # type: ignore[no-untyped-def]
    """E[income | buyer], P(buyer | income > 0) and Cov(income, price | buyer) in markets
    0-5 at the truth (delta from the shares), against sums over the true s_ij."""
    markets = list(range(6))
    moments = [
        micro.mean("income", given=micro.inside(), value=0.0, observations=100, markets=markets),
        micro.probability(chose=micro.inside(), given=micro.demographic("income > 0"),
                          value=0.0, observations=100, markets=markets),
        micro.covariance("income", "prices", given=micro.inside(), value=0.0,
                         observations=100, markets=markets)]
    problem = _problem(data, moments)
    layout, theta = _layout(problem)
    delta = bd.solve_delta(problem, layout, theta).delta
    values = problem.micro.evaluate(layout, theta, delta).values
    y, b, yp, p = [], [], [], []
    for t in markets:
        s = data.probabilities[t]
        income = data.agents.loc[data.agents.market_ids == t, "income"].to_numpy()
        prices = data.products.loc[data.products.market_ids == t, "prices"].to_numpy()
        buy = s[:, 1:].sum(axis=1) / s.shape[0]
        y.append(income @ buy), b.append(buy.sum())
        yp.append(income @ (s[:, 1:] @ prices) / s.shape[0])
        p.append((s[:, 1:] @ prices).sum() / s.shape[0])
        if t == markets[0]:
            high, all_high = (buy * (income > 0)).sum(), (income > 0).sum() / s.shape[0]
        else:
            high += (buy * (income > 0)).sum()
            all_high += (income > 0).sum() / s.shape[0]
    B = sum(b)
    expected = [sum(y) / B, high / all_high, sum(yp) / B - sum(y) * sum(p) / B ** 2]
    np.testing.assert_allclose(values, expected, rtol=1e-12)


def _general(survey):  # type: ignore[no-untyped-def]
    """E[income x1_j | buyer] by the general form: values(market, products, agents)."""
    part = micro.MicroPart("income x1", survey, values=lambda t, prod, ag: np.outer(
        ag["income"].to_numpy(), np.r_[0.0, prod["x1"].to_numpy()]))
    buyers = micro.MicroPart("buyers", survey, values=lambda t, prod, ag: np.outer(
        np.ones(len(ag)), np.r_[0.0, np.ones(len(prod))]))
    return micro.MicroMoment(name="E[income x1 | buyer]", value=0.5, parts=(part, buyers),
                             function=lambda v: v[0] / v[1])  # gradient by differences


KINDS = {
    "mean": lambda s: micro.mean("income", given=micro.chose("x1 > 1"), value=0.2, survey=s),
    "probability": lambda s: micro.probability(chose=micro.inside(),
                                               given=micro.demographic("income > 0.5"),
                                               value=0.4, survey=s),
    "covariance": lambda s: micro.covariance("income", "prices", given=micro.inside(),
                                             value=0.1, survey=s),
    "general": _general,
    "second choice": lambda s: micro.second_choice(
        first=micro.chose("x1 > 1"), second=micro.chose("x1 <= 1"), value=0.3,
        survey=micro.Survey("second", 2000, second_choices=True)),
    "second choice outside": lambda s: micro.second_choice(
        first=micro.inside(), second=micro.outside(), given=micro.demographic("income > 0"),
        value=0.3, survey=micro.Survey("second", 2000, second_choices=True)),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_gradient_matches_finite_differences(data, kind) -> None:  # type: ignore[no-untyped-def]
    problem = _problem(data, [KINDS[kind](micro.Survey("s", 2000))])
    layout, _ = _layout(problem)
    theta = THETA * np.array([1.2, 0.7])  # away from the truth: g_M is not 0
    Z = problem.ZD_tilde
    W_D = weighting_matrix(Z.T @ Z / problem.N)
    W = updated_weighting(problem, layout, theta, W_D, EstimationConfig(), None)
    objective = DemandObjective(problem, layout, W)
    full = objective.evaluate(theta, adjoint=False)
    adjoint = DemandObjective(problem, layout, W).evaluate(theta, adjoint=True)
    numeric, f_numeric = np.empty(2), np.empty((1, 2))
    for k in range(2):
        h = 1e-5 * max(1.0, abs(theta[k]))
        up, down = theta.copy(), theta.copy()
        up[k] += h
        down[k] -= h
        a = objective.evaluate(up, report=False, adjoint=False)
        b = objective.evaluate(down, report=False, adjoint=False)
        numeric[k] = (a.objective - b.objective) / (up[k] - down[k])
        f_numeric[:, k] = (a.micro.values - b.micro.values) / (up[k] - down[k])
    scale = np.max(np.abs(numeric))
    np.testing.assert_allclose(full.gradient, numeric, rtol=0, atol=1e-6 * scale)
    np.testing.assert_allclose(adjoint.gradient, numeric, rtol=0, atol=1e-6 * scale)
    assert full.micro_jacobian is not None
    np.testing.assert_allclose(full.micro_jacobian, f_numeric, rtol=0,
                               atol=1e-6 * np.max(np.abs(f_numeric)))
    assert np.all(np.isfinite(numeric)) and scale > 0
    assert BETA  # the simulation's truth is what THETA starts from


def test_second_choices_equal_the_direct_sum(data) -> None:  # type: ignore[no-untyped-def]
    """P(second: x1 <= 1 | first: x1 > 1) and P(second: outside | first: inside) at the truth,
    against the triple sum over (i, j, k != j) of w_i s_ij s_ik / (1 - s_ij)."""
    survey = micro.Survey("second", 500, markets=(0, 1, 2), second_choices=True)
    moments = [micro.second_choice(first=micro.chose("x1 > 1"), second=micro.chose("x1 <= 1"),
                                   value=0.0, survey=survey),
               micro.second_choice(first=micro.inside(), second=micro.outside(), value=0.0,
                                   survey=survey)]
    problem = _problem(data, moments)
    layout, theta = _layout(problem)
    delta = bd.solve_delta(problem, layout, theta).delta
    values = problem.micro.evaluate(layout, theta, delta).values
    sums = np.zeros(4)
    for t in (0, 1, 2):
        s = data.probabilities[t]
        x1 = np.r_[np.nan, data.products.loc[data.products.market_ids == t, "x1"].to_numpy()]
        for j in range(1, s.shape[1]):
            for k in range(s.shape[1]):
                if k == j:
                    continue
                pair = np.sum(s[:, j] * s[:, k] / (1 - s[:, j])) / s.shape[0]
                if x1[j] > 1:
                    sums[1] += pair
                    sums[0] += pair * (k > 0 and x1[k] <= 1)
                sums[3] += pair
                sums[2] += pair * (k == 0)
    np.testing.assert_allclose(values, [sums[0] / sums[1], sums[2] / sums[3]], rtol=1e-12)
    # the survey covariance of the first statistic by the delta method: parts v1 = 1A 1B and
    # v2 = 1A are indicators over all (i, j, k) pairs, whose weights sum to 1 in each market
    m1, m2 = sums[0] / 3, sums[1] / 3
    C = np.array([[m1 - m1 ** 2, m1 - m1 * m2], [m1 - m1 * m2, m2 - m2 ** 2]]) / 500
    F = np.array([1 / m2, -m1 / m2 ** 2])
    covariance = problem.micro.evaluate(layout, theta, delta, covariance=True).covariance
    assert covariance[0, 0] == pytest.approx(F @ C @ F, rel=1e-10)


def test_second_choices_need_a_second_choice_survey() -> None:
    with pytest.raises(SpecificationError, match="second"):
        micro.second_choice(first=micro.inside(), second=micro.outside(), value=0.1,
                            survey=micro.Survey("first only", 100))


def test_a_weighting_matrix_without_the_micro_block_is_refused(data) -> None:  # type: ignore[no-untyped-def]
    problem = _problem(data, [KINDS["mean"](micro.Survey("s", 100))])
    layout, _ = _layout(problem)
    Z = problem.ZD_tilde
    with pytest.raises(SpecificationError, match="micro"):
        DemandObjective(problem, layout, weighting_matrix(Z.T @ Z / problem.N))


def test_quantile_shortcut_equals_the_explicit_threshold(data) -> None:  # type: ignore[no-untyped-def]
    """demographic("income > q75") is demographic("income > t") with t the 75th percentile of
    the agents' income (equal weights here: numpy's inverted-CDF percentile, computed apart);
    the same threshold gives the same micro values, bit for bit, and a quarter of the agents
    (to one agent) are above it."""
    income = data.agents["income"].to_numpy()
    threshold = float(np.percentile(income, 75, method="inverted_cdf"))
    assert np.ptp(data.agents["weights"]) == 0  # equal weights: numpy's percentile applies
    values = []
    for given in ("income > q75", f"income > {threshold!r}", "q75 < income"):
        moment = micro.probability(chose=micro.inside(), given=micro.demographic(given),
                                   value=0.0, observations=100)
        problem = _problem(data, [moment])
        layout, theta = _layout(problem)
        delta = bd.solve_delta(problem, layout, theta).delta
        values.append(problem.micro.evaluate(layout, theta, delta).values)
    np.testing.assert_array_equal(values[0], values[1])
    np.testing.assert_array_equal(values[2], values[1])
    assert abs(np.mean(income > threshold) - 0.25) <= 1 / income.size
    with pytest.raises(SpecificationError, match="q75"):  # a quantile of nothing
        _problem(data, [micro.probability(chose=micro.inside(),
                                          given=micro.demographic("q75 > 0 + q75"),
                                          value=0.0, observations=100)])
